"""providers/storage."""
