"""The polychromatic X-ray physics of a clinical CT scanner (Siemens SOMATOM Definition Flash class, 120 kVp).

The tube spectrum and the attenuation of body materials come from ``xray_tables.json``, which
:func:`write_tables` generates with spekpy and xraydb (so that nothing here needs them at run time).
On top of the tables the module provides

* :func:`basis_maps`: a painted HU phantom -> water and cortical-bone basis maps (Alvarez-Macovski),
  so that a slice needs two projections, not one per material;
* :func:`measure`: the detector per ray: bowtie, object, Poisson counts per energy bin at full dose,
  the low-dose scan by binomial thinning of the same counts, an energy-integrating signal with
  electronic noise, flat-field normalisation, log, and the water beam-hardening correction;
* :func:`expected_log`: the same chain without noise.

Line integrals are dimensionless, in units of ``MU_WATER_REF_PER_MM * mm``: after the water
correction a water path of ``T`` mm reads ``MU_WATER_REF_PER_MM * T``; :func:`hu_from_mu` turns a
reconstructed attenuation into HU at the reference energy ``REFERENCE_KEV``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from ...errors import BadArgumentError

TABLES_PATH = Path(__file__).with_name("xray_tables.json")

# -- the source ------------------------------------------------------------------------------------
#: Tube voltage, kV.
KVP = 120.0
#: Anode angle in degrees (spekpy's default; the steeper anode of a Straton tube hardens the beam a
#: little more, which the filtration below absorbs: it is chosen for the half-value layer).
ANODE_ANGLE_DEG = 12.0
#: Inherent plus flat filtration in mm, as spekpy filter names: 3.5 mm Al + 0.1 mm Cu gives a
#: first half-value layer of 6.8 mm Al and a mean energy of 61 keV, typical of 120 kVp CT at the
#: centre of the beam.
FILTRATION_MM = (("Al", 3.5), ("Cu", 0.1))
#: The tabulated energies: 1 keV bins centred on 15, 16, ..., 120 keV (the filtered spectrum
#: below 14.5 keV carries about 1e-9 of the photons; the JSON records the fraction).
ENERGY_MIN_KEV, ENERGY_MAX_KEV = 15, 120
#: The reference (effective) energy of the scanner in keV: painted HU are read at this energy, and
#: the water correction maps water to its attenuation at this energy. 70 keV is the effective energy
#: of water behind 200 mm of water (a typical body): there, after the water correction, a thin insert
#: of each body material reads its painted HU within about 10 HU.
REFERENCE_KEV = 70.0
#: Linear attenuation of water at ``REFERENCE_KEV`` in 1/mm (xraydb 4.5.8, total with coherent;
#: the tests check it against the tables).
MU_WATER_REF_PER_MM = 0.019285148729411138

# -- the detector ----------------------------------------------------------------------------------
#: Scintillator of the energy-integrating detector: gadolinium oxysulfide (the class of Siemens'
#: UFC ceramic), 1.4 mm deep (assumed). It absorbs 96-100 % of the photons up to 90 keV, 93 % at
#: 100 keV and 81 % at 120 keV (99 % of the air spectrum); the signal of an absorbed photon is its energy.
DETECTOR_MATERIAL, DETECTOR_MM = "gos", 1.4
#: Default electronic noise, standard deviation in photon-equivalents of the mean detected energy of
#: the air scan (a variance of about 10 photons, the order of clinical energy-integrating detectors).
ELECTRONIC_NOISE_PHOTONS = 3.0
#: Signals below this many photon-equivalents (of the same mean energy) are clamped before the log,
#: as scanners clamp non-positive readings.
FLOOR_PHOTONS = 0.5

# -- the bowtie ------------------------------------------------------------------------------------
#: Source to isocentre distance of the Definition Flash class (mm); the bowtie is designed in terms
#: of the distance ``d = SOURCE_ISO_MM * sin(gamma)`` of a ray from the isocentre.
SOURCE_ISO_MM = 595.0
#: Body bowtie, aluminium above its centre (the centre's thickness is part of ``FILTRATION_MM``):
#: ``t(d) = BOWTIE_MAX_MM * (1 - 2 ** -(d / BOWTIE_HALF_MM) ** BOWTIE_POWER)``, fitted to the
#: profile of XCIST's 'large' body bowtie (within ~1 mm Al of it as a function of ``d``).
BOWTIE_MAX_MM, BOWTIE_HALF_MM, BOWTIE_POWER = 35.0, 128.0, 3.4

# -- materials -------------------------------------------------------------------------------------
#: Mass fractions (%) and densities (g/cm3) of the tabulated materials. ICRU Report 44 (1989)
#: compositions; air is NIST's dry air near sea level; trabecular bone is a mixture by mass of 30 %
#: cortical bone and 70 % red marrow (volumes add: 1.196 g/cm3).
MATERIALS: dict[str, dict] = {
    "water": {"density": 1.0, "formula": "H2O", "source": "H2O"},
    "soft_tissue": {"density": 1.06, "source": "ICRU-44 soft tissue",
                    "mass_percent": {"H": 10.2, "C": 14.3, "N": 3.4, "O": 70.8, "Na": 0.2, "P": 0.3, "S": 0.3,
                                     "Cl": 0.2, "K": 0.3}},
    "adipose": {"density": 0.95, "source": "ICRU-44 adipose tissue",
                "mass_percent": {"H": 11.4, "C": 59.8, "N": 0.7, "O": 27.8, "Na": 0.1, "S": 0.1, "Cl": 0.1}},
    "lung": {"density": 0.26, "source": "ICRU-44 lung tissue at the density of inflated lung (0.26 g/cm3)",
             "mass_percent": {"H": 10.3, "C": 10.5, "N": 3.1, "O": 74.9, "Na": 0.2, "P": 0.2, "S": 0.3, "Cl": 0.3,
                              "K": 0.2}},
    "cortical_bone": {"density": 1.92, "source": "ICRU-44 cortical bone",
                      "mass_percent": {"H": 3.4, "C": 15.5, "N": 4.2, "O": 43.5, "Na": 0.1, "Mg": 0.2, "P": 10.3,
                                       "S": 0.3, "Ca": 22.5}},
    "red_marrow": {"density": 1.03, "source": "ICRU-44 red marrow",
                   "mass_percent": {"H": 10.5, "C": 41.4, "N": 3.4, "O": 43.9, "P": 0.1, "S": 0.2, "Cl": 0.2,
                                    "K": 0.2, "Fe": 0.1}},
    "trabecular_bone": {"mix": {"cortical_bone": 0.3, "red_marrow": 0.7},
                        "source": "30 % cortical bone + 70 % red marrow by mass (ICRU-44), volumes additive"},
    "air": {"density": 0.001205, "source": "NIST dry air near sea level",
            "mass_percent": {"C": 0.0124, "N": 75.5268, "O": 23.1781, "Ar": 1.2827}},
    "aluminium": {"density": 2.699, "formula": "Al", "source": "Al (bowtie)"},
    "gos": {"density": 7.34, "formula": "Gd2O2S", "source": "Gd2O2S (detector scintillator)"},
}
#: The materials a phantom pixel can be made of (the others are the bowtie's and the detector's).
BODY_MATERIALS = ("water", "soft_tissue", "adipose", "lung", "cortical_bone", "red_marrow", "trabecular_bone", "air")
#: The two basis materials of :func:`basis_maps` (water at 1 g/cm3, cortical bone at 1.92 g/cm3).
BASIS = ("water", "cortical_bone")
#: Tissue name of :mod:`ctinv_utils.data.phantoms` -> material; names not listed are soft tissue.
TISSUE_MATERIAL = {
    "air": "air", "bowel_gas": "air", "airway": "air", "fat": "adipose", "lung": "lung", "bone": "cortical_bone",
    "cancellous": "trabecular_bone", "water": "water",
}

# -- numerics of the model -------------------------------------------------------------------------
MODEL_BIN_KEV = 5  # 1 keV table bins merged into model bins of this width (21 bins, 15-120 keV)
NOISE_GROUP = 3  # model bins merged into one bin of the Poisson draw (15 keV: 7 bins)
DECOMPOSITION_WATER_MM = 200.0  # the fit's spectrum is the detected energy fluence behind this much water
CHUNK_RAYS = 32768  # rays per block (bounds memory; the noise draw order depends on it)


# -----------------------------------------------------------------------------------------------------
# tables
# -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class XrayTables:
    """The embedded tables.

    Attributes
    ----------
    energies_kev : ndarray, (n_e,)
        Centres of the 1 keV energy bins, keV.
    fluence : ndarray, (n_e,)
        Tube spectrum after the filtration: photons per cm2 per mAs at 1 m in each 1 keV bin.
    mu_rho : dict of str to ndarray (n_e,)
        Mass attenuation coefficient (total with coherent) per material, cm2/g.
    density : dict of str to float
        Nominal density per material, g/cm3.
    meta : dict
        Everything else in the JSON (spectrum settings, HVL, compositions, library versions).
    """

    energies_kev: np.ndarray
    fluence: np.ndarray
    mu_rho: dict
    density: dict
    meta: dict

    def mu_per_mm(self, material: str) -> np.ndarray:
        """Linear attenuation of ``material`` at its nominal density on ``energies_kev``, 1/mm."""
        _check_material(material, self)
        return self.mu_rho[material] * self.density[material] / 10.0

    @property
    def mean_kev(self) -> float:
        """Mean energy of the photons of the filtered tube spectrum, keV."""
        return float(np.sum(self.energies_kev * self.fluence) / np.sum(self.fluence))


@lru_cache(maxsize=4)
def load_tables(path: str | Path = TABLES_PATH) -> XrayTables:
    """Read ``xray_tables.json`` (cached).

    Parameters
    ----------
    path : str or Path
        The JSON written by :func:`write_tables`; the packaged one by default.

    Returns
    -------
    XrayTables

    Raises
    ------
    BadArgumentError
        The file is missing or not a table file.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        energies = np.asarray(raw["energies_kev"], dtype=np.float64)
        fluence = np.asarray(raw["spectrum"]["fluence_per_cm2_mas_at_1m"], dtype=np.float64)
        mats = raw["materials"]
        mu_rho = {k: np.asarray(v["mu_rho_cm2_g"], dtype=np.float64) for k, v in mats.items()}
        density = {k: float(v["density_g_cm3"]) for k, v in mats.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadArgumentError(f"X-ray tables {path} unreadable ({type(exc).__name__}: {exc}); regenerate them with "
                               "'python -m ctinv_utils xray-tables' (needs pip install spekpy==2.5.4 xraydb==4.5.8)"
                               ) from exc
    meta = {k: v for k, v in raw.items() if k not in ("energies_kev",)}
    return XrayTables(energies, fluence, mu_rho, density, meta)


def _check_material(name: str, tables: XrayTables) -> None:
    if name not in tables.mu_rho:
        raise BadArgumentError(f"unknown material {name!r}; use one of {sorted(tables.mu_rho)} "
                               "(the materials of xray_tables.json)")


def _mass_fractions(spec: dict, xraydb) -> dict[str, float]:
    """Elemental mass fractions (summing to 1) of a MATERIALS entry."""
    if "formula" in spec:
        atoms = xraydb.chemparse(spec["formula"])
        mass = {el: n * xraydb.atomic_mass(el) for el, n in atoms.items()}
    elif "mix" in spec:
        mass: dict[str, float] = {}
        for part, weight in spec["mix"].items():
            for el, f in _mass_fractions(MATERIALS[part], xraydb).items():
                mass[el] = mass.get(el, 0.0) + weight * f
    else:
        mass = dict(spec["mass_percent"])
    total = sum(mass.values())
    return {el: m / total for el, m in mass.items()}


def _density(spec: dict) -> float:
    if "mix" in spec:  # volumes add
        return 1.0 / sum(w / MATERIALS[part]["density"] for part, w in spec["mix"].items())
    return float(spec["density"])


def write_tables(path: str | Path = TABLES_PATH) -> Path:
    """Generate ``xray_tables.json`` with spekpy (spectrum) and xraydb (attenuation).

    The spectrum is spekpy's for ``KVP`` kV, a tungsten anode at ``ANODE_ANGLE_DEG`` and the filters
    ``FILTRATION_MM``, in 0.5 keV bins summed into 1 keV bins centred on integer energies; the mass
    attenuation coefficients are xraydb's (Elam tables, total with coherent scattering), mixed by mass
    fraction for the compositions of ``MATERIALS``. The library versions are recorded in the file.

    Parameters
    ----------
    path : str or Path
        Where to write (atomically); the packaged file by default.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ImportError
        spekpy or xraydb is not installed (``pip install spekpy==2.5.4 xraydb==4.5.8``).
    """
    try:
        import spekpy
        import xraydb
    except ImportError as exc:
        raise ImportError(f"write_tables needs spekpy and xraydb ({exc}); install them with "
                          "pip install spekpy==2.5.4 xraydb==4.5.8 (the 'physics' extra of ctinv)") from exc
    from ...atomic import write_json

    energies = np.arange(ENERGY_MIN_KEV, ENERGY_MAX_KEV + 1, dtype=np.float64)
    spek = spekpy.Spek(kvp=KVP, th=ANODE_ANGLE_DEG, dk=0.5)
    spek.multi_filter([(m, t) for m, t in FILTRATION_MM])
    k, phi = spek.get_spectrum()  # midpoints of 0.5 keV bins, photons / (keV cm2 mAs) at 1 m
    k, phi = np.asarray(k, dtype=np.float64), np.asarray(phi, dtype=np.float64)
    photons = phi * 0.5
    centre = np.round(k)  # 14.75 and 15.25 -> 15: the two halves of the 1 keV bin [14.5, 15.5)
    fluence = np.array([photons[centre == e].sum() for e in energies])
    below = float(photons[k < ENERGY_MIN_KEV - 0.5].sum() / photons.sum())

    materials = {}
    for name, spec in MATERIALS.items():
        fractions = _mass_fractions(spec, xraydb)
        mu_rho = sum(f * np.asarray(xraydb.mu_elam(el, energies * 1e3, kind="total")) for el, f in fractions.items())
        materials[name] = {"density_g_cm3": _density(spec), "source": spec["source"],
                           "mass_fractions": {el: round(f, 8) for el, f in fractions.items()},
                           "mu_rho_cm2_g": [float(v) for v in mu_rho]}
    table = {
        "description": "Tables of ctinv_utils.data.scanner.xray: 120 kVp tube spectrum and mass attenuation "
                       "coefficients (total with coherent) on 1 keV bins. Generated; do not edit.",
        "generated_by": "ctinv_utils.data.scanner.xray.write_tables (python -m ctinv_utils xray-tables)",
        "versions": {"spekpy": _version("spekpy"), "xraydb": _version("xraydb"), "numpy": np.__version__},
        "energies_kev": [float(e) for e in energies],
        "spectrum": {"kvp": KVP, "anode_angle_deg": ANODE_ANGLE_DEG, "target": "W",
                     "filtration_mm": {m: t for m, t in FILTRATION_MM},
                     "fluence_per_cm2_mas_at_1m": [float(v) for v in fluence],
                     "hvl1_mm_al": float(spek.get_hvl1()), "mean_kev_spekpy": float(spek.get_emean()),
                     "fraction_below_table": below},
        "materials": materials,
    }
    return write_json(path, table)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def main(argv: list[str] | None = None) -> int:
    """``python -m ctinv_utils xray-tables [--out PATH]``: regenerate the X-ray tables (needs spekpy, xraydb)."""
    args = sys.argv[1:] if argv is None else list(argv)
    out: str | Path = TABLES_PATH
    if args and args[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0
    if len(args) == 2 and args[0] == "--out":
        out = args[1]
    elif args:
        print("usage: python -m ctinv_utils xray-tables [--out PATH]", file=sys.stderr)
        return 2
    try:
        path = write_tables(out)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tables = load_tables.__wrapped__(path)
    print(f"{path}: {len(tables.energies_kev)} energies, mean {tables.mean_kev:.1f} keV, "
          f"HVL {tables.meta['spectrum']['hvl1_mm_al']:.2f} mm Al, versions {tables.meta['versions']}")
    return 0


# -----------------------------------------------------------------------------------------------------
# HU at the reference energy
# -----------------------------------------------------------------------------------------------------

def hu_from_mu(mu_per_mm: np.ndarray | float) -> np.ndarray:
    """Linear attenuation (1/mm) at the reference energy -> HU: ``1000 * (mu / MU_WATER_REF_PER_MM - 1)``."""
    return 1000.0 * (np.asarray(mu_per_mm, dtype=np.float64) / MU_WATER_REF_PER_MM - 1.0)


def mu_from_hu(image_hu: np.ndarray | float) -> np.ndarray:
    """HU -> linear attenuation at the reference energy in 1/mm (the inverse of :func:`hu_from_mu`)."""
    return MU_WATER_REF_PER_MM * (1.0 + np.asarray(image_hu, dtype=np.float64) / 1000.0)


# -----------------------------------------------------------------------------------------------------
# bowtie
# -----------------------------------------------------------------------------------------------------

def bowtie_al_mm(gamma_rad: np.ndarray | float) -> np.ndarray:
    """Aluminium thickness of the body bowtie (above its centre) along the ray at fan angle ``gamma``.

    Zero at the centre, growing smoothly to ``BOWTIE_MAX_MM`` at the edge of a 500 mm field:
    ``t = BOWTIE_MAX_MM * (1 - 2 ** -(d / BOWTIE_HALF_MM) ** BOWTIE_POWER)`` with
    ``d = SOURCE_ISO_MM * |sin gamma|`` the ray's distance from the isocentre (half thickness at
    128 mm), the shape of XCIST's 'large' body bowtie.

    Parameters
    ----------
    gamma_rad : array_like
        Fan angle of the ray, radians (0 through the isocentre).

    Returns
    -------
    ndarray
        Aluminium thickness in mm, same shape.
    """
    d = SOURCE_ISO_MM * np.abs(np.sin(np.asarray(gamma_rad, dtype=np.float64)))
    return BOWTIE_MAX_MM * (1.0 - np.exp2(-((d / BOWTIE_HALF_MM) ** BOWTIE_POWER)))


# -----------------------------------------------------------------------------------------------------
# the model on energy bins
# -----------------------------------------------------------------------------------------------------

class _Model:
    """Everything derived once from the tables: model bins, detector efficiency, water correction."""

    def __init__(self, tables: XrayTables):
        e = tables.energies_kev
        self.tables = tables
        i_ref = int(np.flatnonzero(e == REFERENCE_KEV)[0])
        self.i_ref = i_ref
        # incident photons per 1 keV bin, normalised to one photon in total
        self.s_fine = tables.fluence / tables.fluence.sum()
        self.eta_fine = 1.0 - np.exp(-tables.mu_per_mm(DETECTOR_MATERIAL) * DETECTOR_MM)
        self.mu_fine = {m: tables.mu_per_mm(m) for m in tables.mu_rho}
        # model bins: groups of MODEL_BIN_KEV table bins (the last one takes the remainder)
        n = len(e)
        groups = [np.arange(s, s + MODEL_BIN_KEV) for s in range(0, n - MODEL_BIN_KEV + 1, MODEL_BIN_KEV)]
        groups[-1] = np.arange(groups[-1][0], n)  # the last bin takes the remainder (120 keV)
        detected = self.s_fine * self.eta_fine  # detected photons per incident photon
        self.det_k = np.array([detected[g].sum() for g in groups])  # detected photons per model bin (air)
        weight = detected * e  # detected energy per bin: weights of the bin averages
        self.e_k = np.array([np.sum(weight[g]) / np.sum(detected[g]) for g in groups])
        self.mu_k = {m: np.array([np.sum(weight[g] * mu[g]) / np.sum(weight[g]) for g in groups])
                     for m, mu in self.mu_fine.items()}
        self.n_bins = len(groups)
        # rows: water, bone, aluminium (multiplying the per-ray thicknesses in mm)
        self.mu_rows = np.stack([self.mu_k["water"], self.mu_k["cortical_bone"], self.mu_k["aluminium"]])
        # noise bins: NOISE_GROUP model bins each
        n_noise = -(-self.n_bins // NOISE_GROUP)
        self.group = np.zeros((self.n_bins, n_noise))
        self.group[np.arange(self.n_bins), np.arange(self.n_bins) // NOISE_GROUP] = 1.0
        self.group_e = self.group * self.e_k[:, None]
        # mean detected energy of the air scan in the centre channel: the electronic noise's unit
        self.air_mean_kev = float(np.sum(self.det_k * self.e_k) / np.sum(self.det_k))
        self.mu_ref = {m: float(mu[i_ref]) for m, mu in self.mu_fine.items()}
        self._coefficients: dict[str, tuple[float, float]] = {}
        self._build_water_correction()

    # -- signals --------------------------------------------------------------------------------
    def detected(self, w: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Detected photons per model bin per incident photon, (n, n_bins)."""
        expo = np.stack([w, b, t], axis=1) @ self.mu_rows
        np.exp(-expo, out=expo)
        expo *= self.det_k
        return expo

    def air_signal(self, t: np.ndarray) -> np.ndarray:
        """Noise-free energy signal of the air scan per incident photon (keV), per bowtie thickness."""
        return np.exp(-np.multiply.outer(t, self.mu_k["aluminium"])) @ (self.det_k * self.e_k)

    def log_poly(self, w, b, t) -> np.ndarray:
        """Noise-free polychromatic log signal, normalised by the air scan of the same channel."""
        return -np.log((self.detected(w, b, t) @ self.e_k) / self.air_signal(t))

    # -- the water beam-hardening correction ---------------------------------------------------
    def _build_water_correction(self) -> None:
        """Table of L = mu_ref * T over (bowtie thickness, measured log signal) for water paths T."""
        self.t_grid = np.linspace(0.0, BOWTIE_MAX_MM, 71)
        self.p_lo, self.dp = -1.0, 0.005
        self.p_grid = self.p_lo + self.dp * np.arange(int(round((26.0 - self.p_lo) / self.dp)) + 1)
        thickness = np.arange(-60.0, 2000.0 + 1e-9, 0.5)
        table = np.empty((len(self.t_grid), len(self.p_grid)))
        zeros = np.zeros_like(thickness)
        for i, t in enumerate(self.t_grid):
            p = self.log_poly(thickness, zeros, np.full_like(thickness, t))
            if not (p[0] < self.p_grid[0] and p[-1] > self.p_grid[-1]):  # the water range covers the table
                raise RuntimeError(f"water correction table: log signal {p[0]:.2f}..{p[-1]:.2f} does not cover "
                                   f"{self.p_grid[0]}..{self.p_grid[-1]}; widen the water thickness range")
            table[i] = MU_WATER_REF_PER_MM * np.interp(self.p_grid, p, thickness)
        self.bhc_table = table

    def water_correct(self, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Bilinear lookup in (t, p); linear extrapolation in p beyond the table."""
        ft = t / (self.t_grid[1] - self.t_grid[0])
        it = np.clip(np.floor(ft).astype(np.intp), 0, len(self.t_grid) - 2)
        at = np.clip(ft - it, 0.0, 1.0)
        fp = (p - self.p_lo) / self.dp
        ip = np.clip(np.floor(fp).astype(np.intp), 0, len(self.p_grid) - 2)
        ap = fp - ip  # unclipped: linear extrapolation at both ends
        tab = self.bhc_table
        lo = tab[it, ip] + ap * (tab[it, ip + 1] - tab[it, ip])
        hi = tab[it + 1, ip] + ap * (tab[it + 1, ip + 1] - tab[it + 1, ip])
        return lo + at * (hi - lo)

    # -- basis decomposition -----------------------------------------------------------------------
    def decomposition_weights(self) -> np.ndarray:
        """Detected energy fluence behind DECOMPOSITION_WATER_MM of water, on the 1 keV table."""
        w = self.s_fine * self.eta_fine * self.tables.energies_kev
        w = w * np.exp(-DECOMPOSITION_WATER_MM * self.mu_fine["water"])
        return w / w.max()

    def coefficients(self, material: str) -> tuple[float, float]:
        """(a, b) with mu_m(E) ~ a mu_water(E) + b mu_bone(E), exact at the reference energy."""
        if material not in self._coefficients:
            self._coefficients[material] = self._fit(material)
        return self._coefficients[material]

    def _fit(self, material: str) -> tuple[float, float]:
        _check_material(material, self.tables)
        if material in BASIS:
            return (1.0, 0.0) if material == BASIS[0] else (0.0, 1.0)
        mw, mb, mm = self.mu_fine["water"], self.mu_fine["cortical_bone"], self.mu_fine[material]
        i = self.i_ref
        c = np.array([mw[i], mb[i]])
        x0 = mm[i] * c / (c @ c)  # on the constraint a mw(ref) + b mb(ref) = mm(ref)
        n = np.array([mb[i], -mw[i]])  # along it
        weight = self.decomposition_weights() / mm ** 2  # relative errors, weighted by the spectrum
        basis = np.stack([mw, mb], axis=1)
        r0 = basis @ x0 - mm
        d = basis @ n
        z = -np.sum(weight * d * r0) / np.sum(weight * d * d)
        a, b = x0 + z * n
        return float(a), float(b)


@lru_cache(maxsize=1)
def _model() -> _Model:
    return _Model(load_tables())


# -----------------------------------------------------------------------------------------------------
# material (basis) maps
# -----------------------------------------------------------------------------------------------------

def basis_coefficients(material: str) -> tuple[float, float]:
    """Water and cortical-bone content of a material at its nominal density.

    ``mu_material(E) ~ a * mu_water(E) + b * mu_cortical_bone(E)`` (water at 1 g/cm3, bone at
    1.92 g/cm3), exact at ``REFERENCE_KEV``, least squares in relative error elsewhere, weighted by
    the detected energy spectrum behind 200 mm of water.

    Parameters
    ----------
    material : str
        A material of the tables (``MATERIALS``).

    Returns
    -------
    (float, float)
        ``(a, b)``, dimensionless.
    """
    return _model().coefficients(material)


def decomposition_errors(over: str = "spectrum", materials: tuple[str, ...] = BODY_MATERIALS) -> dict[str, float]:
    """Worst relative error of the two-material decomposition of each material's mu(E).

    Parameters
    ----------
    over : {"spectrum", "table"}
        ``"spectrum"``: over the energies where the fit's weight (detected energy fluence behind
        200 mm of water) is at least 1 % of its maximum; ``"table"``: over all of 15-120 keV.
    materials : tuple of str
        The materials to report; the body materials by default (not the bowtie's or detector's).

    Returns
    -------
    dict of str to float
        Material -> max |fit - mu| / mu.
    """
    if over not in ("spectrum", "table"):
        raise BadArgumentError(f"over={over!r}; use 'spectrum' or 'table'")
    m = _model()
    keep = m.decomposition_weights() >= 0.01 if over == "spectrum" else slice(None)
    out = {}
    for name in materials:
        a, b = m.coefficients(name)
        fit = a * m.mu_fine["water"] + b * m.mu_fine["cortical_bone"]
        out[name] = float(np.max(np.abs(fit / m.mu_fine[name] - 1.0)[keep]))
    return out


def label_materials(tissue_labels: Mapping[str, int], tissue_material: Mapping[str, str] | None = None
                    ) -> dict[int, str]:
    """Label -> material for a phantom's tissue labels (e.g. ``phantoms.LABELS``).

    Parameters
    ----------
    tissue_labels : mapping of str to int
        Tissue name -> label value.
    tissue_material : mapping of str to str, optional
        Tissue name -> material; ``TISSUE_MATERIAL`` by default. Tissues not in it are soft tissue.

    Returns
    -------
    dict of int to str
    """
    tissue_material = TISSUE_MATERIAL if tissue_material is None else tissue_material
    return {int(label): tissue_material.get(name, "soft_tissue") for name, label in tissue_labels.items()}


def basis_maps(image_hu: np.ndarray, labels: np.ndarray, label_material: Mapping[int, str] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """A painted HU image -> water and cortical-bone basis maps.

    Each pixel is its material at the density that gives its painted HU at ``REFERENCE_KEV``
    (``rho / rho_nominal = mu_water(ref) (1 + HU/1000) / mu_material(ref)``, 0 at -1000 HU and below);
    its mu(E) is then written as water plus cortical bone with :func:`basis_coefficients`. The maps are
    equivalent density fractions: the line integral of a map times the pixel size in mm is mm of water
    at 1 g/cm3 (resp. cortical bone at 1.92 g/cm3), what :func:`measure` takes. At the reference energy
    ``water_eq * mu_water + bone_eq * mu_bone`` reproduces the painted HU exactly.

    Parameters
    ----------
    image_hu : ndarray
        HU as they should read at the reference energy, any shape.
    labels : ndarray
        Same shape: integer labels (with ``label_material``) or material names (``label_material`` None).
    label_material : mapping of int to str, optional
        Label -> material name, e.g. ``label_materials(phantoms.LABELS)``.

    Returns
    -------
    (ndarray, ndarray)
        ``(water_eq, bone_eq)``, float32, dimensionless, same shape as ``image_hu``.

    Raises
    ------
    BadArgumentError
        Shapes differ, HU are not finite, a label has no material, or a material is unknown.

    Examples
    --------
    >>> w, b = basis_maps(np.array([[0.0, 1000.0]]), np.array([["water", "cortical_bone"]]))
    """
    hu = np.asarray(image_hu, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != hu.shape:
        raise BadArgumentError(f"labels shape {labels.shape} differs from image_hu shape {hu.shape}; "
                               "pass one label per pixel")
    if not np.all(np.isfinite(hu)):
        raise BadArgumentError("image_hu has NaN or infinite values; paint every pixel with a finite HU "
                               "(lesions included)")
    values, inverse = np.unique(labels, return_inverse=True)
    if label_material is None:
        if values.dtype.kind not in "US":
            raise BadArgumentError("labels are not material names; pass label_material (label -> material), "
                                   "e.g. label_materials(phantoms.LABELS)")
        names = [str(v) for v in values]
    else:
        missing = [v.item() for v in values if v.item() not in label_material]
        if missing:
            raise BadArgumentError(f"labels {missing} have no material in label_material; add them (materials: "
                                   f"{list(BODY_MATERIALS)})")
        names = [label_material[v.item()] for v in values]
    m = _model()
    a = np.empty(len(values))
    b = np.empty(len(values))
    for i, name in enumerate(names):
        ca, cb = m.coefficients(name)
        scale = MU_WATER_REF_PER_MM / m.mu_ref[name]  # density factor per (1 + HU/1000)
        a[i], b[i] = ca * scale, cb * scale
    rel = np.clip(1.0 + hu / 1000.0, 0.0, None)
    inverse = inverse.reshape(hu.shape)
    return (rel * a[inverse]).astype(np.float32), (rel * b[inverse]).astype(np.float32)


# -----------------------------------------------------------------------------------------------------
# the detector
# -----------------------------------------------------------------------------------------------------

def _rays(water_mm, bone_mm, gamma_rad) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    try:
        w, b, g = np.broadcast_arrays(np.asarray(water_mm, dtype=np.float64), np.asarray(bone_mm, dtype=np.float64),
                                      np.asarray(gamma_rad, dtype=np.float64))
    except ValueError as exc:
        raise BadArgumentError(f"water_mm {np.shape(water_mm)}, bone_mm {np.shape(bone_mm)} and gamma_rad "
                               f"{np.shape(gamma_rad)} do not broadcast; give gamma_rad the channel axis last, "
                               "e.g. (n_views, n_channels) rays with (n_channels,) angles") from exc
    for name, x in (("water_mm", w), ("bone_mm", b), ("gamma_rad", g)):
        if not np.all(np.isfinite(x)):
            raise BadArgumentError(f"{name} has NaN or infinite values; pass finite line integrals and angles")
    if np.any(np.abs(g) >= np.pi / 2):
        raise BadArgumentError("gamma_rad outside (-pi/2, pi/2); fan angles are in radians")
    shape = w.shape
    t = bowtie_al_mm(g)
    return w.ravel(), b.ravel(), np.ascontiguousarray(t).ravel(), shape


def expected_log(water_mm, bone_mm, gamma_rad, *, correct: bool = True) -> np.ndarray:
    """Noise-free log signal per ray: the mean of :func:`measure` without its noise.

    Parameters
    ----------
    water_mm, bone_mm : array_like
        Line integrals of the basis maps times the pixel size: mm of water (1 g/cm3) and mm of cortical
        bone (1.92 g/cm3) along each ray; broadcast together with ``gamma_rad``.
    gamma_rad : array_like
        Fan angle of each ray (channel), radians.
    correct : bool
        Apply the water beam-hardening correction (default); False gives the raw ``-log(I / I_air)``.

    Returns
    -------
    ndarray
        Line integrals, dimensionless (units of ``MU_WATER_REF_PER_MM * mm`` when corrected), float64.
    """
    w, b, t, shape = _rays(water_mm, bone_mm, gamma_rad)
    m = _model()
    out = np.empty(w.size)
    for s in range(0, w.size, CHUNK_RAYS):
        sl = slice(s, s + CHUNK_RAYS)
        out[sl] = m.log_poly(w[sl], b[sl], t[sl])
    if correct:
        out = m.water_correct(out, t)
    return out.reshape(shape)


def water_correction(log_poly, gamma_rad) -> np.ndarray:
    """The water beam-hardening correction: measured log signal -> water line integral at the reference energy.

    Parameters
    ----------
    log_poly : array_like
        ``-log(I / I_air)`` of the energy-integrating detector.
    gamma_rad : array_like
        Fan angle of each ray, radians (selects the bowtie, so the channel's spectrum); broadcast.

    Returns
    -------
    ndarray
        ``MU_WATER_REF_PER_MM * T`` where ``T`` (mm) is the water path that gives ``log_poly``.
    """
    p, g = np.broadcast_arrays(np.asarray(log_poly, dtype=np.float64), np.asarray(gamma_rad, dtype=np.float64))
    return _model().water_correct(p.ravel(), bowtie_al_mm(g).ravel()).reshape(p.shape)


def poisson_pair(expected_full: np.ndarray, dose_fraction: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts at full dose and their binomial thinning to ``dose_fraction``.

    Drawn as ``low ~ Poisson(f lam)`` and ``full = low + Poisson((1 - f) lam)`` with independent draws:
    by the splitting property of the Poisson law this is exactly ``full ~ Poisson(lam)``,
    ``low | full ~ Binomial(full, f)`` (so ``low <= full``), and it is faster than numpy's binomial.

    Parameters
    ----------
    expected_full : ndarray
        Expected counts at full dose (photons), any shape, >= 0.
    dose_fraction : float
        ``f`` in (0, 1].
    rng : numpy.random.Generator

    Returns
    -------
    (ndarray, ndarray)
        ``(full, low)`` integer counts, same shape.
    """
    lam = np.asarray(expected_full, dtype=np.float64)
    low = rng.poisson(dose_fraction * lam)
    full = low + rng.poisson((1.0 - dose_fraction) * lam)
    return full, low


def measure(water_mm, bone_mm, gamma_rad, photons_full_dose: float, dose_fraction: float,
            rng: np.random.Generator, *, electronic_noise_photons: float = ELECTRONIC_NOISE_PHOTONS,
            floor_photons: float = FLOOR_PHOTONS, correct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A full-dose and a low-dose reading of each ray by the energy-integrating detector.

    Per ray: expected photons per energy bin through the bowtie (channel ``gamma``) and the object;
    Poisson counts at full dose; the low-dose counts a binomial thinning of them at ``dose_fraction``
    (how the Mayo low-dose data were made; drawn as ``low ~ Poisson(f lam)``, ``full = low +
    Poisson((1 - f) lam)``, which has exactly that joint law); the signal ``sum E N_E`` plus independent
    Gaussian electronic noise in each scan; normalised by the noise-free air signal of the channel at
    the same dose; clamped at ``floor_photons`` photon-equivalents; ``-log``; then the water
    beam-hardening correction of the channel (``correct``).

    Parameters
    ----------
    water_mm, bone_mm : array_like
        mm of water (1 g/cm3) and of cortical bone (1.92 g/cm3) along each ray (line integrals of
        :func:`basis_maps` times the pixel size); any shape, broadcast with ``gamma_rad``.
    gamma_rad : array_like
        Fan angle of each ray, radians, e.g. shape (n_channels,) for rays (n_views, n_channels).
    photons_full_dose : float
        Photons incident on a detector channel per reading at full dose, in air in the central channel
        (the detector absorbs ~99 % of them; the bowtie removes more towards the edge).
    dose_fraction : float
        Low dose over full dose, in (0, 1] (0.25 head and abdomen, 0.10 chest in the Mayo data).
    rng : numpy.random.Generator
        Source of the noise.
    electronic_noise_photons : float
        Standard deviation of the electronic noise, photon-equivalents of the mean detected energy of
        the air scan (same in both scans, independent between them).
    floor_photons : float
        Signals below this many photon-equivalents are set to it before the log.
    correct : bool
        Apply the water beam-hardening correction (default).

    Returns
    -------
    (ndarray, ndarray)
        ``(log_full, log_low)``: line integrals, dimensionless (``MU_WATER_REF_PER_MM * mm`` of water
        equivalent when corrected), float64, the broadcast shape of the inputs.

    Raises
    ------
    BadArgumentError
        Inputs do not broadcast or are not finite, ``photons_full_dose <= 0``, ``dose_fraction`` outside
        (0, 1], negative noise or floor, or ``rng`` not a numpy Generator.
    """
    if not isinstance(rng, np.random.Generator):
        raise BadArgumentError(f"rng is {type(rng).__name__}; pass a numpy Generator, e.g. np.random.default_rng(seed)")
    if not (np.isfinite(photons_full_dose) and photons_full_dose > 0):
        raise BadArgumentError(f"photons_full_dose={photons_full_dose}; give the photons per ray in air at full "
                               "dose, a positive number (e.g. 1e5 to 1e6)")
    if not (np.isfinite(dose_fraction) and 0 < dose_fraction <= 1):
        raise BadArgumentError(f"dose_fraction={dose_fraction}; give the low-dose fraction in (0, 1], e.g. 0.25")
    if not (np.isfinite(electronic_noise_photons) and electronic_noise_photons >= 0):
        raise BadArgumentError(f"electronic_noise_photons={electronic_noise_photons}; give a standard deviation "
                               ">= 0 in photon-equivalents (default 3)")
    if not (np.isfinite(floor_photons) and floor_photons > 0):
        raise BadArgumentError(f"floor_photons={floor_photons}; give a positive clamp level in photon-equivalents "
                               "(default 0.5)")
    w, b, t, shape = _rays(water_mm, bone_mm, gamma_rad)
    m = _model()
    f = float(dose_fraction)
    sigma = electronic_noise_photons * m.air_mean_kev  # keV
    floor = floor_photons * m.air_mean_kev
    full = np.empty(w.size)
    low = np.empty(w.size)
    for s in range(0, w.size, CHUNK_RAYS):
        sl = slice(s, s + CHUNK_RAYS)
        lam = m.detected(w[sl], b[sl], t[sl])
        lam *= photons_full_dose
        lam_j = lam @ m.group  # photons per noise bin at full dose
        e_j = (lam @ m.group_e) / np.maximum(lam_j, 1e-300)  # their mean energy, keV
        n_full, n_low = poisson_pair(lam_j, f, rng)
        s_low = np.einsum("ij,ij->i", n_low, e_j)
        s_full = np.einsum("ij,ij->i", n_full, e_j)
        if sigma > 0:
            s_low += sigma * rng.standard_normal(s_low.size)
            s_full += sigma * rng.standard_normal(s_full.size)
        air = photons_full_dose * m.air_signal(t[sl])
        full[sl] = -np.log(np.maximum(s_full, floor) / air)
        low[sl] = -np.log(np.maximum(s_low, floor) / (f * air))
    if correct:
        full = m.water_correct(full, t)
        low = m.water_correct(low, t)
    return full.reshape(shape), low.reshape(shape)


if __name__ == "__main__":
    sys.exit(main())
