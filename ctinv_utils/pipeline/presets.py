"""Presets: ``configs/<name>.yaml`` sets notebook parameters, validated against the typed settings
of :mod:`ctinv_utils.pipeline.config` before any notebook starts.

Layout::

    description: one line
    seed: 0
    meant_for: cpu | gpu     # optional: a GPU preset stops on a CPU machine with a time estimate
    common: {...}            # parameters every notebook that declares them receives
    notebooks:
      01_data: {...}         # parameters of one notebook; overrides common

A preset resolves once into a plan, ``{notebook: settings}``, whose values the runner hands to
papermill. Every problem (unknown key, wrong type, value out of range) comes as one
:class:`~ctinv_utils.errors.PresetError` naming the file, each key and what it expects.
"""

from __future__ import annotations

import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .. import atomic
from ..errors import PresetError
from ..paths import NOTEBOOK_DIR, PRESET_DIR
from .config import NOTEBOOK_SETTINGS, PRESENTATION_PARAMETERS, RUNTIME_PARAMETERS, NotebookSettings, settings_model
from ..provenance import config_hash

__all__ = ["RUNTIME_PARAMETERS", "PRESENTATION_PARAMETERS", "available_presets", "load_preset", "list_notebooks",
           "select_notebooks", "notebook_settings", "plan", "parameters_hash", "runtime_parameters"]

#: The top-level keys of a preset file and their types.
PRESET_KEYS = {"description": str, "seed": int, "meant_for": str, "common": dict, "notebooks": dict}
#: Values of ``meant_for`` (see :mod:`ctinv_utils.pipeline.preflight`).
MEANT_FOR = ("cpu", "gpu")
#: How the runner sets each runtime parameter (a preset that sets one would be overridden silently).
_RUNTIME_FIX = {"seed": "the top-level 'seed:' of the preset", "device": "the runner's --device",
                "data_path": "the runner's --data (or $CTINV_DATA)", "preset": "the runner's --preset"}


def available_presets(preset_dir: Path = PRESET_DIR) -> list[str]:
    return sorted(p.stem for p in Path(preset_dir).glob("*.yaml"))


def load_preset(name: str, preset_dir: Path = PRESET_DIR) -> dict:
    """The preset ``name`` (``preset_dir/<name>.yaml``), checked key by key against the notebooks'
    settings (:func:`check_preset`) before anything runs."""
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        raise PresetError(f"preset name {name!r} is not a plain name; pass one of "
                          f"{', '.join(available_presets(preset_dir))} (files in {preset_dir})")
    path = Path(preset_dir) / f"{name}.yaml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(available_presets(preset_dir))} "
                          f"(files in {preset_dir})")
    try:
        preset = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PresetError(f"{path} is not valid YAML ({exc}); fix the file") from exc
    if preset is None:
        raise PresetError(f"preset file {path} is empty; give it at least 'description:' and 'notebooks:' "
                          "(see configs/quick.yaml)")
    check_preset(preset, path)
    preset = dict(preset)
    preset["common"] = preset.get("common") or {}
    preset["notebooks"] = {k: v or {} for k, v in (preset.get("notebooks") or {}).items()}
    preset.setdefault("seed", 0)
    preset["name"] = name
    preset["path"] = str(path)
    return preset


# -- messages ----------------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    """The YAML kind of a value, in words."""
    for t, word in ((bool, "true/false"), (int, "an integer"), (float, "a number"), (str, "a string"),
                    (list, "a list"), (tuple, "a list"), (dict, "a mapping")):
        if isinstance(value, t):
            return word
    return "null" if value is None else type(value).__name__


def describe(hint: Any) -> str:
    """A field's annotation in words: 'a list of numbers or null'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return describe(args[0])
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in args if a is not type(None)]
        if set(parts) == {int, float} or all(typing.get_origin(a) is None and a in (int, float) for a in parts):
            text = "a number"
        else:
            text = " or ".join(describe(a) for a in parts)
        return text + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is list:
        inner = describe(args[0]) if args else "values"
        return "a list of " + inner.removeprefix("a ").removeprefix("an ").replace("true/false", "true/false value") + "s"
    if hint is dict or origin is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _did_you_mean(key: Any, known) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _element(hint: Any) -> Any:
    """The element type of a list annotation (through Annotated and Optional)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _element(args[0])
    if origin in (typing.Union, types.UnionType):
        lists = [a for a in args if a is not type(None)]
        return _element(lists[0]) if len(lists) == 1 else hint
    return args[0] if origin is list and args else hint


def _shown(value: Any) -> str:
    return "null" if value is None else f"{value!r} ({_kind(value)})"


