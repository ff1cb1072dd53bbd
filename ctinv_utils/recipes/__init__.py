"""The recipe of each stage, written once. Notebooks, the sweep and the benchmarks call these
functions, so a change to a protocol is made in one place.

- :mod:`.invariances`: how an invariance is optimised (:class:`InvarianceProtocol`,
  :func:`optimise_invariance`) and notebook 03's study of a slice (:func:`invariance_study`).
- :mod:`.training`: the denoisers of notebook 02 (:func:`train_denoisers`).
- :mod:`.natural`: the natural-invariance generators of notebook 04 (:func:`train_generators`).
"""

from .invariances import (InvarianceProtocol, adversarial_study, analysis_slice, invariance_rows, invariance_study,
                          linearised_study, optimise_invariance, unconstrained_study)
from .natural import train_generators
from .training import train_denoisers

__all__ = ["InvarianceProtocol", "optimise_invariance", "invariance_rows", "invariance_study", "analysis_slice",
           "unconstrained_study", "linearised_study", "adversarial_study", "train_denoisers", "train_generators"]
