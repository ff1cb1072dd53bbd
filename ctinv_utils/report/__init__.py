"""Panels and tables drawn from a run's artifacts (the figures package draws arrays in HU only)."""
