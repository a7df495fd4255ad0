"""Performance measurements, each beside the raw engine doing the same work in the same run."""
