"""What every notebook sets up first: seed, device, output folders, artifacts, provenance, figures.

A notebook's parameters are the fields of its settings model (:mod:`ctinv_utils.pipeline.config`),
which its ``parameters`` cell lists with the quick preset's values::

    ctx = context.setup("03_image_domain_invariances", globals())

takes their values from the notebook's namespace and validates them (``ctx.settings``), so what a
user edits in JupyterLab is checked as a preset is, and the config hash, the figures' sidecars and
the manifest all come from the same model.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import atomic
from .artifacts import Artifacts
from ..errors import PresetError
from ..figures.ct import add_caption, figure_data
from ..figures.explorer_html import write_explorer_html
from ..paths import STAGING_ENV, repo_relative, resolve_output
from .config import NOTEBOOK_SETTINGS
from .presets import parameters_hash, validation_problems
from ..provenance import array_sha256, provenance, set_seed, sha256_bytes, sha256_file
from ..settings import check_device


@dataclass
class RunContext:
    """Per-notebook context. ``show`` saves a figure as PNG + PDF + a JSON provenance sidecar and
    displays it; ``artifacts`` reads and writes what notebooks hand each other."""

    notebook: str
    params: dict
    figures_dir: Path
    artifacts_dir: Path
    data_source: str = "not loaded yet"
    notes: dict = field(default_factory=dict)
    settings: Any = None  # the validated settings model (None for a notebook outside notebooks/)
    _artifacts: Artifacts | None = field(default=None, repr=False)

    def __post_init__(self):
        self.preset, self.seed = str(self.params["preset"]), int(self.params["seed"])
        self.device, self.interactive = str(self.params["device"]), bool(self.params["interactive"])

    @property
    def config_hash(self) -> str:
        return parameters_hash(self.params)

    @property
    def artifacts(self) -> Artifacts:
        """The run's artifacts (one object, so it can tell which ones a figure was drawn from)."""
        if self._artifacts is None:
            self._artifacts = Artifacts(self.artifacts_dir, self.preset, self.provenance)
        return self._artifacts

    def caption(self, *parts: str) -> str:
        """Caption text: what the figure shows, then preset, data, seed and config hash."""
        base = (f"{self.notebook} | preset {self.preset} | data: {self.data_source} | seed {self.seed} | "
                f"config {self.config_hash} | device {self.device}")
        return " | ".join([*[p for p in parts if p], base])

    def provenance(self, **extra: Any) -> dict:
        return provenance(seed=self.seed, config=self.params, device=self.device, notebook=self.notebook,
                          data_source=self.data_source, config_hash=self.config_hash,
                          created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra)

    def add_note(self, key: str, value: Any) -> None:
        """A fact the run manifest must carry (e.g. which VGG weights were used, whether every
        denoiser denoises); the runner copies ``artifacts_dir/notes/<notebook>.json`` into the
        notebook's manifest entry."""
        self.notes[key] = value
        atomic.write_json(self.artifacts_dir / "notes" / f"{self.notebook}.json", self.notes)

    def save_figure(self, fig, name: str, caption: str | None = None, **extra: Any) -> list[Path]:
        """Add the caption, save ``figures_dir/name.{png,pdf}``, the arrays behind the figure
        (``artifacts_dir/figure_data/name.npz``) and ``name.json``: provenance, the artifacts the
        figure was drawn from and the SHA-256 of each of its arrays. A ``:`` in ``name`` (a published
        network, ``ldctbench:cnn10``) becomes ``-`` in the file names, as in the artifacts."""
        name = file_name(name)
        add_caption(fig, self.caption(caption or ""))
        data = figure_data(fig)
        data_file = self.artifacts_dir / "figure_data" / f"{name}.npz"
        atomic.write_npz(data_file, **data)
        paths = atomic.savefig(fig, self.figures_dir / name)
        atomic.write_json(self.figures_dir / f"{name}.json", self.provenance(
            figure=name, caption=caption, files=[p.name for p in paths], data_file=repo_relative(data_file),
            data_sha256={k: array_sha256(v) for k, v in data.items()}, drawn_from=self.artifacts.pop_reads(),
            **extra))
        return paths

    def save_table(self, name: str, csv: str, caption: str = "") -> Path:
        """A table as ``figures_dir/name.csv`` with its JSON sidecar (provenance and checksum)."""
        name = file_name(name)

        path = atomic.write_text(self.figures_dir / f"{name}.csv", csv)
        atomic.write_json(self.figures_dir / f"{name}.json", self.provenance(
            figure=name, caption=caption, files=[path.name], data_sha256={"csv": sha256_bytes(csv.encode())},
            drawn_from=self.artifacts.pop_reads()))
        return path

    def save_explorer(self, entries: dict, title: str, caption: str = "", name: str = "explorer") -> Path:
        """The self-contained HTML explorer (``figures_dir/name.html``, opens from the file in any
        browser) of ``entries`` ({(denoiser, distance): arrays in HU}, see
        :func:`~ctinv_utils.figures.explorer_html.write_explorer_html`), with its JSON sidecar."""

        path = write_explorer_html(entries, self.figures_dir / f"{name}.html", title=title,
                                   caption=self.caption(caption), provenance=self.provenance())
        atomic.write_json(self.figures_dir / f"{name}.json", self.provenance(
            figure=name, caption=caption, files=[path.name], data_sha256={"html": sha256_file(path)},
            drawn_from=self.artifacts.pop_reads()))
        return path

    def show(self, fig, caption: str | None = None, *, name: str, **extra: Any) -> None:
        """``save_figure(fig, name, caption)``, then display the figure once and close it (no stray
        reprs). Takes a panel function's ``(fig, caption)`` as ``ctx.show(*panel, name=...)``."""
        import matplotlib.pyplot as plt
        from IPython.display import Image, display

        paths = self.save_figure(fig, name, caption, **extra)
        plt.close(fig)
        png = next(p for p in paths if p.suffix == ".png")
        if self.interactive:
            display(Image(filename=str(png)))  # the saved PNG: no third render
        else:  # a headless run's executed notebook is read on the repository page: a lighter copy
            display(Image(data=preview_jpeg(png), format="jpeg"))


    def view(self, fig, caption: str | None = None) -> None:
        """Display a figure once and close it, without writing a file: a panel that another notebook
        saves (notebook 06 writes each result panel once), shown where the notebook that computed it
        explains it. The artifacts it read are not credited to the next saved figure."""
        import matplotlib.pyplot as plt
        from IPython.display import Image, display

        add_caption(fig, self.caption(caption or ""))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        self.artifacts.pop_reads()
        if self.interactive:
            display(Image(data=buf.getvalue(), format="png"))
        else:  # as the saved figures' previews in an executed notebook
            display(Image(data=preview_jpeg(buf), format="jpeg"))


