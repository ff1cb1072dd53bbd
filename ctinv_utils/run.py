"""Run the notebooks of a preset headlessly with papermill.

    python -m ctinv_utils.run --preset quick [--only 01,03] [--data PATH] [--device auto|cpu|cuda]

Executed notebooks go to ``papermill_runs/<preset>/``, figures to ``figures/<preset>/``, and a run
manifest (git commit, preset, parameters, seed, device, torch version, wall time per notebook) to
``papermill_runs/<preset>/manifest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from . import atomic
from .errors import CTInvError, DataRootError
from .paths import REPO_ROOT, figure_dir, run_dir
from .progress import HEADLESS_ENV
from .presets import load_preset, notebook_parameters, parameters_hash, resolved_parameters, select_notebooks
from .provenance import provenance, resolve_device


GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"


class NotebookFailed(CTInvError):
    """A notebook raised during execution."""


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


@contextlib.contextmanager
def kernel_environment():
    """Environment the notebook kernels start with, restored afterwards (this process keeps its own):
    the kernel of this environment over a user-wide 'python3' kernelspec; text progress bars on
    stderr (streamed to the terminal); glibc's allocator told to keep freed memory (page faults cost
    a third of the CPU time of our optimisation loops)."""
    wanted = {"JUPYTER_PREFER_ENV_PATH": os.environ.get("JUPYTER_PREFER_ENV_PATH", "1"), HEADLESS_ENV: "1",
              "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", GLIBC_TUNABLES)}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute_notebook(notebook: Path, output: Path, parameters: dict, progress: bool = True) -> None:
    """Execute one py:percent notebook with papermill's API (kernel python3, cwd = repo root).

    ``papermill in.py out.ipynb`` cannot read py:percent, so jupytext reads it first. Parameters
    are passed as Python objects, so booleans and lists arrive typed (papermill's ``-p`` would turn
    ``false`` into a string)."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with kernel_environment():
            papermill.execute_notebook(nb, str(output), parameters=parameters, kernel_name="python3",
                                       cwd=str(REPO_ROOT), progress_bar=False,
                                       stderr_file=sys.stderr if progress else None,
                                       report_mode=False, request_save_on_cell_execute=True)
    except PapermillExecutionError as exc:
        first_line = next((ln for ln in (exc.source or "").splitlines() if ln.strip()), "")
        raise NotebookFailed(
            f"notebook {notebook.name} failed in cell {exc.cell_index} (execution {exc.exec_count}: "
            f"{first_line[:80]!r}): {exc.ename}: {exc.evalue}; traceback in {_rel(output)}") from None


def run(preset_name: str, only: str | None = None, data: str | None = None, device: str = "auto",
        progress: bool = True, output_root: Path | None = None) -> dict:
    """Run the selected notebooks of a preset; returns the manifest. Raises on the first failure
    (the manifest records it). ``output_root`` (tests) replaces the repository as the place of
    ``papermill_runs/<preset>`` and ``figures/<preset>``."""
    preset = load_preset(preset_name)
    notebooks = select_notebooks(only)
    device = resolve_device(device)
    if data and not Path(data).expanduser().is_dir():
        raise DataRootError(f"data root {data} does not exist; pass --data the folder that holds "
                            "LDCT-and-Projection-data (TCIA) or the AAPM patient folders (see README: Data)")
    if output_root is None:
        out_dir, fig_dir = run_dir(preset_name), figure_dir(preset_name)
    else:
        out_dir = Path(output_root) / "papermill_runs" / preset_name
        fig_dir = Path(output_root) / "figures" / preset_name
    runtime = {
        "preset": preset_name, "data_path": data, "device": device, "seed": int(preset["seed"]),
        "figures_dir": _rel(fig_dir), "artifacts_dir": _rel(out_dir / "artifacts"),
        "interactive": False,
    }
    manifest = provenance(seed=runtime["seed"], config=preset, device=device, preset=preset_name,
                          data=data or os.environ.get("CTINV_DATA") or "simulated (embedded default)",
                          notebooks=[], started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    manifest_path = out_dir / "manifest.json"
    if only and manifest_path.is_file():  # a partial re-run keeps the other notebooks' entries
        rerun = {nb.stem for nb in notebooks}
        old = json.loads(manifest_path.read_text()).get("notebooks", [])
        manifest["notebooks"] = [e for e in old if e.get("notebook") not in rerun]
    all_params = {nb: notebook_parameters(preset, nb, runtime) for nb in notebooks}  # validate first
    for i, nb in enumerate(notebooks, 1):
        params = all_params[nb]
        print(f"[{i}/{len(notebooks)}] {nb.stem} (preset {preset_name}, device {device})", flush=True)
        resolved = resolved_parameters(preset, nb, runtime)
        entry = {"notebook": nb.stem, "parameters": resolved, "config_hash": parameters_hash(resolved),
                 "output": _rel(out_dir / f"{nb.stem}.ipynb")}
        t0 = time.perf_counter()
        try:
            notes = out_dir / "artifacts" / "notes" / f"{nb.stem}.json"
            notes.unlink(missing_ok=True)
            execute_notebook(nb, out_dir / f"{nb.stem}.ipynb", params, progress=progress)
            entry["status"] = "ok"
            if notes.is_file():
                entry["notes"] = json.loads(notes.read_text())
        except BaseException as exc:
            entry["status"] = f"failed: {exc}"
            raise
        finally:
            entry["wall_s"] = round(time.perf_counter() - t0, 2)
            manifest["notebooks"].append(entry)
            manifest["notebooks"].sort(key=lambda e: e["notebook"])
            manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            atomic.write_json(manifest_path, manifest)
        print(f"    done in {entry['wall_s']:.1f} s -> {entry['output']}", flush=True)
    print(f"manifest: {_rel(manifest_path)}; figures: {runtime['figures_dir']}/", flush=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick", help="quick (CPU, minutes) or paper (GPU); see papermill_runs/presets/")
    ap.add_argument("--only", default=None, help="comma-separated notebooks, e.g. 01,03 or 01_data")
    ap.add_argument("--data", default=None, help="real data root (TCIA or AAPM layout); default: $CTINV_DATA, else simulated")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--no-progress", action="store_true", help="do not stream the notebooks' progress bars")
    args = ap.parse_args(argv)
    try:
        run(args.preset, args.only, args.data, args.device, progress=not args.no_progress)
    except (CTInvError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
