"""Run the notebooks of a preset headlessly with papermill.

    python -m ctinv_utils run --preset quick [--only 01,03] [--data PATH] [--device auto|cpu|cuda] [--force]

Executed notebooks go to ``papermill_runs/<preset>/``, figures to ``figures/<preset>/``, a run manifest
(per notebook: parameters, config hash, data source, time, status) to
``papermill_runs/<preset>/manifest.json`` and a figure manifest (per file: the notebook that made it,
its parameters, git commit, seed, device, library versions, SHA-256 of the file and of the arrays
behind it) to ``figures/<preset>/manifest.json``.

A notebook whose parameters, code and upstream notebooks are unchanged since its last successful run,
and whose outputs are all still there, is not executed again (``--force`` runs it anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .. import atomic
from ..errors import CTInvError, DataRootError, first_line
from ..paths import REPO_ROOT, STAGING_ENV, figure_dir, repo_relative, run_dir
from ..progress import HEADLESS_ENV
from .preflight import preflight
from .presets import list_notebooks, load_preset, parameters_hash, plan, select_notebooks
from ..provenance import provenance, sha256_file
from ..settings import check_device

GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"
TCP_WARNING = "Kernel is running over TCP without encryption"


class NotebookFailed(CTInvError):
    """A notebook raised during execution."""


class RunnerBusy(CTInvError):
    """Another runner writes into the same output folder."""


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """``values`` set in this process's environment (the kernels inherit it), restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def kernelenvironment():
    """Environment the notebook kernels start with, restored afterwards (this process keeps its own):
    the kernel of this environment over a user-wide 'python3' kernelspec; text progress bars on
    stderr (streamed to the terminal); glibc's allocator told to keep freed memory (page faults cost
    a third of the CPU time of our optimisation loops; the library also tunes it at run time)."""
    return environment({"JUPYTER_PREFER_ENV_PATH": os.environ.get("JUPYTER_PREFER_ENV_PATH", "1"), HEADLESS_ENV: "1",
                         "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", GLIBC_TUNABLES)})


def _ipc_kernel_manager():
    """A kernel manager on local IPC sockets: no TCP ports, and no kernel warning about unencrypted
    TCP in the executed notebooks."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.transport = "ipc"

    return IPCKernelManager


def _terminal_text(text: str) -> str:
    """What a terminal would show of ``text``: each line keeps what follows its last carriage return
    (a progress bar collapses to its final state)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def tidy_notebook(nb) -> None:
    """Make an executed notebook small and readable, in place: consecutive stream outputs merged and
    collapsed to their final state (progress bars), kernel transport warnings dropped, text reprs of
    figures dropped where the image is shown, widget state removed."""
    root = str(REPO_ROOT) + os.sep
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                if outputs and outputs[-1].get("output_type") == "stream" and outputs[-1]["name"] == out["name"]:
                    outputs[-1]["text"] += out["text"]
                    continue
                outputs.append(out)
            elif out.get("output_type") in ("display_data", "execute_result"):
                data = out.get("data", {})
                if ("image/png" in data or "image/jpeg" in data) and str(data.get("text/plain", "")).startswith(("<Figure", "<IPython")):
                    data.pop("text/plain")
                data.pop("application/vnd.jupyter.widget-view+json", None)
                if data:
                    outputs.append(out)
            else:
                outputs.append(out)
        for out in outputs:
            if out.get("output_type") == "stream":
                lines = _terminal_text(out["text"]).split("\n")
                out["text"] = "\n".join(ln for ln in lines if TCP_WARNING not in ln).replace(root, "")
            elif out.get("output_type") == "error":  # tracebacks name files relative to the repository
                out["traceback"] = [line.replace(root, "") for line in out.get("traceback", [])]
            for key, value in out.get("data", {}).items():
                if key.startswith("text/") and isinstance(value, str):
                    out["data"][key] = value.replace(root, "")
        cell["outputs"] = [o for o in outputs if o.get("output_type") != "stream" or o["text"].strip()]
    nb.metadata.pop("widgets", None)
    pm = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):  # where this machine kept them: not the reader's business
        pm.pop(key, None)