def validation_problems(model: type[NotebookSettings], exc: ValidationError, where: str, given: dict) -> list[str]:
    """One line per parameter of ``exc`` (pydantic reports each branch of a union: the first is kept)."""
    fields = model.model_fields
    out, seen = [], set()
    for err in exc.errors():
        loc = [p for p in err["loc"] if isinstance(p, int) or (isinstance(p, str) and "[" not in p
                                                               and p not in ("int", "float", "str", "bool", "list", "dict", "none"))]
        if not loc or loc[0] in seen:
            continue
        key = loc[0]
        seen.add(key)
        path = f"{where}.{key}" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        if err["type"] == "extra_forbidden":
            own = [k for k in fields if k not in RUNTIME_PARAMETERS]
            out.append(f"{path} is not a parameter of {model.notebook}{_did_you_mean(key, own)} "
                       f"(its parameters: {', '.join(own)})")
            continue
        if err["type"] == "value_error":
            msg = str(err["msg"]).removeprefix("Value error, ")
            out.append(f"{path}{msg}" if msg.startswith(".") else f"{path} {msg}")
            continue
        value, hint = given.get(key), fields[key].annotation
        for part in loc[1:]:
            if isinstance(part, int) and isinstance(value, (list, tuple)) and part < len(value):
                value, hint = value[part], _element(hint)
        out.append(f"{path} must be {describe(hint)}, got {_shown(value)}")
    return out


# -- validation --------------------------------------------------------------------------------------
def _sections(preset: dict) -> tuple[dict, dict]:
    common = preset.get("common") if isinstance(preset.get("common"), dict) else {}
    sections = preset.get("notebooks") if isinstance(preset.get("notebooks"), dict) else {}
    return common, sections


def _validate(model: type[NotebookSettings], values: dict, where: str) -> tuple[NotebookSettings | None, list[str]]:
    try:
        return model.model_validate(values), []
    except ValidationError as exc:
        return None, validation_problems(model, exc, where, values)


def check_preset(preset: Any, path: Path) -> None:
    """Every key and value of the preset file ``path`` (already parsed into ``preset``) against the
    notebooks' settings; one :class:`PresetError` listing every problem, else None."""
    if not isinstance(preset, dict):
        raise PresetError(f"preset file {path}: must be a mapping with the keys {', '.join(PRESET_KEYS)}, "
                          f"got {_kind(preset)}; fix the file")
    problems: list[str] = []
    for key, value in preset.items():
        if key not in PRESET_KEYS:
            problems.append(f"unknown top-level key {key!r}{_did_you_mean(key, PRESET_KEYS)} (known: "
                            f"{', '.join(PRESET_KEYS)})")
        elif value is not None or key not in ("common", "notebooks"):
            want = PRESET_KEYS[key]
            if not isinstance(value, want) or isinstance(value, bool):
                problems.append(f"{key} must be {describe(want)}, got {_shown(value)}")
            elif key == "meant_for" and value not in MEANT_FOR:
                problems.append(f"meant_for must be one of {', '.join(MEANT_FOR)}, got {value!r}")
            elif key == "seed" and value < 0:
                problems.append(f"seed must be >= 0, got {value}")
    common, sections = _sections(preset)
    known_common = sorted({k for m in NOTEBOOK_SETTINGS.values() for k in m.model_fields} - set(RUNTIME_PARAMETERS))
    for key in common:
        if key in RUNTIME_PARAMETERS:
            problems.append(f"common.{key} is set by the runner, not by a preset (use {_RUNTIME_FIX.get(key, 'the runner')})")
        elif key not in known_common:
            problems.append(f"common.{key} is not a parameter of any notebook{_did_you_mean(key, known_common)} "
                            f"(known: {', '.join(known_common)})")
    for section, params in sections.items():
        if section not in NOTEBOOK_SETTINGS:
            problems.append(f"notebooks.{section} is not a notebook{_did_you_mean(section, NOTEBOOK_SETTINGS)} "
                            f"(notebooks: {', '.join(NOTEBOOK_SETTINGS)})")
        elif params is not None and not isinstance(params, dict):
            problems.append(f"notebooks.{section} must be a mapping of parameter names to values, got "
                            f"{params!r} ({_kind(params)})")
        else:
            problems += [f"notebooks.{section}.{k} is set by the runner, not by a preset (use "
                         f"{_RUNTIME_FIX.get(k, 'the runner')})" for k in (params or {}) if k in RUNTIME_PARAMETERS]
    if not problems:
        reported_common = set()
        for stem, model in NOTEBOOK_SETTINGS.items():
            own = {k: v for k, v in (sections.get(stem) or {}).items() if k not in RUNTIME_PARAMETERS}
            shared = {k: v for k, v in common.items() if k in model.model_fields and k not in own}
            _, found = _validate(model, {**shared, **own}, "")
            for line in found:
                key = line[1:].split(" ", 1)[0].split(".", 1)[0].split("[", 1)[0]
                if key in own:
                    problems.append(f"notebooks.{stem}{line}")
                elif key not in reported_common:  # a common value wrong for every notebook: said once
                    reported_common.add(key)
                    problems.append(f"common{line}")
    if problems:
        n = len(problems)
        raise PresetError(f"preset file {path}: {n} problem{'s' if n > 1 else ''}: " + "; ".join(problems)
                          + ". Fix the file (the parameters and their types: ctinv_utils/pipeline/config.py)")


