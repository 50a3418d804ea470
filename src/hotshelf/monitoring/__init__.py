"""hotshelf.monitoring."""
