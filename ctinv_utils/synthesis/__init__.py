"""Synthesis: the optimisation loop (history, stop criteria, save/load), image distances,
image-domain invariances, FGSM/BIM, and the interactive explorer."""
