"""The `report` and `compare` commands as plain functions; cli.py wraps them in Typer.

Both print with rich and return the process exit code instead of exiting, so they can be called
from `run` (report at the end of a sweep) and from tests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2
EXIT_REPORT_FAILED = 1

console = Console()
err = Console(stderr=True)
VERDICT_STYLE = {"faster": "green", "slower": "red", "broken": "bold red", "unclear": "yellow", "same": "dim",
                 "fixed": "green", "only in A": "dim", "only in B": "dim", "not measured": "dim"}


def build_report_quietly(run_dir: Path, out: Optional[Path] = None) -> Optional[Path]:
    """Write RUN_DIR's report (OUT/<scenario>/<run-id>/, or RUN_DIR/report/ when OUT is None); its
    index.html, or None after printing why it failed (RunError: not a run; anything else: a report bug,
    which must not look like a lost run when called at the end of `run`)."""
    index, _ = _build(run_dir, out)
    return index


def _build(run_dir: Path, out: Optional[Path]) -> tuple[Optional[Path], int]:
    from dsa_bench.report import build_report
    from dsa_bench.report.load import RunError

    try:
        if (Path(run_dir) / "quality_summary.csv").exists():  # a `phase: quality` run has its own report
            from dsa_bench.quality.run import write_quality_report

            return write_quality_report(Path(run_dir), out), EXIT_OK
        return build_report(Path(run_dir), out), EXIT_OK
    except RunError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return None, EXIT_BAD_INPUT
    except OSError as e:
        from dsa_bench.errors import describe_os_error

        if _inside(e.filename, run_dir):
            err.print(f"[bold red]error:[/] cannot read the run: {escape(describe_os_error(e))}; the run directory "
                      "is incomplete or unreadable", highlight=False, soft_wrap=True)
        else:
            err.print(f"[bold red]error:[/] cannot write the report under {escape(str(out or Path(run_dir) / 'report'))} "
                      f"({escape(describe_os_error(e))}); choose a writable reports directory (--out, or "
                      "--report-out of `run`); nothing was left half-written", highlight=False, soft_wrap=True)
        return None, EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - called at the end of `run`: a report bug must not look like a lost run
        from dsa_bench import cli_boundary

        if cli_boundary.debug:
            err.print_exception()
        err.print(f"[bold red]the report of {escape(str(run_dir))} could not be written[/] "
                  f"({escape(type(e).__name__)}: {escape(str(e)[:300])}); the run's results are intact. Run "
                  "`dsa-bench --debug report RUN_DIR` for the traceback.", highlight=False, soft_wrap=True)
        return None, EXIT_REPORT_FAILED


def report_command(run_dir: Path, out: Optional[Path] = None) -> int:
    """Write the report of RUN_DIR (see build_report_quietly) and end with its answer; 0 on success,
    2 when RUN_DIR is not a run, 1 on a failure."""
    index, code = _build(run_dir, out)
    if index is not None:
        if (Path(run_dir) / "quality_summary.csv").exists():
            from dsa_bench.report.answer import quality_sentences

            print_sentences(quality_sentences(read_summary(Path(run_dir)) or {}), report=index)
        else:
            print_answer(read_summary(index.parent), report=index)
    return code


# --- the answer in the terminal ---------------------------------------------------------------------

def read_summary(d: Path) -> Optional[dict]:
    """summary.json of a run or report directory, or None when there is none (or it is unreadable)."""
    import json

    try:
        data = json.loads((Path(d) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def print_answer(summary: Optional[dict], report: Optional[Path] = None) -> list[str]:
    """End a command with its answer (report.answer's sentences, as the HTML answer box has them);
    returns the sentences."""
    from dsa_bench.report.answer import answer_sentences

    sentences = answer_sentences(summary) if summary else []
    cpu = bool(summary and summary.get("device") == "cpu" and summary.get("headlines"))
    print_sentences(sentences, report=report, caveat="CPU timings, not GPU ones" if cpu else None)
    return sentences


def print_sentences(sentences: list[str], report: Optional[Path] = None, caveat: Optional[str] = None) -> None:
    from dsa_bench.report.answer import TOKENS_NOTE

    if report is not None:
        console.print(f"report: {report}", highlight=False, soft_wrap=True)
    if not sentences:
        return
    import textwrap

    console.print(f"[bold]answer[/] ({TOKENS_NOTE}{'; ' + caveat if caveat else ''}):", highlight=False)
    width = max(40, min(console.width, 120))
    for line in sentences:
        console.print(textwrap.fill(line, width, initial_indent="  - ", subsequent_indent="    "),
                      markup=False, highlight=False, soft_wrap=True)


def _inside(filename, folder: Path) -> bool:
    """Whether the file an OSError names lies in `folder` (a read of the run, not a write of the report)."""
    if not filename:
        return False
    try:
        return Path(str(filename)).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):
        return False


def compare_command(run_a: Path, run_b: Path, fail_on_regression: Optional[float] = None,
                    html: Optional[Path] = None, gate_on: str = "all", allow_different: bool = False) -> int:
    """Compare B against A point by point; 1 when --fail-on-regression PCT finds a regression, 2 on bad input."""
    import math

    from dsa_bench.report import compare_html, compare_runs
    from dsa_bench.report.compare import VERDICT_RULE, display_rows, regressions
    from dsa_bench.report.load import RunError

    if fail_on_regression is not None and not (math.isfinite(fail_on_regression) and fail_on_regression >= 0):
        err.print(f"[bold red]error:[/] --fail-on-regression: must be a finite percentage >= 0, got {fail_on_regression}",
                  highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    if html is not None and Path(html).is_dir():
        err.print(f"[bold red]error:[/] --html: {html} is a directory; give a file path", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    try:
        df = compare_runs(Path(run_a), Path(run_b))
    except RunError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    mismatch = df.attrs.get("not_comparable")
    if mismatch and not allow_different:
        err.print(f"[bold red]error:[/] the runs are not comparable point by point: {escape(mismatch)}. Compare "
                  "runs of the same scenario and model, or pass --allow-different to compare anyway",
                  highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    both = df["verdict"].isin(["faster", "slower", "same", "unclear", "broken", "fixed"]) if len(df) else df.index == 0
    if fail_on_regression is not None and not both.any():
        err.print("[bold red]error:[/] --fail-on-regression: no point was measured in both runs (different "
                  "scenarios or sweeps?), so there is nothing to gate on", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    failing = regressions(df, fail_on_regression, gate_on) if fail_on_regression is not None else df.iloc[0:0]
    t = Table(title=f"B ({Path(run_b).name}) vs A ({Path(run_a).name}): ratio = median B / median A")
    for col in ("implementation", "stage", "B", "T", "k", "A ms", "B ms", "B/A", "verdict"):
        t.add_column(col, justify="left" if col in ("implementation", "stage", "verdict") else "right",
                     overflow="fold")
    for idx, (_, r), d in zip(df.index, df.iterrows(), display_rows(df)):
        style = VERDICT_STYLE.get(d["verdict"], "white")
        mark = " ✗" if idx in failing.index else ""
        a_ms = f"{r['median_a']:.4g}" if r["status_a"] == "ok" else (r["status_a"] or "-")
        b_ms = f"{r['median_b']:.4g}" if r["status_b"] == "ok" else (r["status_b"] or "-")
        t.add_row(escape(d["implementation"]), d["stage"], d["batch"], d["context"], d["topk"], a_ms, b_ms,
                  d["ratio"], f"[{style}]{escape(d['verdict'])}{mark}[/]")
    console.print(t)
    crossovers = df.attrs.get("crossovers") or []
    if crossovers:
        c = Table(title="crossover (DSA faster from): between the measured contexts, log-log interpolation ~")
        for col in ("DSA", "phase", "B", "k", "A", "B run"):
            c.add_column(col, overflow="fold")
        for x in crossovers:
            c.add_row(escape(x["dsa_impl"]), x["phase"], x["batch"], x["topk"], x["a"], x["b"])
        console.print(c)
    for n in df.attrs.get("notes", []):
        err.print(f"[bold yellow]note:[/] {n}", highlight=False, soft_wrap=True)
    counts = df["verdict"].value_counts()
    console.print(", ".join(f"{n} {v}" for v, n in counts.items()) or "no matching points", highlight=False)
    console.print(VERDICT_RULE, style="dim", markup=False, highlight=False, soft_wrap=True)
    if html is not None:
        try:
            path = compare_html(df, Path(html), fail_on_regression)
        except OSError as e:
            from dsa_bench.errors import describe_os_error

            err.print(f"[bold red]error:[/] --html {escape(str(html))}: cannot write the page "
                      f"({escape(describe_os_error(e))}); give a writable file path", highlight=False, soft_wrap=True)
            return EXIT_BAD_INPUT
        console.print(f"comparison page: {path}", highlight=False, soft_wrap=True)
    if fail_on_regression is not None and len(failing):
        err.print(f"[bold red]{len(failing)} point(s) regressed[/] (slower by more than {fail_on_regression:g}% "
                  "with disjoint IQRs, or broken)", highlight=False)
        return EXIT_REGRESSION
    return EXIT_OK
