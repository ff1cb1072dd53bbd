"""ldct-benchmark's published checkpoints: where they live, downloading them (only when asked), checking them.

Nothing here touches the network unless you ask for a download::

    python -m ctinv_utils hub download cnn10 redcnn     # or: download all
    python -m ctinv_utils hub list                      # what is published, what is here and verified

Downloads go to ``<ctinv cache>/ldctbench/<method>.pt`` (:func:`cache_folder`); a file ldct-benchmark
itself downloaded is used where it lies (:func:`ldctbench_cache_folder`). Every file is checked
against the SHA-256 ldct-benchmark publishes (``checkpoints.json``) before each use, and a download
is renamed into place only when its hash matches (:func:`fetch`). Without internet, copy the file
into the ctinv folder: :func:`checkpoint_path`'s error names the file, the URL and the folder. Your
own files (``$CTINV_LDCTBENCH_CHECKPOINTS``) come first, unchecked and with a warning (:func:`own_checkpoint`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
import warnings
from functools import lru_cache
from pathlib import Path

from ... import atomic
from ...errors import CTInvError
from ...paths import cache_dir
from ...progress import progress_bar
from ...provenance import sha256_file

#: ldct-benchmark 0.0.15's ``ldctbench/hub/checkpoints.json``, unchanged.
CHECKPOINTS_JSON = Path(__file__).resolve().parent / "checkpoints.json"
#: Published methods ctinv cannot run, and why.
NOT_PORTED = {
    "bilateral": ("ldct-benchmark's trainable bilateral filter needs its compiled extension "
                  "(the bilateral_filter_layer package, CUDA), which ctinv does not port; "
                  "analyse it with ldct-benchmark itself (ldctbench.hub.load_model('bilateral'))"),
}
CHUNK = 1 << 20
TIMEOUT_S = 60
#: A folder of the user's own ``<method>.pt`` files, used as they are (no published SHA-256 to check).
OWN_FILES_ENV = "CTINV_LDCTBENCH_CHECKPOINTS"


class HubError(CTInvError):
    """A published checkpoint that is unknown, missing, unreachable or fails its SHA-256 check."""


@lru_cache(maxsize=1)
def published_checkpoints() -> dict[str, dict]:
    """``{method: {"url", "checksum" (SHA-256 hex), "model_name", "args", "kwargs", "normalization"}}``."""
    return json.loads(CHECKPOINTS_JSON.read_text())


def published(method: str) -> dict:
    """The published record of one method that ctinv can run; a clear error otherwise."""
    table = published_checkpoints()
    if method in NOT_PORTED:
        raise HubError(f"{method}: {NOT_PORTED[method]}")
    if method not in table:
        usable = sorted(set(table) - set(NOT_PORTED))
        raise HubError(f"ldct-benchmark publishes no checkpoint called {method!r}; choose one of {usable}")
    return table[method]


def file_name(method: str) -> str:
    """``<method>.pt``: ldct-benchmark's own file name, so its cache and ours hold the same names."""
    return f"{method}.pt"


def cache_folder() -> Path:
    """Where ctinv keeps downloaded checkpoints: ``<ctinv cache>/ldctbench/`` (not created here)."""
    return cache_dir() / "ldctbench"


def ldctbench_cache_folder() -> Path:
    """ldct-benchmark's own cache folder, as ``platformdirs.user_cache_dir("ldctbench", "eeulig")``
    computes it (written out here, so platformdirs is not needed): ``$XDG_CACHE_HOME/ldctbench`` or
    ``~/.cache/ldctbench`` on Linux, ``~/Library/Caches/ldctbench`` on macOS,
    ``%LOCALAPPDATA%\\eeulig\\ldctbench\\Cache`` on Windows. ldct-benchmark writes in place and does
    not re-check a file it finds, so a half-written file there is reported by ctinv, not used."""
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "eeulig" / "ldctbench" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ldctbench"
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "ldctbench"


def candidates(method: str) -> list[Path]:
    """The places a checkpoint may lie, in the order they are tried: ctinv's cache, then ldct-benchmark's."""
    return [cache_folder() / file_name(method), ldctbench_cache_folder() / file_name(method)]


def _verified(method: str) -> tuple[Path | None, list[Path]]:
    """(the first candidate whose SHA-256 matches or None, the candidates that exist but do not match)."""
    expected = published(method)["checksum"]
    wrong = []
    for path in candidates(method):
        if path.is_file():
            if sha256_file(path) == expected:
                return path, wrong
            wrong.append(path)
    return None, wrong


def own_checkpoint(method: str) -> Path | None:
    """``$CTINV_LDCTBENCH_CHECKPOINTS/<method>.pt`` when the variable names a folder holding it, else
    None. Such a file is the user's own, not the published one (a model retrained with
    ldct-benchmark, or a stand-in of the paper rehearsal): it is used before any published one, not
    checked against the published SHA-256, and each use warns so; the notebooks record its path and
    its own SHA-256. A variable naming no folder is a :class:`HubError`."""
    folder = os.environ.get(OWN_FILES_ENV, "").strip()
    if not folder:
        return None
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise HubError(f"${OWN_FILES_ENV}={folder} is not a folder; point it at the folder of your own "
                       f"<method>.pt files, or unset it to use the published checkpoints")
    path = root / file_name(method)
    if not path.is_file():
        return None
    warnings.warn(f"ldctbench:{method}: using your own file {path} (from ${OWN_FILES_ENV}), not the published "
                  "checkpoint: it is not checked against the published SHA-256", stacklevel=3)
    return path


