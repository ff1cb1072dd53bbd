"""Patient split, patient-balanced slice sampling and random paired patches.

As in the talk: every patient is drawn with equal probability, then a slice uniformly within that
patient, so patients with many slices (chest scans) do not dominate training.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import PairedCTData
from ..units import hu_to_norm

SPLITS = ("train", "val", "test")


def split_patients(data: PairedCTData, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> dict[str, list[str]]:
    """Split the patients into train, validation and test sets, per region (stratified) and seeded.

    Splitting by patient, never by slice, keeps a patient's slices out of the set it is tested on.
    Each region with at least three patients puts at least one patient in every split.

    Parameters
    ----------
    data : PairedCTData
        The data whose patients are split.
    fractions : tuple of float
        Shares of train, validation and test, each >= 0, summing to 1.
    seed : int
        Seeds the shuffle: the same seed gives the same split.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each a sorted list of patient IDs.

    Raises
    ------
    ValueError
        ``fractions`` not three non-negative numbers summing to 1.

    Examples
    --------
    >>> from ctinv_utils import load_data, split_patients
    >>> data = load_data()
    >>> split = split_patients(data, (0.6, 0.2, 0.2), seed=0)
    >>> train = data.subset(split["train"])
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SPLITS}
    for region in sorted({p.region for p in data.patients}):
        ids = sorted(p.patient_id for p in data.patients if p.region == region)
        rng.shuffle(ids)
        n = len(ids)
        n_val = max(1, int(round(fractions[1] * n))) if n >= 3 and fractions[1] > 0 else 0
        n_test = max(1, int(round(fractions[2] * n))) if n >= 3 and fractions[2] > 0 else 0
        n_train = n - n_val - n_test
        out["train"] += ids[:n_train]
        out["val"] += ids[n_train:n_train + n_val]
        out["test"] += ids[n_train + n_val:]
    return {k: sorted(v) for k, v in out.items()}


class PatientBalancedSampler:
    """Draws (patient, slice) index pairs: a patient uniformly, then a slice uniformly within it.

    So patients with many slices (chest scans) do not dominate training, as in the talk.

    Parameters
    ----------
    n_slices_per_patient : array_like of int
        Slices of each patient, ``(P,)`` (e.g. ``PairedCTData.n_slices``).
    seed : int
        Seeds the sampler's own generator (the global RNG is not used).

    Raises
    ------
    ValueError
        No patients, or a patient without slices.

    Examples
    --------
    >>> from ctinv_utils import PatientBalancedSampler
    >>> patients, slices = PatientBalancedSampler([3, 8, 5], seed=0).sample(4)
    >>> patients, slices
    (array([2, 1, 1, 0]), array([0, 0, 6, 2]))
    """

    def __init__(self, n_slices_per_patient, seed: int = 0):
        self.n_slices = np.asarray(n_slices_per_patient, dtype=int)
        if self.n_slices.ndim != 1 or len(self.n_slices) == 0 or (self.n_slices < 1).any():
            raise ValueError("need at least one patient, each with at least one slice")
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws: patient numbers ``(n,)`` and slice indices ``(n,)`` within those patients."""
        patients = self.rng.integers(0, len(self.n_slices), size=n)
        slices = (self.rng.random(n) * self.n_slices[patients]).astype(int)
        return patients, slices


def patient_frequencies(sampler: "PatientBalancedSampler", n_draws: int) -> np.ndarray:
    """Fraction of ``n_draws`` draws that fell on each patient, ``(P,)``."""
    patients, _ = sampler.sample(int(n_draws))
    return np.bincount(patients, minlength=len(sampler.n_slices)) / float(n_draws)


class SliceUniformSampler(PatientBalancedSampler):
    """The naive alternative, for comparison: every slice equally likely (patients with more
    slices are drawn more often)."""

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        flat = self.rng.integers(0, self.n_slices.sum(), size=n)
        starts = np.concatenate([[0], np.cumsum(self.n_slices)[:-1]])
        patients = np.searchsorted(starts, flat, side="right") - 1
        return patients, flat - starts[patients]


class PatchSampler:
    """Random paired low/full-dose patches for training, from patient-balanced slices.

    Patches with less than ``min_body_fraction`` of body (> -500 HU in full dose) are redrawn, up to
    10 times, so the network does not learn mostly air. The sampler is a training source of
    :class:`~ctinv_utils.training.loop.Trainer`: its random state is checkpointed and restored.

    Parameters
    ----------
    data : PairedCTData
        The slices to draw from (usually the training patients).
    patch_size : int
        Side ``P`` of the square patches, in pixels.
    seed : int
        Seeds the patient, slice and position draws.
    min_body_fraction : float
        Fraction of a patch, in [0, 1], that must be body.

    Examples
    --------
    >>> from ctinv_utils import PatchSampler, load_data
    >>> low, full = PatchSampler(load_data(), patch_size=64, seed=0).next_batch(8)
    >>> low.shape  # doctest: +SKIP
    torch.Size([8, 1, 64, 64])
    """

    def __init__(self, data: PairedCTData, patch_size: int = 80, seed: int = 0,
                 min_body_fraction: float = 0.5):
        self.data = data
        self.patch_size = int(patch_size)
        self.sampler = PatientBalancedSampler(data.n_slices, seed=seed)
        self.rng = np.random.default_rng([seed, 1])
        self.min_body_fraction = min_body_fraction

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        P = self.patch_size
        for _ in range(10):
            (p,), (s,) = self.sampler.sample(1)
            low, full = self.data.slice_hu(int(p), int(s))
            H, W = full.shape
            if P > min(H, W):
                raise ValueError(f"patch size {P} exceeds the image size {H}x{W}")
            y, x = self.rng.integers(0, H - P + 1), self.rng.integers(0, W - P + 1)
            lp, fp = low[y:y + P, x:x + P], full[y:y + P, x:x + P]
            if (fp > -500).mean() >= self.min_body_fraction:
                break
        return lp, fp

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of paired patches.

        Parameters
        ----------
        batch_size : int
            Patches ``b`` in the batch.

        Returns
        -------
        low_norm : torch.Tensor
            Low-dose patches ``(b, 1, P, P)``, float32 in normalized units.
        full_norm : torch.Tensor
            The full-dose twins ``(b, 1, P, P)``, float32 in normalized units.

        Raises
        ------
        ValueError
            ``patch_size`` larger than a slice.
        """
        pairs = [self._one() for _ in range(batch_size)]
        low = np.stack([p[0] for p in pairs])[:, None]
        full = np.stack([p[1] for p in pairs])[:, None]
        return torch.from_numpy(hu_to_norm(low)).float(), torch.from_numpy(hu_to_norm(full)).float()

    def state_dict(self) -> dict:
        """The random state of the draws (JSON-able), for a training checkpoint."""
        return {"sampler": self.sampler.rng.bit_generator.state, "patch": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore the random state written by :meth:`state_dict`."""
        self.sampler.rng.bit_generator.state = state["sampler"]
        self.rng.bit_generator.state = state["patch"]
