"""Sequence inputs: the alphabet codec and one reader per file format."""
