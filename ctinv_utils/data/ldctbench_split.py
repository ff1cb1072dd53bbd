"""ldct-benchmark's fixed patient split of the TCIA LDCT-and-Projection-data (105 train / 30 val /
15 test patients, from its ``ldctbench/data/info.yml``; shipped as ``ldctbench_split.json``).

Its published checkpoints were trained on its train and val patients. When they are analysed on
TCIA data, test slices must come from its test patients: ctinv's own seeded split
(:func:`ctinv_utils.data.sampling.split_patients`) would put patients they were trained on into
the test set.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..errors import CTInvError

SPLIT_FILE = Path(__file__).resolve().parent / "ldctbench_split.json"
SPLITS = ("train", "val", "test")


class LDCTBenchSplitError(CTInvError):
    """No patient of the data is in ldct-benchmark's test split (or the data is not TCIA data)."""


@lru_cache(maxsize=1)
def _split() -> dict[str, tuple[str, ...]]:
    raw = json.loads(SPLIT_FILE.read_text())
    return {s: tuple(raw[s]) for s in SPLITS}


def ldctbench_split() -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}``: TCIA patient IDs (e.g. ``"L067"``), sorted."""
    return {s: list(ids) for s, ids in _split().items()}


def ldctbench_test_ids(data_or_ids) -> list[str]:
    """The patients of ``data_or_ids`` (a :class:`~ctinv_utils.data.dataset.PairedCTData` or patient IDs)
    that are in ldct-benchmark's test split, sorted.

    Raises :class:`LDCTBenchSplitError` when none is, and for the simulated data, whose IDs (``L001``
    ...) follow TCIA's naming but are not TCIA patients."""
    source = getattr(data_or_ids, "source", "")
    if str(source).startswith("simulated"):
        raise LDCTBenchSplitError("ldct-benchmark's split names real TCIA patients; the simulated data only shares "
                                  "their naming (C001, L001, ...): use split_patients() for it, or load TCIA data "
                                  "(README: Data) to test ldct-benchmark's published models")
    ids = [data_or_ids] if isinstance(data_or_ids, str) else list(getattr(data_or_ids, "patient_ids", data_or_ids))
    test = set(_split()["test"])
    found = sorted(set(ids) & test)
    if not found:
        shown = ", ".join(sorted(ids)[:6]) + (", ..." if len(ids) > 6 else "")
        raise LDCTBenchSplitError(f"none of the {len(ids)} patients ({shown or 'no IDs'}) is in ldct-benchmark's "
                                  f"test split ({', '.join(sorted(test))}); its published models were trained on "
                                  "the others: add its test patients from TCIA LDCT-and-Projection-data "
                                  "(README: Data)")
    return found


def evaluation_patients(data, test_ids, names) -> list[str]:
    """The test patients on which the denoisers ``names`` can all be judged: ``test_ids`` (ctinv's test
    split), narrowed to ldct-benchmark's test patients when a published ``ldctbench:`` network is among
    ``names`` and the data is real TCIA data (it was trained on the others). On the simulated data no
    published network has seen any patient, so ``test_ids`` stand."""
    if not any(str(n).startswith("ldctbench:") for n in names) or str(getattr(data, "source", "")).startswith("simulated"):
        return list(test_ids)
    shared = sorted(set(test_ids) & set(ldctbench_test_ids(data)))
    if not shared:
        raise LDCTBenchSplitError(f"none of ctinv's test patients ({', '.join(sorted(test_ids))}) is in ldct-benchmark's "
                                  f"test split ({', '.join(_split()['test'])}), so no patient is unseen by both ctinv's "
                                  "and the published networks: add more TCIA patients, or analyse the published ones "
                                  "alone")
    return shared
