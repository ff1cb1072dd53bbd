"""The artifacts contract: every file a notebook writes and a later one reads, in one place.

``Artifacts(root)`` knows, for each kind of artifact, which notebook makes it and where it lives
under ``papermill_runs/<preset>/artifacts/``; it writes each atomically and reads it back. Figure-ready
arrays (HU) are stored as ``.npz`` with a JSON sidecar holding their SHA-256 (file and per array),
shapes, the facts a caption needs and the provenance, so the figures notebook redraws every panel
**without loading a network**, and a damaged file is detected, not drawn. A missing artifact names
the notebook that makes it and the command that runs it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import atomic
from ..errors import CTInvError
from ..paths import repo_relative, run_dir
from ..provenance import array_sha256, sha256_bytes, sha256_file  # noqa: F401 (re-exported)


class ArtifactError(CTInvError):
    """An artifact is missing, damaged, or was made from other inputs."""


@dataclass(frozen=True)
class Spec:
    notebook: str
    pattern: str
    what: str


SPECS: dict[str, Spec] = {
    # 01
    "data": Spec("01_data", "data.json", "data source, patient split and per-region summary"),
    # 02
    "denoisers": Spec("02_denoiser_training", "denoisers.json", "trained models, their configs and notes"),
    "model": Spec("02_denoiser_training", "models/{name}.pt", "weights of a trained denoiser"),
    "training_history": Spec("02_denoiser_training", "training/{name}.npz", "loss curves of a training run"),
    "evaluation": Spec("02_denoiser_training", "evaluation.json", "PSNR/SSIM/RMSE per region and method"),
    "examples": Spec("02_denoiser_training", "examples/{region}.npz", "a denoised test slice per method"),
    # 03
    "analysis_slice": Spec("03_image_domain_invariances", "analysis_slice.npz",
                           "the low/full-dose slice the invariances are computed on"),
    "invariance": Spec("03_image_domain_invariances", "invariances/{denoiser}_{distance}.pt",
                       "an invariance run (resumable)"),
    "invariance_arrays": Spec("03_image_domain_invariances", "invariances/{denoiser}_{distance}.npz",
                              "x, x_inv, f(x), f(x_inv) and histories in HU"),
    "invariances_summary": Spec("03_image_domain_invariances", "invariances_summary.json",
                                "per denoiser, distance and alpha: distances and changes in HU"),
    "tolerance_arrays": Spec("03_image_domain_invariances", "tolerance/{denoiser}_{distance}.npz",
                             "the largest invariance within the output tolerance: x, x_inv, f(x), f(x_inv) in HU"),
    "tolerance_summary": Spec("03_image_domain_invariances", "tolerance_summary.json",
                              "per denoiser and distance: the alpha, input and output change at the tolerance"),
    "unconstrained_arrays": Spec("03_image_domain_invariances", "unconstrained/{denoiser}_{distance}.npz",
                                 "the talk's unconstrained form (no HU range), for the side-by-side"),
    "unconstrained_summary": Spec("03_image_domain_invariances", "unconstrained_summary.json",
                                  "per alpha of the unconstrained runs: changes and out-of-range pixels"),
    "attack": Spec("03_image_domain_invariances", "adversarial/{denoiser}_{loss}_{attack}.pt", "an FGSM/BIM run"),
    "attack_arrays": Spec("03_image_domain_invariances", "adversarial/{denoiser}_{loss}_{attack}.npz",
                          "x, x_adv, f(x), f(x_adv) in HU"),
    "adversarial_summary": Spec("03_image_domain_invariances", "adversarial_summary.json",
                                "per attack: input and output changes in HU"),
    # 04
    "natural_generator": Spec("04_natural_invariances", "natural/{denoiser}.pt", "a trained natural-invariance generator"),
    "natural_arrays": Spec("04_natural_invariances", "natural/{denoiser}.npz",
                           "x, samples g(z|x), f(x), f(samples) and the pixel-wise std in HU"),
    "natural_analysis": Spec("04_natural_invariances", "natural_analysis.json",
                             "noise versus anatomy: metrics and verdicts, natural and image-domain"),
    "linearised": Spec("03_image_domain_invariances", "linearised/{denoiser}.npz",
                       "smallest and largest singular values/vectors of the denoiser's Jacobian on the slice"),
    # 05
    "lesion_examples": Spec("05_lesions", "lesions/examples.npz",
                            "a lesion slice and its lesion-free twin: low, full dose and each denoiser's output, HU"),
    "lesion_metrics": Spec("05_lesions", "lesions/metrics.json",
                           "per lesion and image kind: contrast retained, structure transfer, d' (NPWMF, CHO)"),
    "contrast_detail": Spec("05_lesions", "lesions/contrast_detail.npz",
                            "contrast-detail curves: threshold contrast (HU) against diameter (mm) per image kind"),
    "lesion_invariance": Spec("05_lesions", "lesions/invariance_{denoiser}.npz",
                              "how much of a lesion x_inv removes, per alpha"),
    # sweeps (python -m ctinv_utils sweep, not a notebook)
    "sweep_item": Spec("sweep", "sweep/items/{item}.npz",
                       "one work item of a sharded sweep: x, x_inv, f(x), f(x_inv) and histories in HU"),
    "sweep_summary": Spec("sweep", "sweep/summary.json",
                          "a sweep's account and, per denoiser, distance and alpha, the medians over the slices"),
}


@dataclass
class ArrayArtifact:
    """Arrays read back from an ``.npz`` artifact, with its sidecar ``meta`` (facts for captions)."""

    arrays: dict[str, np.ndarray]
    meta: dict
    path: Path

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


class Artifacts:
    """Reads and writes the artifacts of one run folder (``papermill_runs/<preset>/artifacts``).

    Each kind of artifact (a key of :data:`SPECS`) has one notebook that makes it and one path
    pattern; writes are atomic, reads verify checksums, and a missing or damaged artifact is an
    :class:`ArtifactError` naming the notebook that makes it and the command that runs it.

    Parameters
    ----------
    root : str or pathlib.Path
        The artifacts folder.
    preset : str
        The preset of the run (named in the fix of a missing artifact).
    provenance : callable, optional
        Returns the provenance record stored with every artifact (a notebook passes its context's;
        a reader needs none).

    Examples
    --------
    >>> from ctinv_utils import Artifacts
    >>> art = Artifacts.of_preset("quick")
    >>> arrays = art.read_arrays("invariance_arrays", denoiser="cnn10", distance="mse")
    >>> arrays["x_inv"].shape, arrays.meta  # doctest: +SKIP
    """

    def __init__(self, root: str | Path, preset: str = "quick", provenance: Callable[..., dict] | None = None):
        self.root = Path(root)
        self.preset = preset
        self._provenance = provenance
        self._reads: dict[str, str] = {}

    def pop_reads(self) -> dict[str, str]:
        """The array artifacts read since the last call, {path relative to the root: SHA-256}: what a
        figure drawn in between was made from."""
        reads, self._reads = self._reads, {}
        return reads

    @classmethod
    def of_preset(cls, preset: str) -> "Artifacts":
        """The artifacts of a preset's run folder, ``papermill_runs/<preset>/artifacts``."""
        return cls(run_dir(preset) / "artifacts", preset)

    # -- names ---------------------------------------------------------------------------------
    def path(self, kind: str, **keys: Any) -> Path:
        """Where an artifact lives, e.g. ``path("model", name="cnn10")``.

        ``keys`` fill the kind's pattern (:data:`SPECS`); a ``:`` in a value (``ldctbench:redcnn``)
        becomes ``-``. An unknown kind or a missing key is a ``KeyError`` naming the pattern.
        """
        if kind not in SPECS:
            raise KeyError(f"unknown artifact kind {kind!r}; known: {sorted(SPECS)}")
        # a published denoiser's name (ldctbench:redcnn) becomes ldctbench-redcnn in file names
        keys = {k: v.replace(":", "-") if isinstance(v, str) else v for k, v in keys.items()}
        try:
            return self.root / SPECS[kind].pattern.format(**keys)
        except KeyError as exc:
            raise KeyError(f"artifact {kind!r} needs the key {exc} ({SPECS[kind].pattern})") from None

    def exists(self, kind: str, **keys: Any) -> bool:
        """Whether the artifact's file exists (not verified)."""
        return self.path(kind, **keys).is_file()

    def _missing(self, kind: str, path: Path, why: str = "is missing") -> ArtifactError:
        nb = SPECS[kind].notebook
        shown = repo_relative(path)
        if nb == "sweep":
            return ArtifactError(f"{shown} ({SPECS[kind].what}) {why}: a sweep makes it; run "
                                 f"`python -m ctinv_utils sweep --preset {self.preset}`")
        return ArtifactError(f"{shown} ({SPECS[kind].what}) {why}: notebook {nb} makes it; run "
                             f"`python -m ctinv_utils run --preset {self.preset} --only {nb[:2]}`")

    def require(self, kind: str, **keys: Any) -> Path:
        """The artifact's path; an :class:`ArtifactError` naming the notebook to run when it is missing."""
        p = self.path(kind, **keys)
        if not p.is_file():
            raise self._missing(kind, p)
        return p

    def _record(self, **extra: Any) -> dict:
        return self._provenance(**extra) if self._provenance else dict(extra)

    # -- JSON ----------------------------------------------------------------------------------
    def write_json(self, kind: str, obj: dict, keys: dict | None = None) -> Path:
        """Write ``obj`` (a dict) with the provenance record under ``"provenance"``."""
        return atomic.write_json(self.path(kind, **(keys or {})), {**obj, "provenance": self._record()})

    def read_json(self, kind: str, **keys: Any) -> dict:
        """A JSON artifact as a dict; an :class:`ArtifactError` when it is missing or not valid JSON."""
        p = self.require(kind, **keys)
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._missing(kind, p, f"is damaged ({exc})") from None

    # -- arrays --------------------------------------------------------------------------------
    def write_arrays(self, kind: str, arrays: dict[str, np.ndarray], meta: dict | None = None,
                     keys: dict | None = None) -> Path:
        """Write figure-ready arrays as ``.npz``, with a JSON sidecar of checksums, shapes, meta and provenance.

        Parameters
        ----------
        kind : str
            An array kind of :data:`SPECS` (its pattern ends in ``.npz``), e.g. ``"invariance_arrays"``.
        arrays : dict
            ``{name: array}``, conventionally in HU (e.g. an ``Invariance.figure_arrays()``).
        meta : dict, optional
            JSON-ready facts a caption needs (stored in the sidecar, returned by :meth:`read_arrays`).
        keys : dict, optional
            The values of the kind's pattern, e.g. ``{"denoiser": "cnn10", "distance": "mse"}``.

        Returns
        -------
        pathlib.Path
            The ``.npz`` written (atomically; the sidecar is ``<file>.json``).

        Examples
        --------
        >>> path = art.write_arrays("invariance_arrays", inv.figure_arrays(), {"alphas": inv.alpha_values},
        ...                         keys={"denoiser": "cnn10", "distance": "mse"})
        """
        path = self.path(kind, **(keys or {}))
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        atomic.write_bytes(path, data)
        atomic.write_json(path.with_suffix(".json"), {
            "sha256": sha256_bytes(data),
            "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str, "sha256": array_sha256(v)}
                       for k, v in arrays.items()},
            "meta": meta or {}, "provenance": self._record(artifact=kind)})
        return path

    def read_arrays(self, kind: str, **keys: Any) -> ArrayArtifact:
        """Read an ``.npz`` artifact back, after verifying it against its recorded SHA-256.

        Parameters
        ----------
        kind : str
            The array kind, e.g. ``"invariance_arrays"``.
        **keys
            The values of its pattern, e.g. ``denoiser="cnn10", distance="mse"``.

        Returns
        -------
        ArrayArtifact
            ``.arrays`` (``{name: numpy.ndarray}``, also by ``artifact[name]``), ``.meta``, ``.path``.

        Raises
        ------
        ArtifactError
            Missing, without its sidecar, or not matching its SHA-256 (names the notebook to rerun).

        Examples
        --------
        >>> a = art.read_arrays("invariance_arrays", denoiser="cnn10", distance="mse")
        >>> x_inv_hu = a["x_inv"]                 # (A, H, W) in HU
        """
        path = self.require(kind, **keys)
        side = path.with_suffix(".json")
        if not side.is_file():
            raise self._missing(kind, path, "has no checksum sidecar (an interrupted write?)")
        record = json.loads(side.read_text())
        data = path.read_bytes()
        if sha256_bytes(data) != record.get("sha256"):
            raise self._missing(kind, path, "does not match its recorded SHA-256 (damaged or changed)")
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        self._reads[str(path.relative_to(self.root))] = record["sha256"]
        return ArrayArtifact(arrays, record.get("meta", {}), path)

    def array_checksums(self, kind: str, **keys: Any) -> dict[str, str]:
        """SHA-256 of each array of an ``.npz`` artifact (from its sidecar)."""
        side = self.require(kind, **keys).with_suffix(".json")
        return {k: v["sha256"] for k, v in json.loads(side.read_text())["arrays"].items()}

    # -- torch files ---------------------------------------------------------------------------
    def write_torch(self, kind: str, obj: Any, keys: dict | None = None) -> Path:
        """``torch.save`` of ``obj`` (atomically) with a SHA-256 sidecar; :meth:`verified` checks it."""
        path = self.path(kind, **(keys or {}))
        atomic.torch_save(path, obj)
        atomic.write_json(path.with_suffix(path.suffix + ".json"),
                          {"sha256": sha256_file(path), "provenance": self._record(artifact=kind)})
        return path

    def verified(self, kind: str, **keys: Any) -> Path:
        """Path of a torch artifact whose SHA-256 matches the one recorded when it was written."""
        path = self.require(kind, **keys)
        side = path.with_suffix(path.suffix + ".json")
        if not side.is_file() or json.loads(side.read_text()).get("sha256") != sha256_file(path):
            raise self._missing(kind, path, "does not match its recorded SHA-256 (damaged or changed)")
        return path

    # -- what the notebooks hand each other ------------------------------------------------------
    def data_split(self, data) -> dict[str, list[str]]:
        """The patient split notebook 01 made, after checking it was made on the same data as
        ``data`` (a :class:`~ctinv_utils.data.dataset.PairedCTData`)."""
        info = self.read_json("data")
        if info["source"] != data.source or info["root"] != str(data.root):
            raise ArtifactError(f"notebook 01's split was made on {info['source']} ({info['root']}), this notebook "
                                f"loads {data.source} ({data.root}); re-run notebook 01 with the same data: "
                                f"`python -m ctinv_utils run --preset {self.preset} --only 01 ...`")
        return info["split"]

    def save_denoisers(self, models: dict, info: dict, published: dict | None = None) -> None:
        """Weights of the trained denoisers (``{name: module}``; parameter-free ones are recorded by
        name only) and ``denoisers.json`` (``info`` plus the weight files). ``published``: {name:
        checkpoint path} of ldct-benchmark networks evaluated beside them (recorded with the file's
        SHA-256, not copied)."""
        files = {}
        for name, m in models.items():
            state = {k: v.detach().cpu() for k, v in m.state_dict().items()}
            if state:
                files[name] = str(self.write_torch("model", {"model": state}, {"name": name}).relative_to(self.root))
        pub = {n: {"path": str(p), "sha256": sha256_file(p)} for n, p in (published or {}).items()}
        self.write_json("denoisers", {**info, "names": list(models) + list(pub), "weights": files, "published": pub})

    def load_denoisers(self, names, device: str = "cpu") -> dict:
        """Frozen denoisers by name, from the weights notebook 02 saved or, for ldct-benchmark's published
        networks, from the checkpoint file 02 evaluated (checksums verified)."""
        from ..models import load_denoiser
        info = self.read_json("denoisers")
        published = info.get("published", {})
        out = {}
        for name in names:
            if name in info["weights"]:
                out[name] = load_denoiser(name, self.verified("model", name=name), device)
            elif name in published:
                rec = published[name]
                if not Path(rec["path"]).is_file() or sha256_file(rec["path"]) != rec["sha256"]:
                    raise ArtifactError(f"{rec['path']} ({name}) is missing or changed since notebook 02 evaluated it; "
                                        f"re-run notebook 02: `python -m ctinv_utils run --preset {self.preset} --only 02`")
                out[name] = load_denoiser(name, rec["path"], device)
            elif name in info["names"]:
                out[name] = load_denoiser(name, None, device)
            elif name.startswith("ldctbench:"):
                raise ArtifactError(f"notebook 02 did not evaluate the published denoiser {name!r} (it evaluated "
                                    f"{sorted(published) or 'none'}); add it to notebook 02's `published` list (and "
                                    f"download it: `python -m ctinv_utils hub download {name.split(':', 1)[1]}`)")
            else:
                raise ArtifactError(f"notebook 02 did not make the denoiser {name!r} (it made {info['names']}); "
                                    "add it to the preset's denoisers and re-run notebook 02")
        return out

    def published_denoisers(self) -> list[str]:
        """The ldct-benchmark networks notebook 02 evaluated (their files were present)."""
        return list(self.read_json("denoisers").get("published", {}))

    def save_object(self, kind: str, obj, keys: dict | None = None) -> Path:
        """An object with ``save(path)`` (a synthesis run, a generator), with its SHA-256 sidecar."""
        path = self.path(kind, **(keys or {}))
        obj.save(path)
        atomic.write_json(path.with_suffix(path.suffix + ".json"),
                          {"sha256": sha256_file(path), "provenance": self._record(artifact=kind)})
        return path

    def save_synthesis(self, kind: str, obj, meta: dict, keys: dict) -> None:
        """A synthesis object (resumable ``.pt``) and its figure arrays (``.npz``), e.g.
        ``kind="invariance"`` writes ``invariance`` and ``invariance_arrays``."""
        self.save_object(kind, obj, keys)
        self.write_arrays(f"{kind}_arrays", obj.figure_arrays(), meta, keys)
