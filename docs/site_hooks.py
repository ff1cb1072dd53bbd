"""mkdocs hooks: the pages and files the site takes from outside ``docs/``, generated at build time.

Nothing is copied into ``docs/`` (so there is nothing to ignore or to go stale):

- ``performance.md`` from the benchmark records (``docs/gen_performance.py``);
- ``api.md`` from ``ctinv_utils.__all__`` (``docs/gen_api.py``);
- ``changelog.md`` from ``CHANGELOG.md``;
- ``gallery/<notebook>.ipynb``: the committed executed notebooks of ``papermill_runs/quick/``,
  rendered (never executed) by mkdocs-jupyter;
- ``figures/quick/<file>``: the committed figures that a page links to, and only those.

The pages in ``docs/`` link to the repository's own files (``../figures/quick/x.png``,
``../papermill_runs/quick/01_data.ipynb``, ``../CHANGELOG.md``), so they also read correctly on the
repository page; :func:`on_page_markdown` points those links at the site's copies.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))

import gen_api  # noqa: E402
import gen_performance  # noqa: E402

NOTEBOOKS = ROOT / "papermill_runs" / "quick"
FIGURES = ROOT / "figures" / "quick"
FIGURE_LINK = re.compile(r"(?:\.\./)+figures/quick/([\w.-]+)")
NOTEBOOK_LINK = re.compile(r"(?:\.\./)+papermill_runs/quick/(\d\d_[\w-]+\.ipynb)")
CHANGELOG_LINK = re.compile(r"\]\((?:\.\./)+CHANGELOG\.md")


def _linked_figures() -> list[str]:
    names: set[str] = set()
    for page in DOCS.rglob("*.md"):
        names.update(FIGURE_LINK.findall(page.read_text(encoding="utf-8")))
    return sorted(names)


def _add(files: Files, file: File) -> None:
    old = files.get_file_from_path(file.src_uri)
    if old is not None:  # e.g. a performance.md written by hand or by the script: the build's copy wins
        files.remove(old)
    files.append(file)


@event_priority(100)  # before mkdocs-jupyter's on_files, so that it takes the notebooks as pages
def on_files(files: Files, config) -> Files:
    _add(files, File.generated(config, "performance.md", content=gen_performance.render(DOCS)))
    _add(files, File.generated(config, "api.md", content=gen_api.render()))
    _add(files, File.generated(config, "changelog.md", content=(ROOT / "CHANGELOG.md").read_text(encoding="utf-8")))
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        _add(files, File.generated(config, f"gallery/{nb.name}", abs_src_path=str(nb)))
    for name in _linked_figures():
        src = FIGURES / name
        if not src.is_file():
            raise FileNotFoundError(
                f"docs link to figures/quick/{name}, which does not exist; run `make reproduce` or fix the link"
            )
        _add(files, File.generated(config, f"figures/quick/{name}", abs_src_path=str(src)))
    return files


def on_nav(nav, config, files: Files):
    """After every ``on_files``: mkdocs-jupyter wraps each notebook in a ``NotebookFile`` that forwards
    to the original file but recomputes ``abs_src_path`` from ``src_dir``, which a generated file does
    not have; hand it the original file's path."""
    for f in files:
        inner = f.__dict__.get("file")
        if inner is not None and "abs_src_path" not in f.__dict__:
            f.__dict__["abs_src_path"] = inner.abs_src_path
    return nav


SPHINX_ROLE = re.compile(r":(?:func|meth|class|attr|mod|data|exc|obj):(?=<code>)")


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings cross-reference in Sphinx's notation (``:func:`name```), which mkdocstrings leaves as
    text before the name; keep the name."""
    return SPHINX_ROLE.sub("", html) if page.file.src_uri == "api.md" else html


def on_page_markdown(markdown: str, page, config, files) -> str:
    depth = page.file.src_uri.count("/")
    up = "../" * depth
    markdown = FIGURE_LINK.sub(lambda m: f"{up}figures/quick/{m.group(1)}", markdown)
    markdown = NOTEBOOK_LINK.sub(lambda m: f"{up}gallery/{m.group(1)}", markdown)
    return CHANGELOG_LINK.sub(f"]({up}changelog.md", markdown)
