"""Analysis of results as arrays in HU (numpy only): noise power spectra, what natural invariances
change (noise or anatomy), and the verdicts drawn from those numbers."""
