"""Figures: one function per panel type, taking arrays in HU (never networks or synthesis
objects), so the notebooks, the explorer and the figures notebook draw a panel with one code."""
