"""Data: the regions, simulated phantoms and acquisition, DICOM I/O, paired slices in HU,
the patient split and patient-balanced patch sampling, noise measurement."""

from .dataset import PairedCTData, load_data
from .sampling import PatchSampler, PatientBalancedSampler, SliceUniformSampler, split_patients

__all__ = ["PairedCTData", "load_data", "PatchSampler", "PatientBalancedSampler", "SliceUniformSampler",
           "split_patients"]
