"""What every notebook sets up first: seed, device, output folders, artifacts, provenance, figures.

The notebook's ``parameters`` cell is the only list of its parameters::

    ctx = context.setup("03_image_domain_invariances", globals())

reads the names declared in that cell (from ``notebooks/<name>.py``) and takes their values from the
notebook's namespace, so a parameter added to the cell is in the config hash, the figures' sidecars
and the manifest without being listed a second time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .artifacts import Artifacts
from .paths import NOTEBOOK_DIR, REPO_ROOT
from .presets import declared_parameters, parameters_hash
from .provenance import provenance, resolve_device, set_seed


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

    def __post_init__(self):
        self.preset, self.seed = str(self.params["preset"]), int(self.params["seed"])
        self.device, self.interactive = str(self.params["device"]), bool(self.params["interactive"])

    @property
    def config_hash(self) -> str:
        return parameters_hash(self.params)

    @property
    def artifacts(self) -> Artifacts:
        return Artifacts(self.artifacts_dir, self.preset, self.provenance)

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
        """Add the caption, save ``figures_dir/name.{png,pdf}`` and ``name.json`` (provenance)."""
        from .figures.ct import add_caption

        add_caption(fig, self.caption(caption or ""))
        paths = atomic.savefig(fig, self.figures_dir / name)
        atomic.write_json(self.figures_dir / f"{name}.json",
                          self.provenance(figure=name, caption=caption, files=[p.name for p in paths], **extra))
        return paths

    def show(self, fig, caption: str | None = None, *, name: str, **extra: Any) -> None:
        """``save_figure(fig, name, caption)``, then display the figure once and close it (no stray
        reprs). Takes a panel function's ``(fig, caption)`` as ``ctx.show(*panel, name=...)``."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.save_figure(fig, name, caption, **extra)
        display(fig)
        plt.close(fig)


def setup(notebook: str, namespace: dict | None = None, params: dict | None = None) -> RunContext:
    """Seed everything, resolve the device, create the output folders.

    ``namespace``: the notebook's ``globals()``; the parameters are the names its ``parameters``
    cell declares. ``params``: the parameters themselves (for a notebook outside ``notebooks/``)."""
    if params is None:
        source = NOTEBOOK_DIR / f"{notebook}.py"
        if not source.is_file():
            raise FileNotFoundError(f"{source} not found: pass context.setup(name, params={{...}}) for a "
                                    "notebook outside notebooks/")
        declared = declared_parameters(source)
        missing = sorted(set(declared) - set(namespace or {}))
        if missing:
            raise NameError(f"{notebook}: parameters {missing} are declared but not defined; run the parameters "
                            "cell first")
        params = {k: namespace[k] for k in declared}
    params = dict(params)
    for name in ("preset", "seed", "device", "figures_dir", "artifacts_dir", "interactive"):
        if name not in params:
            raise NameError(f"{notebook}: the parameters cell must declare {name!r}")
    params["device"] = resolve_device(params["device"])
    set_seed(int(params["seed"]))
    figures, artifacts = Path(params["figures_dir"]), Path(params["artifacts_dir"])
    figures = figures if figures.is_absolute() else REPO_ROOT / figures
    artifacts = artifacts if artifacts.is_absolute() else REPO_ROOT / artifacts
    figures.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    return RunContext(notebook, params, figures, artifacts)
