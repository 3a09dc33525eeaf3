"""`dsa-bench run --json`: exactly one JSON document on stdout, everything else on stderr.

The document (schema: dsa_bench/schemas/run-output.schema.json) holds the run's answer, its summary
(summary.json) and, for a timing run, every results.csv row with typed values: numbers as numbers,
true/false, null for a missing value.

stdout_reserved() sends everything printed while it is active (rich consoles, print(), and writes to
file descriptor 1 by libraries) to stderr, and returns a writer for the one document.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

SCHEMA_ID = "dsa-bench/run-output/1"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "run-output.schema.json"

INT_COLUMNS = {"batch", "context", "topk", "query_tokens", "q_start", "samples", "peak_mem_bytes",
               "workspace_bytes", "kv_cache_bytes", "point_rows", "refinement"}
FLOAT_COLUMNS = {"rel_err", "latency_ms", "latency_ms_q1", "latency_ms_q3", "latency_ms_min", "flops", "bytes",
                 "tflops", "gbps", "usd_per_million_tokens", "gpu_hour_usd", "sm_clock_mhz", "sm_clock_min_mhz",
                 "sm_clock_max_mhz", "gpu_temp_c"}
BOOL_COLUMNS = {"baseline", "throttled"}


def _value(col: str, v: Any) -> Any:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "none")):
        return None
    try:
        if col in INT_COLUMNS:
            return int(float(v))
        if col in FLOAT_COLUMNS:
            f = float(v)
            return f if f == f and f not in (float("inf"), float("-inf")) else None
    except (TypeError, ValueError):
        return None
    if col in BOOL_COLUMNS:
        return str(v).strip().lower() in ("true", "1", "yes")
    return str(v)


def typed_row(row: dict[str, Any]) -> dict[str, Any]:
    """A results.csv row (strings) with typed values."""
    from dsa_bench.store import RESULT_COLUMNS

    return {c: _value(c, row.get(c)) for c in RESULT_COLUMNS}


def document(*, scenario: str, phase: str, device: str, run_dir: Optional[Path], report: Optional[Path],
             answer: list[str], summary: Optional[dict[str, Any]], rows: list[dict[str, Any]],
             failed_rows: int = 0, cost_files: Optional[list[Path]] = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID, "scenario": scenario, "phase": phase, "device": device,
        "run_dir": None if run_dir is None else str(run_dir), "report": None if report is None else str(report),
        "failed_rows": failed_rows, "answer": answer, "summary": summary,
        "cost_files": [str(p) for p in cost_files or []], "rows": [typed_row(r) for r in rows],
    }


@contextlib.contextmanager
def stdout_reserved(enabled: bool = True) -> Iterator[Callable[[dict[str, Any]], None]]:
    """While active, stdout is stderr (Python-level, and file descriptor 1 when stdout is a real file);
    the yielded function writes the one JSON document to the real stdout."""
    if not enabled:
        yield lambda doc: None
        return
    real = sys.stdout
    saved_fd = None
    try:
        fd = real.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None  # an in-memory stdout (tests): Python-level redirection is all there is
    if fd is not None:
        real.flush()
        saved_fd = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
    docs: list[dict[str, Any]] = []
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield docs.append
    finally:
        sys.stderr.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
        for doc in docs[-1:]:  # exactly one document, the last one given
            real.write(json.dumps(doc, indent=1, allow_nan=False) + "\n")
            real.flush()
