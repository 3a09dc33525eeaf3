"""Progress over the sweep: a rich bar on a terminal; one plain line per finished point otherwise
(CI logs, slurm, `tee`), so a log shows what finished and how, as it happens."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _num(v, fmt: str) -> str:
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return "-"


class SweepProgress:
    def __init__(self, console: Console, *, quiet: bool = False):
        self.console = console
        self.lines = not console.is_terminal  # no TTY: plain lines instead of a live bar
        self.quiet = quiet
        self._p = None
        if not (self.lines or quiet):
            self._p = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
            )
        self._task = None
        self._total = 0
        self._done = 0  # points finished in this pass (the sweep, or one crossover-refinement round)

    def __enter__(self) -> "SweepProgress":
        if self._p is not None:
            self._p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def update(self, task, i: int, total: int) -> None:
        self._total = total
        if task is None:  # the pass is over: a refinement round counts from 1 again
            self._done = 0
        if self._p is None:
            return
        if self._task is None:
            self._task = self._p.add_task("", total=total)
        label = task.label() if task is not None else "done"
        if task is not None and getattr(task, "refinement", None):
            label = f"refining crossovers (round {task.refinement}): {label}"
        self._p.update(self._task, completed=i, total=total, description=label)

    def point_done(self, task, rows: list[dict]) -> None:
        """One line per finished (point, implementation) when there is no terminal."""
        self._done += 1
        if not self.lines or self.quiet:
            return
        total = next((r for r in rows if r.get("stage") == "total"), rows[0] if rows else {})
        status = total.get("status", "?")
        what = f"{_num(total.get('latency_ms'), '.4g')} ms" if status == "ok" else (total.get("reason") or "")[:80]
        where = f" (refinement round {task.refinement})" if getattr(task, "refinement", None) else ""
        self.console.print(f"[{self._done}/{self._total}] {task.label()}{where}: {status} {what}",
                           markup=False, highlight=False, soft_wrap=True)
