"""Tables: rows (dicts) to markdown for the notebooks and to CSV for the figures folder."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence


def _fmt(value, spec: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple], note: str = "") -> str:
    """``columns`` = ``[(key, header, format spec)]`` (spec '' for plain text); pipes in cells are
    escaped. ``note`` goes under the table."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(_fmt(r.get(k), spec).replace("|", "\\|") for k, _, spec in columns) + " |"
            for r in rows]
    return "\n".join([head, rule, *body]) + (f"\n\n{note}" if note else "")


def reader_value(value, header: str) -> str:
    """A number as a reader's table carries it: HU to 0.1, dB to 0.01, anything else to three
    significant digits (1.00, 0.502, 33.7); integers, text and empty cells as they are. The full
    precision stays in the run's artifacts (JSON and NPZ)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if "(HU)" in header or "HU RMS" in header:
        return f"{value:.1f}"
    if "(dB)" in header:
        return f"{value:.2f}"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:#.3g}".rstrip(".")


def csv_text(rows: Sequence[dict], columns: Sequence[tuple]) -> str:
    """The same table as CSV, headers as in the markdown, numbers at the precision they carry
    (:func:`reader_value`)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([h for _, h, _ in columns])
    for r in rows:
        w.writerow([reader_value(r.get(k), h) for k, h, _ in columns])
    return buf.getvalue()
