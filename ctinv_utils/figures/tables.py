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


def csv_text(rows: Sequence[dict], columns: Sequence[tuple]) -> str:
    """The same table as CSV (full precision, headers as in the markdown)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([h for _, h, _ in columns])
    for r in rows:
        w.writerow([r.get(k, "") for k, _, _ in columns])
    return buf.getvalue()
