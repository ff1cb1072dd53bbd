"""Command-line tools: the synthesis benchmark and GPU check, the convergence benchmark, sweeps under torchrun, DICOM export."""
