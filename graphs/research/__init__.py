"""The research graph: plan, search (fan-out), rank, read, write, check citations, review."""
