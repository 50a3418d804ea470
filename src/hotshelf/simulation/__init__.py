"""hotshelf.simulation."""
