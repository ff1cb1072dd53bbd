"""The layout's contracts: one-way imports between stage packages, the public API, the artifacts
hand-off (missing and damaged files named), owned randomness, one parameter list."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ctinv_utils
from ctinv_utils.pipeline import presets
from ctinv_utils.pipeline.artifacts import ArtifactError, Artifacts

PKG = Path(ctinv_utils.__file__).parent

# What each part may import (besides itself). The direction is one-way: notebooks and tools ->
# report -> pipeline -> recipes -> synthesis/training -> models/data -> infrastructure ("base").
BASE = {"errors", "atomic", "paths", "progress", "provenance", "names", "units", "settings", "speed"}
#: Wings whose modules are parts of their own (pipeline.run may import pipeline.presets, not the reverse).
WINGS = ("pipeline", "tools", "report")
ALLOWED = {
    "base": {"base"},
    "figures": {"base"},
    "data": {"base"},
    "models": {"base"},
    "training": {"base", "data", "models"},
    "synthesis": {"base", "data", "models", "training", "figures"},
    "analysis": {"base", "data"},
    # the recipe of each stage, called by the notebooks, the sweep and the benchmarks
    "recipes": {"base", "data", "models", "training", "synthesis"},
    "pipeline": {"base"},
    # typed settings of each notebook (their nested settings are the data and training dataclasses)
    "pipeline.config": {"base", "data", "training"},
    "pipeline.presets": {"base", "pipeline.config"},
    "pipeline.artifacts": {"base", "models"},
    "pipeline.context": {"base", "pipeline.artifacts", "pipeline.presets", "pipeline.config", "figures"},
    # checks before the long work (VGG weights, data root, a GPU preset on a CPU)
    # (and the GPU estimate, which counts each notebook's repeated steps on the meta device)
    "pipeline.preflight": {"base", "pipeline.presets", "models", "data", "synthesis", "training", "analysis"},
    "pipeline.run": {"base", "pipeline.presets", "pipeline.preflight"},
    "report": {"base"},
    "report.panels": {"base", "pipeline.artifacts", "figures"},
    "tools": {"base"},
    "tools.bench": {"base", "data", "models", "synthesis", "training"},
    # a preset's invariance settings against a long run of the talk's Adam
    "tools.convergence": {"base", "pipeline.presets", "pipeline.artifacts", "synthesis", "recipes"},
    # a DICOM export of a run's artifacts for a radiologist's viewer
    "tools.export": {"base", "pipeline.artifacts", "pipeline.presets", "data"},
    # the first run on a GPU: the GPU check, the paper rehearsal and the calibrated estimate in one JSON
    "tools.gpu_first": {"base", "data", "models", "pipeline.presets", "pipeline.run", "pipeline.preflight",
                        "tools.bench"},
    # the embedded scanner model against gecatsim (XCIST)
    "tools.simulator_check": {"base", "data"},
    # sharded invariance sweeps under torchrun
    "tools.sweep": {"base", "pipeline.presets", "pipeline.artifacts", "data", "models", "synthesis", "training",
                    "recipes"},
}


def part_of(module: str) -> str:
    """'ctinv_utils.data.sampling' -> 'data'; 'ctinv_utils.pipeline.run' -> 'pipeline.run'; top-level
    infrastructure modules -> 'base'."""
    parts = module.split(".")[1:]
    first = parts[0] if parts else ""
    if first in BASE:
        return "base"
    if first in WINGS and len(parts) > 1 and parts[1] != "__init__":
        return f"{first}.{parts[1]}"
    return first


def imports_of(path: Path) -> set[str]:
    """Absolute ctinv_utils modules imported by the file (relative imports resolved)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    package = parts if path.name == "__init__.py" else parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("ctinv_utils"):
                if node.module is None or (PKG.parent / mod.replace(".", "/")).is_dir():
                    # "from . import atomic", "from ..pipeline import presets": the names are modules
                    out |= {f"{mod}.{a.name}" for a in node.names}
                else:
                    out.add(mod)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ctinv_utils")}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            name = node.args[0].value  # importlib.import_module("..x", __package__) hides nothing from this test
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                name = ".".join(package[: len(package) - level + 1] + ([name.lstrip(".")] if name.lstrip(".") else []))
            if name.startswith("ctinv_utils"):
                out.add(name)
    return out


def test_imports_run_one_way():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        if path.parent == PKG and path.name in ("__init__.py", "__main__.py"):
            continue  # the public API and the command dispatcher name everything (lazily)
        me = part_of(".".join(path.relative_to(PKG.parent).with_suffix("").parts))
        assert me in ALLOWED, f"{path} belongs to no known part ({me!r}); add it to the layout and this test"
        for mod in imports_of(path):
            other = part_of(mod)
            if other != me and other not in ALLOWED[me]:
                bad.append(f"{path.relative_to(PKG.parent)} ({me}) imports {mod} ({other})")
    assert not bad, "imports running against the layout:\n" + "\n".join(bad)


