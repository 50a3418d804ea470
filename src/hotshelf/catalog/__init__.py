"""hotshelf.catalog."""
