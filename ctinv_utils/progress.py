"""Progress bars that show where the user is looking.

In JupyterLab: tqdm's notebook widget. In a headless papermill run (the runner sets
``CTINV_HEADLESS=1`` and streams the kernel's stderr to the terminal) a widget would be invisible,
so plain text bars go to stderr instead, updated at most every few seconds. Inside
:func:`report_to`, the bars of that thread report to a function instead (an interface of its own,
e.g. the invariance explorer's widget, which shows them and can stop the work).

A bar ends in one of two states: finished (all its steps, or fewer because the work converged:
:func:`finish` sets its total to the steps done, so it reads 100 % with a note such as "converged at
312"; green in a notebook), or broken off by an error (the count where it stopped; red in a notebook).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Callable

HEADLESS_ENV = "CTINV_HEADLESS"

_local = threading.local()


class Progress:
    """A progress bar that reports to a function (see :func:`report_to`); tqdm's methods that ctinv
    uses. ``state``: ``"running"``, ``"success"`` (closed at its total) or ``"failed"`` (closed
    before it). The function is called with the bar after every step, postfix change and at close;
    an exception it raises stops the work in the middle of the loop (how a Cancel button stops it)."""

    def __init__(self, iterable=None, report: Callable[[Progress], None] | None = None, *, total=None, desc="",
                 initial=0, disable=False, **_ignored):
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.iterable, self.report = iterable, report
        self.total, self.n, self.desc, self.disable = total, initial, desc or "", disable
        self.postfix, self.state = "", "running"
        self._emit()

    def _emit(self) -> None:
        if self.report is not None and not self.disable:
            self.report(self)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __len__(self):
        return self.total or 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._emit()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())
        if refresh:
            self._emit()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)
        if refresh:
            self._emit()

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc
        if refresh:
            self._emit()

    def reset(self, total=None) -> None:
        self.n, self.state = 0, "running"
        if total is not None:
            self.total = total
        self._emit()

    def refresh(self) -> None:
        self._emit()

    def close(self) -> None:
        if self.state != "running":
            return
        self.state = "failed" if self.total and self.n < self.total else "success"
        self._emit()


@contextlib.contextmanager
def report_to(report: Callable[[Progress], None]):
    """Within this block, every progress bar made on this thread is a :class:`Progress` that calls
    ``report(bar)`` instead of drawing itself. Other threads keep their bars.

    Example
    -------
    >>> seen = []
    >>> with report_to(lambda bar: seen.append((bar.n, bar.state))):
    ...     for _ in progress_bar(range(2)):
    ...         pass
    >>> seen[-1]
    (2, 'running')
    """
    before = getattr(_local, "report", None)
    _local.report = report
    try:
        yield
    finally:
        _local.report = before


def progress_bar(iterable=None, **kwargs):
    """``tqdm`` that suits the front end (see module docstring); same arguments as tqdm."""
    report = getattr(_local, "report", None)
    if report is not None:
        return Progress(iterable, report, **kwargs)
    if os.environ.get(HEADLESS_ENV):
        from tqdm import tqdm

        kwargs.setdefault("mininterval", 5.0)
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("ascii", True)
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def finish(bar, note: str | None = None) -> None:
    """Close ``bar`` as finished at the steps it counted: a loop that stopped early because its work
    was done (converged) shows 100 % of the steps it ran, not a bar broken off at 25 %; ``note`` (e.g.
    ``"converged at 312"``) is added to its postfix. Close a bar with ``bar.close()`` instead when the
    work failed or was stopped, so that it keeps the count where it stopped."""
    if not getattr(bar, "disable", False):
        if bar.total and bar.n < bar.total:
            bar.total = bar.n
            container = getattr(bar, "container", None)  # tqdm's notebook widget draws its own maximum
            if container is not None and bar.n > 0:
                container.children[1].max = bar.n
        if note:
            bar.set_postfix_str(f"{bar.postfix}, {note}" if bar.postfix else note, refresh=False)
    bar.close()
