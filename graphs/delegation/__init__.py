"""graphs/delegation."""