def file_name(name: str) -> str:
    """A figure's name as a file name every file system stores (``:`` of a published network's name
    becomes ``-``, as in the artifacts)."""
    return name.replace(":", "-")


def preview_jpeg(png: Path | io.BytesIO, max_width: int = 1400, quality: int = 80) -> bytes:
    """A JPEG copy of a PNG (a file, or bytes in memory), at most ``max_width`` px wide (the full PNG
    stays in figures/)."""
    from PIL import Image as PILImage

    im = PILImage.open(png).convert("RGB")
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), PILImage.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def setup(notebook: str, namespace: dict | None = None, params: dict | None = None) -> RunContext:
    """Seed everything, resolve the device, create the output folders.

    ``namespace``: the notebook's ``globals()``; the parameters are the names its ``parameters``
    cell declares. ``params``: the parameters themselves (for a notebook outside ``notebooks/``)."""
    model = NOTEBOOK_SETTINGS.get(notebook)
    if params is None:
        if model is None:
            raise KeyError(f"no settings model for notebook {notebook!r} (notebooks: {', '.join(NOTEBOOK_SETTINGS)}); "
                           "pass context.setup(name, params={...}) for a notebook of your own")
        missing = sorted(set(model.model_fields) - set(namespace or {}))
        if missing:
            raise NameError(f"{notebook}: parameters {missing} are not defined; run the parameters cell first")
        params = {k: namespace[k] for k in model.model_fields}
    settings = None
    if model is not None:

        try:
            settings = model.model_validate(params)
        except ValidationError as exc:
            raise PresetError(f"{notebook}: " + "; ".join(validation_problems(model, exc, "parameter", params))
                              + " (fix the parameters cell or the preset)") from None
    params = dict(params)
    for name in ("preset", "seed", "device", "figures_dir", "artifacts_dir", "interactive"):
        if name not in params:
            raise NameError(f"{notebook}: the parameters cell must declare {name!r}")
    params["device"] = check_device(params["device"], "notebook parameter device")
    set_seed(int(params["seed"]))
    figures, artifacts = resolve_output(params["figures_dir"]), resolve_output(params["artifacts_dir"])
    if os.environ.get(STAGING_ENV):  # the runner publishes them into figures_dir when the notebook succeeds
        figures = Path(os.environ[STAGING_ENV])
    figures.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    return RunContext(notebook, params, figures, artifacts, settings=settings)
