"""Metrics of an architecture: pure functions with units in their names."""
