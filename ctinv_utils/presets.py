"""Presets: ``papermill_runs/presets/<name>.yaml`` holds per-notebook parameters.

Layout::

    description: one line
    seed: 0
    common: {...}            # parameters every notebook receives (if it declares them)
    notebooks:
      01_data: {...}         # parameters of one notebook; overrides common
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import jupytext
import yaml

from .errors import PresetError
from .paths import NOTEBOOK_DIR, PRESET_DIR
from .provenance import config_hash

#: Parameters every notebook declares; the runner sets them.
RUNTIME_PARAMETERS = ("preset", "data_path", "device", "seed", "figures_dir", "artifacts_dir", "interactive")
#: Parameters that change where results go or how they are shown, never the results: left out of the
#: config hash, so a headless run and a JupyterLab run of the same settings share it.
PRESENTATION_PARAMETERS = ("interactive", "figures_dir", "artifacts_dir")


def available_presets(preset_dir: Path = PRESET_DIR) -> list[str]:
    return sorted(p.stem for p in preset_dir.glob("*.yaml"))


def load_preset(name: str, preset_dir: Path = PRESET_DIR) -> dict:
    path = preset_dir / f"{name}.yaml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(available_presets(preset_dir))} "
                          f"(files in {preset_dir})")
    try:
        preset = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PresetError(f"{path} is not valid YAML ({exc}); fix the file") from exc
    if not isinstance(preset.get("notebooks", {}), dict) or not isinstance(preset.get("common", {}), dict):
        raise PresetError(f"{path}: 'common' and 'notebooks' must be mappings")
    preset.setdefault("common", {})
    preset.setdefault("notebooks", {})
    preset.setdefault("seed", 0)
    preset["name"] = name
    return preset


def list_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Numbered notebooks (``NN_name.py``) in execution order."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.py"))


def select_notebooks(only: str | None, notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """All notebooks, or those named in ``only`` ("01,03" or "01_data,03"), in order."""
    notebooks = list_notebooks(notebook_dir)
    if only is None:
        return notebooks
    wanted = [w.strip() for w in str(only).split(",") if w.strip()]
    if not wanted:
        raise PresetError(f"--only {only!r} selects no notebook; name some, e.g. --only 01,03 "
                          f"(available: {', '.join(nb.stem for nb in notebooks)})")
    chosen = []
    for w in wanted:
        match = [nb for nb in notebooks if nb.stem == w or nb.stem.split("_", 1)[0] == w]
        if not match:
            raise PresetError(f"unknown notebook {w!r} in --only; available: "
                              f"{', '.join(nb.stem for nb in notebooks)}")
        chosen += match
    return sorted(set(chosen))


def declared_parameters(notebook: Path) -> dict[str, str]:
    """Names (and source text of the defaults) assigned in the notebook's ``parameters`` cell."""
    nb = jupytext.read(notebook)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise PresetError(f"{notebook.name}: needs exactly one cell tagged 'parameters', found {len(cells)}")
    tree = ast.parse(cells[0].source)
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    out[t.id] = ast.get_source_segment(cells[0].source, node.value)
    return out


def notebook_parameters(preset: dict, notebook: Path, runtime: dict) -> dict:
    """Parameters for one notebook: common, then the notebook's own, then the runner's (preset
    name, data path, device, seed, output folders, interactive=False). Parameters the notebook does
    not declare are an error (a typo would otherwise be silently ignored), except common ones."""
    declared = declared_parameters(notebook)
    own = preset["notebooks"].get(notebook.stem, {}) or {}
    unknown = sorted(set(own) - set(declared))
    if unknown:
        raise PresetError(f"preset {preset['name']!r} sets {unknown} for {notebook.stem}, which its "
                          f"parameters cell does not declare (declared: {sorted(declared)})")
    params = {k: v for k, v in preset["common"].items() if k in declared}
    params.update(own)
    params.update({k: v for k, v in runtime.items() if k in declared})
    return params


def parameter_defaults(notebook: Path) -> dict[str, Any]:
    """The defaults of the notebook's ``parameters`` cell as values (they must be literals)."""
    out = {}
    for name, src in declared_parameters(notebook).items():
        try:
            out[name] = ast.literal_eval(src)
        except (ValueError, SyntaxError):
            raise PresetError(f"{notebook.name}: the default of parameter {name!r} ({src}) is not a literal; "
                              "parameters cells hold plain values (numbers, strings, lists, dicts, None)") from None
    return out


def resolved_parameters(preset: dict, notebook: Path, runtime: dict) -> dict:
    """Every parameter the notebook will run with: its defaults, overridden by what the runner
    injects (:func:`notebook_parameters`)."""
    return {**parameter_defaults(notebook), **notebook_parameters(preset, notebook, runtime)}


def parameters_hash(params: dict) -> str:
    """The config hash of a notebook run: all its parameters but the presentation ones. The runner's
    manifest and every figure's JSON sidecar carry this same hash."""
    return config_hash({k: v for k, v in params.items() if k not in PRESENTATION_PARAMETERS})


def main(argv: list[str] | None = None) -> int:
    """``python -m ctinv_utils.presets PRESET NOTEBOOK``: the notebook's parameters under the preset as
    flat YAML, for plain papermill (``papermill in.ipynb out.ipynb -f params.yaml``)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m ctinv_utils.presets PRESET NOTEBOOK   (e.g. quick 03)", file=sys.stderr)
        return 2
    try:
        preset = load_preset(args[0])
        (nb,) = select_notebooks(args[1])
        params = notebook_parameters(preset, nb, {"preset": preset["name"], "seed": preset["seed"],
                                                  "figures_dir": f"figures/{preset['name']}",
                                                  "artifacts_dir": f"papermill_runs/{preset['name']}/artifacts",
                                                  "interactive": False})
    except (PresetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(params, sort_keys=True, default_flow_style=None), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