def find_checkpoint(method: str) -> Path | None:
    """The local file of ``method``'s checkpoint, or None; never downloads: the user's own file
    (:func:`own_checkpoint`) if there is one, else a file whose SHA-256 is the published one."""
    return own_checkpoint(method) or _verified(method)[0]


def checkpoint_path(method: str) -> Path:
    """The local checkpoint of ``method`` (the user's own, :func:`own_checkpoint`, or a verified
    published file); :class:`HubError` naming the file, the URL and the folder to put it in when there
    is none. Never downloads."""
    own = own_checkpoint(method)
    if own is not None:
        return own
    found, wrong = _verified(method)
    if found is not None:
        return found
    rec = published(method)
    bad = "".join(f"; {p} has the wrong SHA-256 (incomplete or another file: delete it)" for p in wrong)
    raise HubError(f"no verified {file_name(method)} for ldctbench:{method}: download it with "
                   f"`python -m ctinv_utils hub download {method}`, or fetch {rec['url']} yourself and put it in "
                   f"{cache_folder()}/ (SHA-256 {rec['checksum']}){bad}")


def present_published(names) -> tuple[dict[str, Path], list[str]]:
    """``({name: local checkpoint}, [names without one])`` for ``ldctbench:<method>`` names (the
    checkpoint: the user's own file, else a verified published one, see :func:`find_checkpoint`);
    never downloads. A name that is not a published method is a :class:`HubError`."""
    present, missing = {}, []
    for name in names:
        if not str(name).startswith("ldctbench:"):
            raise HubError(f"{name!r} is not a published denoiser; write ldctbench:<method> "
                           f"(methods: {', '.join(sorted(published_checkpoints()))})")
        path = find_checkpoint(name.split(":", 1)[1])
        if path is None:
            missing.append(name)
        else:
            present[name] = path
    return present, missing


def _one_line(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(exc).__name__}: {' '.join(str(reason).split())}"


def fetch(url: str, sha256: str, target: str | Path, progress: bool = True) -> Path:
    """Download ``url`` to ``target`` (any URL urllib opens, ``file://`` included), hashing on the way.

    The bytes go to a temporary file beside ``target`` that is renamed to ``target`` only if its
    SHA-256 is ``sha256``; on a wrong hash, a broken connection or Ctrl-C nothing is left behind.
    Raises :class:`HubError` (one line, naming the URL and the folder) on any failure."""
    target = Path(target)
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 (the URL is the published one)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise HubError(f"could not download {url} ({_one_line(exc)}); without internet, fetch it on another "
                       f"machine and put it in {target.parent}/ as {target.name} (SHA-256 {sha256})") from None

    def write(fh) -> None:
        digest = hashlib.sha256()
        size = int(response.headers.get("Content-Length") or 0) or None
        with response, progress_bar(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                    desc=f"download {target.name}", disable=not progress) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                fh.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise HubError(f"{url} has SHA-256 {digest.hexdigest()}, but {sha256} is published: refused, nothing "
                           f"written to {target.parent}/; download again, or report a changed file upstream")

    try:
        atomic.write_with(target, write)
    except HubError:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise HubError(f"download of {url} broke off ({_one_line(exc)}); nothing written to {target.parent}/; "
                       "try again") from None
    return target


def download(method: str, progress: bool = True) -> Path:
    """The verified checkpoint of ``method``: found locally, else downloaded into :func:`cache_folder`."""
    found = _verified(method)[0]  # a download is for the published file, whatever the user's own folder holds
    if found is not None:
        return found
    rec = published(method)
    return fetch(rec["url"], rec["checksum"], cache_folder() / file_name(method), progress=progress)


def status() -> list[dict]:
    """One row per published method: method, file, where it was found verified (or None), url."""
    rows = []
    for method, rec in sorted(published_checkpoints().items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the row says it is the user's own file
            own = None if method in NOT_PORTED else own_checkpoint(method)
        where = None if method in NOT_PORTED else own or _verified(method)[0]
        rows.append(dict(method=method, file=file_name(method), found=where, url=rec["url"],
                         note=NOT_PORTED.get(method, ""), own=own is not None))
    return rows


USAGE = ("usage: python -m ctinv_utils hub download METHOD [METHOD ...] | download all | list\n"
         "  METHOD: one of {methods}\n"
         "  files go to {folder}/ (ldct-benchmark's own cache {theirs}/ is used when it holds them)")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    usable = sorted(set(published_checkpoints()) - set(NOT_PORTED))
    usage = USAGE.format(methods=", ".join(usable), folder=cache_folder(), theirs=ldctbench_cache_folder())
    if args == ["list"]:
        for row in status():
            if row["note"]:
                state = "not supported by ctinv (needs ldct-benchmark's compiled extension)"
            else:
                state = (f"your own file (${OWN_FILES_ENV}, not checked): {row['found']}" if row["own"] else
                         f"verified: {row['found']}" if row["found"] else f"not here ({row['url']})")
            print(f"{row['method']:10s} {state}")
        return 0
    if len(args) < 2 or args[0] != "download":
        print(usage, file=sys.stderr)
        return 2
    methods = usable if args[1:] == ["all"] else args[1:]
    try:
        for method in methods:
            published(method)  # every name is checked before anything is downloaded
        for method in methods:
            print(f"ldctbench:{method}: {download(method)}")
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