def test_layering_test_sees_an_importlib_violation():
    """An import through importlib is an import: a data module loading synthesis that way is caught."""
    f = PKG / "data" / "_probe_importlib.py"
    f.write_text("import importlib\n\ndef f():\n    return importlib.import_module('ctinv_utils.synthesis.invariances')\n")
    try:
        with pytest.raises(AssertionError, match="_probe_importlib"):
            test_imports_run_one_way()
    finally:
        f.unlink()


def test_at_most_ten_modules_loose_at_the_top():
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(loose) <= 10, loose


def test_layering_test_sees_a_violation(tmp_path):
    """The import check itself can fail: a data module importing synthesis is caught."""
    f = PKG / "data" / "_probe_violation.py"
    f.write_text("from ..synthesis import invariances\n")
    try:
        with pytest.raises(AssertionError, match="_probe_violation"):
            test_imports_run_one_way()
    finally:
        f.unlink()


def test_public_api():
    required = ["load_data", "PairedCTData", "hu_to_norm", "norm_to_hu", "get_window", "build_denoiser",
                "load_denoiser", "freeze", "CNN10", "WGANVGG", "GaussRI", "get_distance", "Invariance", "FGSM",
                "BIM", "tradeoff_curve", "InvarianceExplorer"]
    assert set(required) <= set(ctinv_utils.__all__)
    for name in ctinv_utils.__all__:
        assert getattr(ctinv_utils, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ctinv_utils.Nope  # noqa: B018


def test_missing_artifact_names_its_notebook_and_command(tmp_path):
    art = Artifacts(tmp_path, "quick")
    with pytest.raises(ArtifactError, match=r"invariances/cnn10_mse.npz .*notebook 03_image_domain_invariances.*"
                                            r"python -m ctinv_utils run --preset quick --only 03"):
        art.read_arrays("invariance_arrays", denoiser="cnn10", distance="mse")
    with pytest.raises(ArtifactError, match="notebook 01_data"):
        art.read_json("data")


def test_arrays_round_trip_and_damage_is_detected(tmp_path):
    art = Artifacts(tmp_path, "quick", provenance=lambda **kw: {"seed": 0, **kw})
    a = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "alphas": np.array([0.1, 1.0])}
    path = art.write_arrays("invariance_arrays", a, {"iterations": 5}, {"denoiser": "cnn10", "distance": "mse"})
    back = art.read_arrays("invariance_arrays", denoiser="cnn10", distance="mse")
    assert back.meta == {"iterations": 5} and np.array_equal(back["x"], a["x"]) and np.array_equal(back["alphas"], a["alphas"])
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["provenance"]["seed"] == 0 and side["arrays"]["x"]["shape"] == [3, 4]
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave nothing behind
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its recorded SHA-256"):
        art.read_arrays("invariance_arrays", denoiser="cnn10", distance="mse")


def test_loading_a_synthesis_leaves_the_global_rng_alone(tmp_path):
    from ctinv_utils import GaussRI, Invariance

    x = torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    inv = Invariance(x, GaussRI(), "mse", alpha=0.5, seed=3)
    inv.synthesize(3, progress=False)
    inv.save(tmp_path / "inv.pt")
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    Invariance.load(tmp_path / "inv.pt", GaussRI())
    assert torch.equal(torch.rand(5), expected)


def test_training_draws_from_its_own_generator(smoke_data, tmp_path):
    """Building and running a trainer never consumes the global RNG."""
    from ctinv_utils.training.methods import TrainConfig, denoiser_trainer

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    t = denoiser_trainer(TrainConfig(iterations=2, batch_size=2, patch_size=40), smoke_data, tmp_path / "c.ckpt")
    t.fit(progress=False)
    assert torch.equal(torch.rand(3), expected)


def _parameters_cell(notebook: Path) -> dict:
    """The values assigned in a notebook's ``parameters`` cell (they must be literals)."""
    import jupytext

    cells = [c for c in jupytext.read(notebook).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{notebook.name}: needs exactly one cell tagged 'parameters'"
    out = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{notebook.name}: one plain assignment a line"
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def test_each_parameters_cell_is_its_settings_model_with_the_quick_values():
    """One parameter list: a notebook's parameters cell holds exactly the fields of its settings model,
    with the quick preset's values (what a reader opening it in JupyterLab runs)."""
    from ctinv_utils.pipeline.config import NOTEBOOK_SETTINGS

    quick = presets.load_preset("quick")
    plan = presets.plan(quick, runtime=presets.runtime_parameters(quick, device="auto", interactive=True))
    assert list(plan) == list(NOTEBOOK_SETTINGS) == [nb.stem for nb in presets.list_notebooks()]
    for nb in presets.list_notebooks():
        cell = _parameters_cell(nb)
        expected = plan[nb.stem].parameters()
        assert list(cell) == list(expected), f"{nb.name}: the cell's names differ from the settings model's"
        for key, value in cell.items():
            assert json.dumps(value) == json.dumps(expected[key]), f"{nb.name}: {key} = {value!r}, quick: {expected[key]!r}"


def test_hash_ignores_presentation():
    p = {"preset": "quick", "seed": 0, "alphas": [0.1]}
    h = presets.parameters_hash(p)
    assert presets.parameters_hash({**p, "interactive": True, "figures_dir": "elsewhere"}) == h
    assert presets.parameters_hash({**p, "alphas": [0.2]}) != h
