"""Synthetic datasets drawn offline: the shipped examples and the builtin starting model's data."""