# -- notebooks and plans -----------------------------------------------------------------------------
def list_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Numbered notebooks (``NN_name.py``) in execution order."""
    return sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.py"))


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


def runtime_parameters(preset: dict, data_path: str | None = None, device: str = "auto",
                       figures_dir: str | None = None, artifacts_dir: str | None = None,
                       interactive: bool = False) -> dict:
    """What the runner sets in every notebook (default folders: ``figures/<preset>``,
    ``papermill_runs/<preset>/artifacts``)."""
    name = preset["name"]
    return {"preset": name, "data_path": data_path, "device": device, "seed": int(preset["seed"]),
            "figures_dir": figures_dir or f"figures/{name}",
            "artifacts_dir": artifacts_dir or f"papermill_runs/{name}/artifacts", "interactive": interactive}


def notebook_settings(preset: dict, notebook: str | Path, runtime: dict | None = None) -> NotebookSettings:
    """The settings notebook ``notebook`` (a stem or its file) runs with under ``preset``: its
    defaults, then ``common``, then its own section, then the runner's ``runtime`` values."""
    stem = Path(notebook).stem
    model = settings_model(stem)
    own = preset["notebooks"].get(stem, {}) or {}
    values = {k: v for k, v in preset["common"].items() if k in model.model_fields}
    values.update(own)
    values.update({k: v for k, v in (runtime or {}).items() if k in model.model_fields})
    settings, problems = _validate(model, values, f"notebooks.{stem}")
    if problems:
        raise PresetError(f"preset {preset.get('path', preset.get('name'))}: " + "; ".join(problems))
    return settings


def plan(preset: dict, notebooks: list[Path] | None = None, runtime: dict | None = None) -> dict[str, NotebookSettings]:
    """``{notebook stem: settings}`` for the selected notebooks (all by default), resolved once."""
    notebooks = list_notebooks() if notebooks is None else notebooks
    return {Path(nb).stem: notebook_settings(preset, nb, runtime) for nb in notebooks}


def parameters_hash(params: dict) -> str:
    """The config hash of a notebook run: all its parameters but the presentation ones. The runner's
    manifest and every figure's JSON sidecar carry this same hash."""
    return config_hash({k: v for k, v in params.items() if k not in PRESENTATION_PARAMETERS})


#: The first lines of every generated parameter file.
GENERATED_HEADER = ("# Generated from configs/{preset}.yaml by `python -m ctinv_utils presets --write`: do not edit.\n"
                    "# papermill {notebook}.ipynb out.ipynb -f configs/{preset}/{notebook}.yaml (see the docs: papermill)\n")


def papermill_parameters(preset: dict, notebook: str | Path) -> str:
    """Notebook ``notebook``'s parameters under ``preset`` as the flat YAML papermill reads with ``-f``
    (every parameter, the runner's defaults for the runtime ones: headless, output folders relative
    to the working directory)."""
    stem = Path(notebook).stem
    params = notebook_settings(preset, stem, runtime_parameters(preset)).parameters()
    return GENERATED_HEADER.format(preset=preset["name"], notebook=stem) + yaml.safe_dump(
        params, sort_keys=False, default_flow_style=None, width=110)


def write_papermill_parameters(preset_dir: Path = PRESET_DIR) -> list[Path]:
    """``configs/<preset>/<notebook>.yaml`` for every preset and notebook (papermill's ``-f`` files)."""

    written = []
    for name in available_presets(preset_dir):
        preset = load_preset(name, preset_dir)
        for stem in NOTEBOOK_SETTINGS:
            written.append(atomic.write_text(Path(preset_dir) / name / f"{stem}.yaml", papermill_parameters(preset, stem)))
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m ctinv_utils presets PRESET NOTEBOOK``: the notebook's parameters under the preset as
    flat YAML, for plain papermill (``papermill in.ipynb out.ipynb -f params.yaml``);
    ``python -m ctinv_utils presets --write``: every such file, to ``configs/<preset>/<notebook>.yaml``."""

    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        for path in write_papermill_parameters():
            print(f"written: {path.relative_to(PRESET_DIR.parent)}")
        return 0
    if len(args) != 2:
        print("usage: python -m ctinv_utils presets PRESET NOTEBOOK   (e.g. quick 03)\n"
              "       python -m ctinv_utils presets --write   (configs/<preset>/<notebook>.yaml)", file=sys.stderr)
        return 2
    try:
        preset = load_preset(args[0])
        (nb,) = select_notebooks(args[1])
        text = papermill_parameters(preset, nb)
    except (PresetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
