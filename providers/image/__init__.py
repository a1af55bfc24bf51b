"""providers/image."""
