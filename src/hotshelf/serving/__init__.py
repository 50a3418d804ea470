"""hotshelf.serving."""
