"""providers/search."""
