"""The three body regions of the Mayo low-dose CT data and the facts that go with each."""

from __future__ import annotations

REGIONS = ("head", "chest", "abdomen")
#: TCIA / AAPM patient-ID prefix of each region (C chest, L abdomen/liver, N head/neuro).
PREFIX_OF_REGION = {"chest": "C", "abdomen": "L", "head": "N"}
REGION_OF_PREFIX = {v: k for k, v in PREFIX_OF_REGION.items()}
#: Low-dose fraction of the Mayo data: 25% dose for head and abdomen, 10% for chest.
DOSE_FRACTION = {"head": 0.25, "chest": 0.10, "abdomen": 0.25}
#: Reconstruction field of view (mm) of each region (simulated data).
FOV_MM = {"head": 250.0, "chest": 380.0, "abdomen": 380.0}
