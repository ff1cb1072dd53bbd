"""Write the documentation's API reference: one entry per public name of ``ctinv_utils.__all__``.

``ctinv_utils`` imports its public names lazily (``from ctinv_utils import Invariance`` loads
``ctinv_utils.synthesis.invariances`` on first use), so a static reader such as mkdocstrings cannot
follow ``__all__`` by itself. This script reads ``__all__`` and the name -> module table behind it
and writes a ``::: ctinv_utils.<module>.<name>`` directive for each name, grouped by stage;
mkdocstrings renders each from its docstring. The documentation build calls :func:`render`
(``docs/site_hooks.py``); run as a script it prints the page::

    python docs/gen_api.py
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (title, module prefix, what the group is for), in pipeline order.
GROUPS = [
    ("Data", "data", "Paired low/full-dose slices in HU, simulated or read from DICOM, and patient-balanced sampling."),
    ("Units and windows", "units", "HU and the networks' normalized units; the talk's CT windows."),
    ("Denoisers", "models", "The talk's denoisers, the published ldct-benchmark models, and VGG."),
    ("Training", "training", "One training loop for every model, the model cache, and evaluation."),
    (
        "Invariances and attacks",
        "synthesis",
        "Image-domain and natural invariances, distances, output tolerance, linearised invariances, attacks, "
        "the explorer, and the α grid settings.",
    ),
    ("Hand-off between notebooks", "artifacts", "Every file a notebook writes and a later one reads."),
    ("Names", "names", "Display names for tables and figure titles."),
]


def public_names() -> dict[str, str]:
    """``{name: module path}`` for every name in ``ctinv_utils.__all__``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    pkg = importlib.import_module("ctinv_utils")
    table = getattr(pkg, "_API", {})
    out = {}
    for name in pkg.__all__:
        if name in table:
            out[name] = f"ctinv_utils.{table[name]}"
        else:  # a name defined or imported eagerly: ask the object where it lives
            obj = getattr(pkg, name)
            out[name] = getattr(obj, "__module__", "ctinv_utils")
    return out


def render() -> str:
    """The API reference page as Markdown (mkdocstrings directives)."""
    names = public_names()
    out = [
        "# API reference",
        "",
        "Every public name of `ctinv_utils`, importable from the package itself:",
        "",
        "```python",
        "from ctinv_utils import load_data, load_denoiser, Invariance, hu_to_norm",
        "```",
        "",
        "Images are `(B, 1, H, W)` tensors in normalized units (`hu_to_norm`) unless a name says `_hu`. "
        "This page is generated from the docstrings at every documentation build.",
        "",
    ]
    placed = set()
    for title, prefix, blurb in GROUPS:
        members = sorted(
            n for n, m in names.items() if m == f"ctinv_utils.{prefix}" or m.startswith(f"ctinv_utils.{prefix}.")
        )
        if not members:
            continue
        out += [f"## {title}", "", blurb, ""]
        for n in members:
            out += [f"::: {names[n]}.{n}", ""]
            placed.add(n)
    rest = sorted(set(names) - placed)
    if rest:
        out += ["## Other", ""]
        for n in rest:
            out += [f"::: {names[n]}.{n}", ""]
    return "\n".join(out)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(render())


if __name__ == "__main__":
    main()
