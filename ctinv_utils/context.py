"""What every notebook sets up first: seed, device, output folders, provenance, figure saving."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .paths import REPO_ROOT
from .provenance import config_hash, provenance, resolve_device, set_seed


@dataclass
class RunContext:
    """Per-notebook context. ``save_figure`` writes PNG + PDF + a JSON provenance sidecar."""

    notebook: str
    preset: str
    seed: int
    device: str
    figures_dir: Path
    artifacts_dir: Path
    data_source: str = "not loaded yet"
    params: dict = field(default_factory=dict)
    interactive: bool = False

    @property
    def config_hash(self) -> str:
        return config_hash({"preset": self.preset, "seed": self.seed, **self.params})

    def caption(self, *parts: str) -> str:
        """Caption text: what the figure shows, then preset, data, seed and config hash."""
        base = (f"{self.notebook} | preset {self.preset} | data: {self.data_source} | seed {self.seed} | "
                f"config {self.config_hash} | device {self.device}")
        return " | ".join([*parts, base]) if parts else base

    def provenance(self, **extra: Any) -> dict:
        return provenance(seed=self.seed, config={"preset": self.preset, **self.params},
                          device=self.device, notebook=self.notebook, data_source=self.data_source,
                          created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra)

    def add_note(self, key: str, value: Any) -> None:
        """A fact the run manifest must carry (e.g. which VGG weights were used); the runner copies
        ``artifacts_dir/notes/<notebook>.json`` into the notebook's manifest entry."""
        path = self.artifacts_dir / "notes" / f"{self.notebook}.json"
        notes = json.loads(path.read_text()) if path.is_file() else {}
        notes[key] = value
        atomic.write_json(path, notes)

    def save_figure(self, fig, name: str, caption: str | None = None, **extra: Any) -> list[Path]:
        """Add the caption, save ``figures_dir/name.{png,pdf}`` and ``name.json`` (provenance)."""
        from .figures.ct import add_caption

        add_caption(fig, self.caption(caption) if caption else self.caption())
        paths = atomic.savefig(fig, self.figures_dir / name)
        atomic.write_json(self.figures_dir / f"{name}.json", self.provenance(figure=name, caption=caption, **extra))
        return paths


def setup(notebook: str, preset: str, seed: int, device: str = "auto", figures_dir: str | None = None,
          artifacts_dir: str | None = None, interactive: bool = False, **params: Any) -> RunContext:
    """Seed everything, resolve the device, create the output folders."""
    set_seed(seed)
    figures = Path(figures_dir) if figures_dir else REPO_ROOT / "figures" / preset
    artifacts = Path(artifacts_dir) if artifacts_dir else REPO_ROOT / "papermill_runs" / preset / "artifacts"
    figures = figures if figures.is_absolute() else REPO_ROOT / figures
    artifacts = artifacts if artifacts.is_absolute() else REPO_ROOT / artifacts
    figures.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    return RunContext(notebook, preset, int(seed), resolve_device(device), figures, artifacts,
                      params=params, interactive=bool(interactive))
