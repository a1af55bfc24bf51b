"""graphs/consensus: ask several models at once, then synthesize."""
