"""End-of-run summary table of the whole-call rows, fitted to the terminal (or log) width.

Implementation names are never cut (they wrap); when the width is short, columns are dropped by
priority (GB/s, rel err, IQR, TFLOP/s, phase) rather than squeezing every cell to an ellipsis.
"""
from __future__ import annotations

from rich.table import Table

# (column, minimum width, priority to keep: higher stays longer)
COLUMNS = [
    ("implementation", 12, 9), ("phase", 7, 2), ("B", 3, 8), ("T", 6, 8), ("k", 4, 8), ("status", 6, 9),
    ("median ms", 9, 9), ("IQR ms", 13, 4), ("TFLOP/s", 7, 5), ("GB/s", 7, 3), ("rel err", 8, 3),
]


def _num(v: str, fmt: str) -> str:
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return "-"


def _columns(width: int, name_width: int) -> list[str]:
    cols = list(COLUMNS)
    cols[0] = ("implementation", min(max(12, name_width), 24), 9)

    def need(cs):
        return sum(w + 3 for _, w, _ in cs) + 1
    while need(cols) > width:
        low = min((c for c in cols if c[2] < 9), key=lambda c: c[2], default=None)
        if low is None:
            break
        cols.remove(low)
    return [c[0] for c in cols]


def summary_table(rows: list[dict[str, str]], width: int = 80) -> Table:
    total = [r for r in rows if r["stage"] == "total"]
    names = max((len(r["implementation"]) for r in total), default=12)
    cols = _columns(width, names)
    t = Table(title="results (whole call; stages in results.csv)")
    for col in cols:
        t.add_column(col, justify="left" if col in ("implementation", "phase", "status") else "right",
                     overflow="fold", no_wrap=col not in ("implementation", "status"))
    style = {"ok": "green", "skipped": "dim", "oom": "yellow", "wrong": "red", "error": "red"}
    for r in total:
        iqr = "-" if not r["latency_ms_q1"] else f"{_num(r['latency_ms_q1'], '.3g')}-{_num(r['latency_ms_q3'], '.3g')}"
        status = r["status"] + (f" ({r['reason'][:40]})" if r["reason"] else "")
        cells = {
            "implementation": r["implementation"], "phase": r["phase"], "B": r["batch"], "T": r["context"],
            "k": r["topk"] or "-", "status": f"[{style.get(r['status'], 'white')}]{status}[/]",
            "median ms": _num(r["latency_ms"], ".4g"), "IQR ms": iqr, "TFLOP/s": _num(r["tflops"], ".3g"),
            "GB/s": _num(r["gbps"], ".4g"), "rel err": _num(r["rel_err"], ".2e"),
        }
        t.add_row(*(cells[c] for c in cols))
    return t
