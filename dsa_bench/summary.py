"""End-of-run summary table of the whole-call rows."""
from __future__ import annotations

from rich.table import Table


def _num(v: str, fmt: str) -> str:
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return "-"


def summary_table(rows: list[dict[str, str]]) -> Table:
    t = Table(title="results (whole call; stages in results.csv)")
    for col in ("implementation", "phase", "B", "T", "k", "status", "median ms", "IQR ms", "TFLOP/s", "GB/s", "rel err"):
        t.add_column(col, justify="right" if col not in ("implementation", "phase", "status") else "left")
    style = {"ok": "green", "skipped": "dim", "oom": "yellow", "wrong": "red", "error": "red"}
    for r in rows:
        if r["stage"] != "total":
            continue
        iqr = "-" if not r["latency_ms_q1"] else f"{_num(r['latency_ms_q1'], '.3g')}-{_num(r['latency_ms_q3'], '.3g')}"
        status = r["status"] + (f" ({r['reason'][:40]})" if r["reason"] else "")
        t.add_row(r["implementation"], r["phase"], r["batch"], r["context"], r["topk"] or "-",
                  f"[{style.get(r['status'], 'white')}]{status}[/]", _num(r["latency_ms"], ".4g"), iqr,
                  _num(r["tflops"], ".3g"), _num(r["gbps"], ".4g"), _num(r["rel_err"], ".2e"))
    return t