def execute_notebook(notebook: Path, output: Path, parameters: dict, progress: bool = True) -> None:
    """Execute one py:percent notebook with papermill's API (kernel python3, cwd = repo root) and
    write the tidied executed notebook to ``output`` atomically. On failure the executed notebook goes
    to ``<output folder>/failed/<name>.ipynb`` and a good ``output`` from an earlier run is kept.

    ``papermill in.py out.ipynb`` cannot read py:percent, so jupytext reads it first. Parameters
    are passed as Python objects, so booleans and lists arrive typed (papermill's ``-p`` would turn
    ``false`` into a string)."""
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.stem}.running.ipynb"
    failure = None
    try:
        with kernelenvironment():
            papermill.execute_notebook(nb, str(tmp), parameters=parameters, kernel_name="python3",
                                       cwd=str(REPO_ROOT), progress_bar=False,
                                       stderr_file=sys.stderr if progress else None,
                                       report_mode=False, request_save_on_cell_execute=True,
                                       kernel_manager_class=_ipc_kernel_manager())
    except PapermillExecutionError as exc:
        failure = exc
    if not tmp.is_file():  # papermill failed before writing anything (e.g. the kernel did not start)
        raise NotebookFailed(f"notebook {notebook.name} could not be executed (no output written)")
    executed = nbformat.read(tmp, as_version=4)
    tidy_notebook(executed)
    target = output if failure is None else output.parent / "failed" / output.name
    atomic.write_text(target, nbformat.writes(executed))
    tmp.unlink(missing_ok=True)
    if failure is not None:
        raise NotebookFailed(
            f"notebook {notebook.name} failed in cell {failure.cell_index} (execution {failure.exec_count}: "
            f"{first_line(failure.source or '', 80)!r}): {failure.ename}: {failure.evalue}; traceback in {repo_relative(target)}")
    with contextlib.suppress(FileNotFoundError):
        (output.parent / "failed" / output.name).unlink()


# -- what changed -------------------------------------------------------------------------------
def code_fingerprint() -> str:
    """SHA-256 over the package's source files: a change of any of them re-executes every notebook."""
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parent.parent  # the whole package, not only this wing
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def notebook_content(notebook: Path) -> bytes:
    """What of a notebook can change its results: each cell's type and source (code and markdown),
    not the header metadata an editor rewrites when it saves."""
    import jupytext

    cells = [[c.cell_type, c.source] for c in jupytext.read(notebook).cells]
    return json.dumps(cells, ensure_ascii=False).encode()


