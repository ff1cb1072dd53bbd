"""Presets: ``papermill_runs/presets/<name>.yaml`` holds per-notebook parameters.

Layout::

    description: one line
    seed: 0
    common: {...}            # parameters every notebook receives (if it declares them)
    notebooks:
      01_data: {...}         # parameters of one notebook; overrides common

:func:`load_preset` checks the whole file before any notebook starts (:func:`check_preset`): every
key must be a parameter of a notebook's ``parameters`` cell (under ``common:``, of at least one
notebook; under a notebook's section, of that notebook), and every value must have the type of the
parameter's default there (an int where the default is an int, a number where it is a float, a
mapping where it is a dict; ``None`` where the parameter's comment offers it). The settings mappings
(``simulation``, ``cnn10``, ``wganvgg``) are checked key by key against their dataclasses. All
problems come as one :class:`~ctinv_utils.errors.PresetError` naming the file, each key and the type
it expects.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib
import io
import tokenize
from pathlib import Path
from typing import Any

import yaml

from .errors import PresetError
from .paths import NOTEBOOK_DIR, PRESET_DIR
from .provenance import config_hash

#: Parameters every notebook declares; the runner sets them.
RUNTIME_PARAMETERS = ("preset", "data_path", "device", "seed", "figures_dir", "artifacts_dir", "interactive")
#: Parameters that change where results go or how they are shown, never the results: left out of the
#: config hash, so a headless run and a JupyterLab run of the same settings share it.
PRESENTATION_PARAMETERS = ("interactive", "figures_dir", "artifacts_dir")
#: The top-level keys of a preset file and their types.
PRESET_KEYS = {"description": str, "seed": int, "meant_for": str, "common": dict, "notebooks": dict}
#: Values of ``meant_for``: the hardware a preset is sized for (``gpu``: the runner stops on a CPU machine
#: with a time estimate unless ``--confirm-cpu``; see :mod:`ctinv_utils.preflight`).
MEANT_FOR = ("cpu", "gpu")
#: Parameters whose default is None (so it cannot tell their type): the type they take otherwise.
NONE_DEFAULT_TYPES = {"data_path": str, "noise_slices_per_patient": int}
#: How the runner sets each runtime parameter (a preset that sets one would be overridden silently).
_RUNTIME_FIX = {"seed": "the top-level 'seed:' of the preset", "device": "the runner's --device",
                "data_path": "the runner's --data (or $CTINV_DATA)", "preset": "the runner's --preset"}


def available_presets(preset_dir: Path = PRESET_DIR) -> list[str]:
    return sorted(p.stem for p in preset_dir.glob("*.yaml"))


def load_preset(name: str, preset_dir: Path = PRESET_DIR, notebook_dir: Path = NOTEBOOK_DIR) -> dict:
    """The preset ``name`` (``preset_dir/<name>.yaml``), checked against the notebooks in
    ``notebook_dir`` (:func:`check_preset`) before anything runs."""
    path = Path(preset_dir) / f"{name}.yaml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(available_presets(preset_dir))} "
                          f"(files in {preset_dir})")
    try:
        preset = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PresetError(f"{path} is not valid YAML ({exc}); fix the file") from exc
    preset = {} if preset is None else preset
    check_preset(preset, path, notebook_dir)
    preset = dict(preset)
    preset["common"] = preset.get("common") or {}
    preset["notebooks"] = {k: v or {} for k, v in (preset.get("notebooks") or {}).items()}
    preset.setdefault("seed", 0)
    preset["name"] = name
    return preset


def _kind(value: Any) -> str:
    """The YAML kind of a value, in words for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _fits(value: Any, like: Any) -> bool:
    """Does ``value`` have the type of the default ``like`` (an int fits a float; a bool no number)?"""
    if isinstance(like, bool):
        return isinstance(value, bool)
    if isinstance(like, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(like, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(like, str):
        return isinstance(value, str)
    if isinstance(like, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(like, dict):
        return isinstance(value, dict)
    return True


def _expected(like: Any, nullable: bool) -> str:
    words = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    out = next((w for t, w in words.items() if type(like) is t), _kind(like))
    if isinstance(like, (list, tuple)) and like:
        inner = _element_like(like)
        if inner is not None:
            out = f"a list of {_expected(inner, False).split(' ', 1)[-1]}s"
    return out + (" or null" if nullable else "")


def _element_like(default: list) -> Any:
    """A representative element of a list default whose elements share one kind (None: mixed)."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in default):
        return default[0]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
        return 0.0
    kinds = {_kind(v) for v in default}
    return default[0] if len(kinds) == 1 else None


@functools.lru_cache(maxsize=64)
def _specs_cached(path: str, mtime_ns: int) -> dict[str, tuple[Any, bool]]:
    nb = Path(path)
    defaults = parameter_defaults(nb)
    comments = _parameter_comments(nb)
    return {k: (v, v is None or "None" in comments.get(k, "")) for k, v in defaults.items()}


def parameter_specs(notebook: Path) -> dict[str, tuple[Any, bool]]:
    """``{name: (default, nullable)}`` of the notebook's ``parameters`` cell; nullable when the default
    is None or the parameter's comment offers None (``crop = 128  # (None: the whole slice)``)."""
    notebook = Path(notebook)
    return _specs_cached(str(notebook), notebook.stat().st_mtime_ns)


def _parameter_comments(notebook: Path) -> dict[str, str]:
    """The comments on the lines of each assignment in the ``parameters`` cell."""
    import jupytext  # here, not at import: it pulls nbformat and jsonschema (~3-4 s in every kernel)

    nb = jupytext.read(notebook)
    (cell,) = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    by_line: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(cell.source).readline):
            if tok.type == tokenize.COMMENT:
                by_line[tok.start[0]] = tok.string
    except (tokenize.TokenError, SyntaxError):
        return {}
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            text = " ".join(by_line.get(i, "") for i in range(node.lineno, (node.end_lineno or node.lineno) + 1))
            for t in targets:
                if isinstance(t, ast.Name):
                    out[t.id] = text
    return out


#: Parameters that are settings mappings: the dataclass their keys and values must fit (module, class)
#: and the keys the notebook adds (notebook 02 passes ``{"method": name, **cnn10}`` to TrainConfig).
#: Named here, loaded only when a preset is checked: the preset layer imports no stage package
#: (tests/test_architecture.py), and listing presets or notebooks needs no torch.
SETTINGS_CLASSES = {
    "simulation": ("ctinv_utils.data.simulated", "SimulationConfig", {}),
    "cnn10": ("ctinv_utils.training.methods", "TrainConfig", {"method": "cnn10"}),
    "wganvgg": ("ctinv_utils.training.methods", "WGANVGGConfig", {"method": "wganvgg"}),
}


def _settings_schemas() -> dict[str, tuple[type, dict]]:
    """``{parameter: (dataclass, added keys)}`` from :data:`SETTINGS_CLASSES`."""
    return {name: (getattr(importlib.import_module(module), cls), added)
            for name, (module, cls, added) in SETTINGS_CLASSES.items()}


def _did_you_mean(key: Any, known) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _value_problems(where: str, name: str, value: Any, spec: tuple[Any, bool], source: str,
                    schemas: dict) -> list[str]:
    """What is wrong with ``value`` for the parameter ``name`` whose (default, nullable) is ``spec``
    in the notebook ``source``; ``where`` is the key's path in the preset file."""
    from . import settings

    default, nullable = spec
    if value is None:
        return [] if nullable else [f"{where} must be {_expected(default, False)} (like the default {default!r} in "
                                    f"{source}), got null"]
    like = NONE_DEFAULT_TYPES.get(name, None)
    if default is None:
        if like is not None and not (isinstance(value, like) and not isinstance(value, bool)):
            return [f"{where} must be {_expected(like(), True)}, got {value!r} ({_kind(value)})"]
        return []
    if not _fits(value, default):
        return [f"{where} must be {_expected(default, nullable)} (like the default {default!r} in {source}), "
                f"got {value!r} ({_kind(value)})"]
    if isinstance(default, (list, tuple)) and default:
        inner = _element_like(default)
        if inner is not None:
            for i, v in enumerate(value):
                if not _fits(v, inner):
                    return [f"{where}[{i}] must be {_expected(inner, False)} (the default {default!r} in {source} "
                            f"is {_expected(default, False)}), got {v!r} ({_kind(v)})"]
    if isinstance(default, dict):
        if name in schemas:
            cls, added = schemas[name]
            fields = [f.name for f in dataclasses.fields(cls)]
            out = [f"{where}.{k} {problem}" + (_did_you_mean(k, fields) if k not in fields else "")
                   for k, problem in settings.field_problems(cls, value)]
            if not out:
                try:
                    cls(**{**added, **value})
                except (ValueError, TypeError) as exc:
                    out.append(f"{where}: {exc}")
            return out
        out = []
        for k, v in value.items():
            if k not in default:
                out.append(f"{where}.{k} is not a known key{_did_you_mean(k, default)} "
                           f"(known: {', '.join(map(str, default))})")
            else:
                out += _value_problems(f"{where}.{k}", str(k), v, (default[k], default[k] is None), source, {})
        return out
    return []


def check_preset(preset: Any, path: Path, notebook_dir: Path = NOTEBOOK_DIR) -> None:
    """Every key and value of the preset file ``path`` (already parsed into ``preset``), against the
    parameters cells of the notebooks in ``notebook_dir``; one :class:`PresetError` listing every
    problem (file, key, expected type), else None. See the module docstring for the rules."""
    problems: list[str] = []
    if not isinstance(preset, dict):
        raise PresetError(f"preset file {path}: must be a mapping with the keys {', '.join(PRESET_KEYS)}, "
                          f"got {_kind(preset)}; fix the file")
    for key, value in preset.items():
        if key not in PRESET_KEYS:
            problems.append(f"unknown top-level key {key!r}{_did_you_mean(key, PRESET_KEYS)} (known: "
                            f"{', '.join(PRESET_KEYS)})")
        elif value is not None or key not in ("common", "notebooks"):
            want = PRESET_KEYS[key]
            ok = isinstance(value, want) and not isinstance(value, bool)
            if not ok:
                problems.append(f"{key} must be {_expected(want(), False)}, got {value!r} ({_kind(value)})")
            elif key == "meant_for" and value not in MEANT_FOR:
                problems.append(f"meant_for must be one of {', '.join(MEANT_FOR)}, got {value!r}")
    specs = {nb.stem: parameter_specs(nb) for nb in list_notebooks(notebook_dir)}
    schemas = _settings_schemas()
    common = preset.get("common") if isinstance(preset.get("common"), dict) else {}
    known_common = sorted({k for s in specs.values() for k in s} - set(RUNTIME_PARAMETERS))
    for key, value in common.items():
        where = f"common.{key}"
        if key in RUNTIME_PARAMETERS:
            problems.append(f"{where} is set by the runner, not by a preset (use "
                            f"{_RUNTIME_FIX.get(key, 'the runner')})")
            continue
        declaring = [stem for stem, s in specs.items() if key in s]
        if not declaring:
            problems.append(f"{where} is not a parameter of any notebook{_did_you_mean(key, known_common)} "
                            f"(known: {', '.join(known_common)})")
            continue
        for stem in declaring:
            found = _value_problems(where, key, value, specs[stem][key], f"{stem}.py", schemas)
            if found:
                problems += found
                break
    sections = preset.get("notebooks") if isinstance(preset.get("notebooks"), dict) else {}
    for section, params in sections.items():
        if section not in specs:
            problems.append(f"notebooks.{section} is not a notebook{_did_you_mean(section, specs)} "
                            f"(notebooks in {notebook_dir}: {', '.join(specs)})")
            continue
        if params is None:
            continue
        if not isinstance(params, dict):
            problems.append(f"notebooks.{section} must be a mapping of parameter names to values, got "
                            f"{params!r} ({_kind(params)})")
            continue
        own = sorted(set(specs[section]) - set(RUNTIME_PARAMETERS))
        for key, value in params.items():
            where = f"notebooks.{section}.{key}"
            if key in RUNTIME_PARAMETERS:
                problems.append(f"{where} is set by the runner, not by a preset (use "
                                f"{_RUNTIME_FIX.get(key, 'the runner')})")
            elif key not in specs[section]:
                problems.append(f"{where} is not a parameter of {section}{_did_you_mean(key, own)} (its parameters "
                                f"cell declares: {', '.join(own)})")
            else:
                problems += _value_problems(where, key, value, specs[section][key], f"{section}.py", schemas)
    if problems:
        n = len(problems)
        raise PresetError(f"preset file {path}: {n} problem{'s' if n > 1 else ''}: " + "; ".join(problems)
                          + ". Fix the file (parameter types follow the defaults in the notebooks' parameters cells)")


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
    import jupytext

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
