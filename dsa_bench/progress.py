"""A rich progress bar over the sweep: current point, done/total and ETA."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class SweepProgress:
    def __init__(self, console: Console):
        self._p = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self._task = None

    def __enter__(self) -> "SweepProgress":
        self._p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._p.__exit__(*exc)

    def update(self, task, i: int, total: int) -> None:
        if self._task is None:
            self._task = self._p.add_task("", total=total)
        label = task.label() if task is not None else "done"
        self._p.update(self._task, completed=i, description=label)
