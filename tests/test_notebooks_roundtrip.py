"""Opening and saving a notebook in JupyterLab leaves it byte for byte as it was: jupytext writes no
notebook metadata (jupytext.toml), so what JupyterLab adds on save (kernelspec, language_info,
jupytext's version, cell execution metadata) never reaches the file, and the runner's up-to-date
check, which fingerprints the cells only, keeps seeing the same notebook."""

import copy
from pathlib import Path

import jupytext
import pytest
from jupytext.config import load_jupytext_config

from ctinv_utils.pipeline import presets

from ctinv_utils.pipeline import run

NOTEBOOKS = presets.list_notebooks()


def jupyterlab_save(nb):
    """What JupyterLab's save adds to a notebook it opened (metadata only; the cells are the user's)."""
    nb = copy.deepcopy(nb)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7", "file_extension": ".py"}
    nb.metadata.setdefault("jupytext", {})["text_representation"] = {
        "extension": ".py", "format_name": "percent", "format_version": "1.3", "jupytext_version": "9.9.9"}
    for cell in nb.cells:
        cell.metadata["execution"] = {"iopub.execute_input": "2026-12-07T10:00:00Z"}
        if cell.cell_type == "code":
            cell.metadata["scrolled"] = True
    return nb


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_open_and_save_in_jupyterlab_keeps_every_byte(notebook: Path):
    config = load_jupytext_config(str(notebook))
    source = notebook.read_text()
    as_ipynb = jupytext.reads(source, fmt="py:percent")
    saved = jupytext.writes(jupyterlab_save(as_ipynb), fmt="py:percent", config=config)
    assert saved == source
    assert any("parameters" in c.metadata.get("tags", []) for c in jupytext.reads(saved, fmt="py:percent").cells)


def test_fingerprint_follows_the_cells_not_the_header(tmp_path):
    nb = tmp_path / "01_x.py"
    nb.write_text('# %% tags=["parameters"]\nseed = 0\n\n# %%\nprint(seed)\n')
    before = run.notebook_fingerprint(nb, {"seed": 0}, "data", "code", "")
    nb.write_text("# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n\n"
                  + nb.read_text())
    assert run.notebook_fingerprint(nb, {"seed": 0}, "data", "code", "") == before
    nb.write_text(nb.read_text().replace("print(seed)", "print(seed + 1)"))
    assert run.notebook_fingerprint(nb, {"seed": 0}, "data", "code", "") != before
