"""The notebook pipeline: typed settings of each notebook (``config``), presets, the runner, the
per-notebook context and the artifacts one notebook hands to the next."""
