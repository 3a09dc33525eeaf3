"""The results store: results/<scenario>/<run-id>/{results.csv, samples.csv, run.json}.

Rows are appended and flushed as each (point, implementation) finishes, so an interrupted run keeps
every finished point; `resume` reloads the keys already written and the runner skips them. A crash
mid-line leaves a torn last line, which opening for resume trims.
"""
from __future__ import annotations

import csv
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

RESULT_COLUMNS = [
    "implementation", "family", "backend", "baseline", "phase", "stage", "batch", "context", "topk",
    "query_tokens", "q_start", "status", "reason", "check", "rel_err", "latency_ms", "latency_ms_q1",
    "latency_ms_q3", "latency_ms_min", "samples", "peak_mem_bytes", "workspace_bytes",
    "kv_cache_bytes", "flops", "bytes", "tflops", "gbps", "dtype", "indexer_dtype", "device", "timing",
]
SAMPLE_COLUMNS = ["implementation", "phase", "stage", "batch", "context", "topk", "chunk", "sample", "ms"]
STATUSES = ("ok", "oom", "wrong", "error", "skipped")


def row_key(row: dict[str, Any]) -> tuple:
    """What identifies one measured (point, implementation): resume skips keys already present."""
    topk = row.get("topk")
    return (
        str(row["implementation"]), str(row["phase"]), int(row["batch"]), int(row["context"]),
        int(topk) if topk not in (None, "", "nan") else None,
    )


def new_run_id(device: str) -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + f"-{device}"


def _trim_torn_line(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class RunStore:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.results_path = self.dir / "results.csv"
        self.samples_path = self.dir / "samples.csv"
        self.meta_path = self.dir / "run.json"

    # --- creation / reopening ---------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, scenario: str, run_id: str, meta: dict[str, Any]) -> "RunStore":
        store = cls(Path(root) / scenario / run_id)
        store.dir.mkdir(parents=True, exist_ok=False)
        for path, cols in ((store.results_path, RESULT_COLUMNS), (store.samples_path, SAMPLE_COLUMNS)):
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(cols)
        store.write_meta(meta)
        return store

    @classmethod
    def latest(cls, root: Path, scenario: str) -> "RunStore | None":
        base = Path(root) / scenario
        runs = sorted(p for p in base.iterdir() if (p / "run.json").exists()) if base.is_dir() else []
        return cls(runs[-1]) if runs else None

    def reopen(self) -> set[tuple]:
        """Prepare for resume: trim torn lines, drop samples of unfinished points; return done keys."""
        _trim_torn_line(self.results_path)
        _trim_torn_line(self.samples_path)
        done = {row_key(r) for r in self.rows()}
        with self.samples_path.open(newline="") as f:
            kept = [r for r in csv.DictReader(f) if row_key(r) in done]
        with self.samples_path.open("w", newline="") as f:
            w = csv.DictWriter(f, SAMPLE_COLUMNS)
            w.writeheader()
            w.writerows(kept)
        return done

    # --- metadata ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text())

    def write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
        os.replace(tmp, self.meta_path)  # atomic: run.json is never half-written

    # --- rows ----------------------------------------------------------------------------------
    def append(self, rows: Iterable[dict[str, Any]], samples: Iterable[dict[str, Any]] = ()) -> None:
        # Samples first: a crash between the two files leaves orphan samples, which reopen() drops.
        self._append(self.samples_path, SAMPLE_COLUMNS, samples)
        self._append(self.results_path, RESULT_COLUMNS, rows)

    @staticmethod
    def _append(path: Path, cols: list[str], rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, cols, extrasaction="raise")
            w.writerows({c: _fmt(r.get(c)) for c in cols} for r in rows)
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> list[dict[str, str]]:
        with self.results_path.open(newline="") as f:
            return list(csv.DictReader(f))


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