def notebook_fingerprint(notebook: Path, params: dict, data: str, code: str, upstream: str) -> str:
    """What determines a notebook's outputs: its cells, parameters (config hash), the data, the
    package's code and the fingerprint of the notebook before it."""
    h = hashlib.sha256()
    for part in (notebook_content(notebook), parameters_hash(params).encode(), data.encode(), code.encode(),
                 upstream.encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _outputs_intact(entry: dict, out_dir: Path, fig_dir: Path) -> bool:
    """The executed notebook and every figure file it made are there with their recorded checksums."""

    if not (out_dir / f"{entry['notebook']}.ipynb").is_file():
        return False
    for name, sha in entry.get("figures", {}).items():
        p = fig_dir / name
        if not p.is_file() or sha256_file(p) != sha:
            return False
    return True


def _figure_records(fig_dir: Path) -> dict[str, dict]:
    """Figure sidecars (``<name>.json``) by figure name."""
    out = {}
    for side in sorted(fig_dir.glob("*.json")):
        if side.name == "manifest.json":
            continue
        try:
            rec = json.loads(side.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "files" in rec and "notebook" in rec:
            out[side.stem] = rec
    return out


def _manifest_entry(rec: dict, path: Path) -> dict:

    return {"notebook": rec["notebook"],
            "caption": rec.get("caption"), "parameters": rec.get("config"), "config_hash": rec.get("config_hash"),
            "git_commit": rec.get("git_commit"), "seed": rec.get("seed"), "device": rec.get("device"),
            "device_name": rec.get("device_name"), "versions": rec.get("versions"),
            "data_source": rec.get("data_source"), "created": rec.get("created"),
            "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "data_sha256": rec.get("data_sha256", {}), "drawn_from": rec.get("drawn_from", {})}


def read_figure_manifest(fig_dir: Path) -> dict[str, dict]:
    """The entries of ``figures/<name>/manifest.json`` ({file: entry}); none when it is missing or damaged."""
    path = fig_dir / "manifest.json"
    with contextlib.suppress(OSError, json.JSONDecodeError, KeyError, TypeError):
        return dict(json.loads(path.read_text())["files"])
    return {}


def update_figure_manifest(fig_dir: Path, preset: str, notebook: str, records: dict[str, dict]) -> dict:
    """``figures/<preset>/manifest.json`` after ``notebook`` succeeded and made the figures of
    ``records`` ({figure name: sidecar}): that notebook's entries are replaced by these, every other
    notebook's entries are kept as they were. The manifest changes entry by entry with what runs
    produced, never from whatever happens to be on disk. Per file: the notebook that made it, its
    parameters, git commit, seed, device, versions, the file's SHA-256 and the arrays' behind it."""
    files = {f: e for f, e in read_figure_manifest(fig_dir).items() if e.get("notebook") != notebook}
    for name, rec in records.items():
        for fname in rec["files"]:
            if (fig_dir / fname).is_file():
                files[fname] = {**_manifest_entry(rec, fig_dir / fname), "figure": name}
    manifest = {"preset": preset, "files": dict(sorted(files.items()))}
    atomic.write_json(fig_dir / "manifest.json", manifest)
    return manifest


def publish(staging: Path, fig_dir: Path, notebook: str) -> dict[str, dict]:
    """Move every file ``notebook`` wrote into ``staging`` to ``fig_dir`` (each by an atomic rename)
    and return the sidecars of its figures ({name: record}); ``staging`` is removed. Figures the
    manifest says this notebook made before and that it no longer makes are removed with their PDF
    and sidecar, so nothing stale stays beside the new results."""
    records = _figure_records(staging)
    made = {f.name for f in staging.iterdir() if f.is_file()}
    fig_dir.mkdir(parents=True, exist_ok=True)
    for fname, entry in read_figure_manifest(fig_dir).items():
        if entry.get("notebook") == notebook and fname not in made:
            stem = Path(fname).stem
            for old in (fig_dir / fname, fig_dir / f"{stem}.pdf", fig_dir / f"{stem}.json"):
                if old.name not in made:
                    old.unlink(missing_ok=True)
    for f in sorted(staging.iterdir()):
        if f.is_file():
            os.replace(f, fig_dir / f.name)
    shutil.rmtree(staging, ignore_errors=True)
    return records


def output_name(preset_name: str, data: str | None) -> str:
    """The folder name of a run's outputs: the preset's own for the embedded simulated data (the
    committed quick results), else the preset and the data source, so a run on other data never
    writes over them (``quick-data-LDCT-3f2a9c1e``)."""
    if not data:
        return preset_name
    root = Path(data).expanduser().resolve()
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in root.name)[:40] or "data"
    return f"{preset_name}-data-{label}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def runner_lock(out_dir: Path):
    """One runner per output folder: a second one stops at once with an error naming the first."""
    from filelock import FileLock, Timeout

    out_dir.mkdir(parents=True, exist_ok=True)
    owner = out_dir / ".runner.json"
    lock = FileLock(str(out_dir / ".runner.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # the other run's own record says who it is
        who = {}
        with contextlib.suppress(OSError, json.JSONDecodeError):
            who = json.loads(owner.read_text())
        raise RunnerBusy(f"another run writes into {repo_relative(out_dir)} (pid {who.get('pid', '?')}, started "
                         f"{who.get('started', '?')}: {who.get('command', '?')}); wait for it to finish, or stop it") from None
    try:
        atomic.write_json(owner, {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "command": " ".join(sys.argv)})
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def run(preset_name: str, only: str | None = None, data: str | None = None, device: str = "auto",
        progress: bool = True, output_root: Path | None = None, force: bool = False,
        confirm_cpu: bool = False, name: str | None = None) -> dict:
    """Run the selected notebooks of a preset; returns the manifest. Raises on the first failure
    (the manifest records it). Before any notebook starts, :func:`~ctinv_utils.pipeline.preflight.preflight`
    checks that the run can finish (VGG weights, data root, a GPU preset on a CPU: ``confirm_cpu``).
    ``output_root`` (tests) replaces the repository as the place of ``papermill_runs/<name>`` and
    ``figures/<name>``; ``name`` is the output folders' name (default: :func:`output_name`, the
    preset's own for the embedded data). Figures are written to a staging folder and published into
    ``figures/<name>`` only when their notebook succeeds; one runner at a time per output folder."""
    preset = load_preset(preset_name)
    notebooks = select_notebooks(only)
    device = check_device(device, "--device")
    if data is not None and not str(data).strip():
        raise DataRootError("--data was given an empty path; pass the folder of your data, or leave --data out "
                            "for the embedded simulated data")
    data = data or os.environ.get("CTINV_DATA") or None
    if data:
        root = Path(data).expanduser()
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise DataRootError(f"data root {data} {what}; pass --data the folder that holds "
                                "LDCT-and-Projection-data (TCIA) or the AAPM patient folders (see README: Data)")
    data_label = str(Path(data).expanduser().resolve()) if data else "simulated (embedded default)"
    name = name or output_name(preset_name, data)
    if Path(name).name != name or name.startswith("."):
        raise CTInvError(f"output name {name!r} is not a plain folder name; use letters, digits, '-' and '_'")
    if output_root is None:
        out_dir, fig_dir = run_dir(name), figure_dir(name)
    else:
        out_dir = Path(output_root) / "papermill_runs" / name
        fig_dir = Path(output_root) / "figures" / name
    runtime = {
        "preset": preset_name, "data_path": data, "device": device, "seed": int(preset["seed"]),
        "figures_dir": repo_relative(fig_dir), "artifacts_dir": repo_relative(out_dir / "artifacts"), "interactive": False,
    }
    # the preset resolved once, every selected notebook validated before the first one starts
    all_params = {stem: s.parameters() for stem, s in plan(preset, notebooks, runtime).items()}
    for note in preflight(preset, all_params, device, data, confirm_cpu):
        print(f"note: {note}", flush=True)
    with runner_lock(out_dir):
        manifest_path = out_dir / "manifest.json"
        old = {}
        if manifest_path.is_file():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                old = {e["notebook"]: e for e in json.loads(manifest_path.read_text())["notebooks"]}
        manifest = provenance(seed=runtime["seed"], config=preset, device=device, preset=preset_name,
                              notebooks=[], started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        selected = {nb.stem for nb in notebooks}
        entries = {k: v for k, v in old.items() if k not in selected}  # a partial run keeps the others' entries
        code = code_fingerprint()
        upstream, rerun_chain = "", False
        for nb in list_notebooks():  # every notebook's fingerprint chains to the one before it
            if nb.stem not in selected:
                upstream = old.get(nb.stem, {}).get("fingerprint", "")
                continue
            i = sorted(selected).index(nb.stem) + 1
            resolved = params = all_params[nb.stem]
            fingerprint = notebook_fingerprint(nb, resolved, data_label, code, upstream)
            prev = old.get(nb.stem, {})
            up_to_date = (not force and not rerun_chain and prev.get("status") == "ok"
                          and prev.get("fingerprint") == fingerprint and _outputs_intact(prev, out_dir, fig_dir))
            if up_to_date:
                print(f"[{i}/{len(notebooks)}] {nb.stem}: up to date (parameters, code and inputs unchanged; "
                      "--force re-runs it)", flush=True)
                entries[nb.stem] = prev
                upstream = fingerprint
                continue
            rerun_chain = True
            print(f"[{i}/{len(notebooks)}] {nb.stem} (preset {preset_name}, device {device})", flush=True)
            entry = {"notebook": nb.stem, "preset": preset_name, "data": data_label, "parameters": resolved,
                     "config_hash": parameters_hash(resolved), "fingerprint": fingerprint,
                     "output": repo_relative(out_dir / f"{nb.stem}.ipynb"), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            notes = out_dir / "artifacts" / "notes" / f"{nb.stem}.json"
            staging = fig_dir.parent / ".staging" / f"{name}-{nb.stem}"
            shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
            staging.mkdir(parents=True)
            t0 = time.perf_counter()
            try:
                notes.unlink(missing_ok=True)
                with environment({STAGING_ENV: str(staging)}):
                    execute_notebook(nb, out_dir / f"{nb.stem}.ipynb", params, progress=progress)
                entry["status"] = "ok"
                if notes.is_file():
                    entry["notes"] = json.loads(notes.read_text())
                published = publish(staging, fig_dir, nb.stem)  # only a notebook that succeeded touches figures/
                entry["figures"] = _figures_of(nb.stem, fig_dir, published)
                update_figure_manifest(fig_dir, preset_name, nb.stem, published)
            except BaseException as exc:
                entry["status"] = f"failed: {exc}"
                entry["output"] = repo_relative(out_dir / "failed" / f"{nb.stem}.ipynb")
                entry["figures"] = {}
                shutil.rmtree(staging, ignore_errors=True)
                raise
            finally:
                entry["wall_s"] = round(time.perf_counter() - t0, 2)
                entries[nb.stem] = entry
                manifest["notebooks"] = [entries[k] for k in sorted(entries)]
                manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                try:  # a failure to write the manifest must never hide the notebook's own error
                    atomic.write_json(manifest_path, manifest)
                except OSError as write_error:
                    print(f"warning: could not write {repo_relative(manifest_path)}: {write_error}", file=sys.stderr)
            print(f"    done in {entry['wall_s']:.1f} s -> {entry['output']}", flush=True)
            upstream = fingerprint
        manifest["notebooks"] = [entries[k] for k in sorted(entries)]
        atomic.write_json(manifest_path, manifest)
        print(f"manifest: {repo_relative(manifest_path)}; figures: {repo_relative(fig_dir)}/ (manifest.json)", flush=True)
    return manifest


def _figures_of(notebook: str, fig_dir: Path, records: dict[str, dict]) -> dict[str, str]:
    """{file name: SHA-256} of the figure files a notebook made (from their sidecars ``records``)."""

    out = {}
    for rec in records.values():
        if rec["notebook"] == notebook:
            for f in rec["files"]:
                if (fig_dir / f).is_file():
                    out[f] = sha256_file(fig_dir / f)
    return dict(sorted(out.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick", help="quick (CPU, minutes) or paper (GPU); see configs/")
    ap.add_argument("--only", default=None, help="comma-separated notebooks, e.g. 01,03 or 01_data")
    ap.add_argument("--data", default=None, help="real data root (TCIA or AAPM layout); default: $CTINV_DATA, else simulated")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--out", default=None, help="name of the output folders papermill_runs/NAME and figures/NAME "
                    "(default: the preset's name; with --data, the preset and the data source)")
    ap.add_argument("--force", action="store_true", help="execute notebooks even when nothing changed")
    ap.add_argument("--no-progress", action="store_true", help="do not stream the notebooks' progress bars")
    ap.add_argument("--confirm-cpu", action="store_true",
                    help="run a preset meant for a GPU (paper) on the CPU anyway, after its time estimate")
    args = ap.parse_args(argv)
    try:
        run(args.preset, args.only, args.data, args.device, progress=not args.no_progress, force=args.force,
            confirm_cpu=args.confirm_cpu, name=args.out)
    except (CTInvError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
