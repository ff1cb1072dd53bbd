"""ctinv_utils: the helper package behind the ctinv notebooks.

Reconstructing invariances of CT denoising algorithms (Eulig, Maier, Ommer, Kachelriess;
CT Meeting 2024). The notebooks in ``notebooks/`` stay thin; the logic lives here and is tested
in ``tests/``.
"""

__version__ = "0.1.0"
