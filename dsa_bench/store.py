"""The results store: results/<scenario>/<run-id>/{results.csv, samples.csv, run.json}.

Rows are appended and flushed as each (point, implementation) finishes, so an interrupted run keeps
every finished point; `resume` reloads the keys already written and the runner skips them.
- Every row says how many rows its point wrote (`point_rows`): a point is done only when all of
  them are there, so a write torn between rows (or mid-line) is redone, never half-kept.
- Resume rewrites the files it trims by write-then-rename: a kill at any moment leaves either the
  old or the new file, never a truncated one.
- A run directory is locked (filelock, released when the process dies) while a process writes to
  it: a second run or resume on the same directory is refused, not interleaved. A finished run
  leaves no lock file behind.
- Run ids carry a random suffix: two runs started in the same second get different directories.
- Each append is one write of whole lines; if it fails (a full disk), the file is cut back to where it
  was, so no row is ever torn, and the error propagates (the run is marked failed; resume continues).
- The run's files are never read or written through a symbolic link (a results.csv pointing at an
  unrelated file must not be parsed, appended to or replaced).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

RESULT_COLUMNS = [
    "implementation", "family", "backend", "baseline", "phase", "stage", "batch", "context", "topk",
    "query_tokens", "q_start", "status", "reason", "check", "rel_err", "latency_ms", "latency_ms_q1",
    "latency_ms_q3", "latency_ms_min", "samples", "peak_mem_bytes", "workspace_bytes",
    "kv_cache_bytes", "flops", "bytes", "tflops", "gbps", "dtype", "indexer_dtype", "device", "timing",
    "point_rows", "usd_per_million_tokens", "gpu_hour_usd", "sm_clock_mhz", "sm_clock_min_mhz",
    "sm_clock_max_mhz", "gpu_temp_c", "throttled", "worker", "attention_mode",
    "kernel_variant", "refinement",
]
# Where runs go unless told otherwise: apart from the committed reference runs (results/, reports/,
# written only with an explicit --out) and git-ignored, so users' runs stay out of `git status`.
DEFAULT_ROOT = Path("dsa-bench-runs")
SAMPLE_COLUMNS = ["implementation", "phase", "stage", "batch", "context", "topk", "chunk", "sample", "ms"]
STATUSES = ("ok", "oom", "wrong", "error", "skipped")


def row_key(row: dict[str, Any]) -> tuple:
    """What identifies one measured (point, implementation): resume skips keys already present."""
    topk = row.get("topk")
    return (
        str(row["implementation"]), str(row["phase"]), int(row["batch"]), int(row["context"]),
        int(topk) if topk not in (None, "", "nan") else None,
    )


class RunLocked(ValueError):
    """Another process is writing to this run directory."""


class RunFileError(ValueError):
    """A run directory's file that cannot be used as it is (a symlink, not JSON, wrong field types)."""


def refuse_symlink(path: Path) -> Path:
    if Path(path).is_symlink():
        raise RunFileError(f"{path} is a symbolic link (to {os.readlink(path)}); a run's files are never read or "
                           "written through a link: replace it with the run's own file, or start a new run")
    return Path(path)


def new_run_id(device: str) -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + f"-{device}-{secrets.token_hex(2)}"


def _atomic_write_rows(path: Path, cols: list[str], rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk during resume: the old file stays, no stray copy beside it
        tmp.unlink(missing_ok=True)
        raise


def _read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV, minus a torn last line (a crash mid-write leaves one without its newline)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return list(csv.DictReader(data.decode("utf-8", errors="replace").splitlines()))


class RunStore:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.results_path = self.dir / "results.csv"
        self.samples_path = self.dir / "samples.csv"
        self.meta_path = self.dir / "run.json"
        self._lock = None

    # --- the writer's lock ----------------------------------------------------------------------
    def lock(self) -> "RunStore":
        """Take the run directory's lock, or raise RunLocked at once (no waiting)."""
        from filelock import FileLock, Timeout

        # One lock object per path in a process (is_singleton): this process may reopen its own run
        # (a resume after an in-process failure); another process is refused.
        lock = FileLock(str(self.dir / ".lock"), is_singleton=True, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLocked(f"{self.dir} is being written by another dsa-bench process (its lock "
                            f"{self.dir / '.lock'} is held); wait for it to finish") from None
        self._lock = lock
        return self

    def unlock(self) -> None:
        """Release the lock and remove its file: a finished run holds only its results. Removed while
        still held, so no other process can be holding it; a later resume creates it again."""
        if self._lock is not None:
            try:
                os.unlink(self._lock.lock_file)
            except OSError:
                pass
            self._lock.release()
            self._lock = None

    # --- creation / reopening ---------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, scenario: str, run_id: str, meta: dict[str, Any]) -> "RunStore":
        store = cls(Path(root) / scenario / run_id)
        store.dir.mkdir(parents=True, exist_ok=False)
        try:
            store.lock()
            for path, cols in ((store.results_path, RESULT_COLUMNS), (store.samples_path, SAMPLE_COLUMNS)):
                with path.open("w", newline="") as f:
                    csv.writer(f).writerow(cols)
            store.write_meta(meta)
        except BaseException:  # a run directory that could not be set up whole is not left behind
            import shutil

            store.unlock()
            shutil.rmtree(store.dir, ignore_errors=True)
            raise
        return store

    @classmethod
    def latest(cls, root: Path, scenario: str) -> "RunStore | None":
        base = Path(root) / scenario
        runs = sorted(p for p in base.iterdir() if (p / "run.json").exists()) if base.is_dir() else []
        return cls(runs[-1]) if runs else None

    def reopen(self) -> set[tuple]:
        """Prepare for resume (lock held): keep only complete points and their samples; return their
        keys. Both files are rewritten by write-then-rename."""
        for path in (self.results_path, self.samples_path, self.meta_path):
            refuse_symlink(path)
        self.lock()
        rows = _read_rows(self.results_path)
        by_key: dict[tuple, list[dict[str, str]]] = {}
        for r in rows:
            by_key.setdefault(row_key(r), []).append(r)
        done = {k for k, rs in by_key.items() if _complete(rs)}
        _atomic_write_rows(self.results_path, RESULT_COLUMNS, (r for r in rows if row_key(r) in done))
        kept = [r for r in _read_rows(self.samples_path) if row_key(r) in done]
        _atomic_write_rows(self.samples_path, SAMPLE_COLUMNS, kept)
        return done

    # --- metadata ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """run.json as a mapping, or RunFileError naming the file."""
        refuse_symlink(self.meta_path)
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise RunFileError(f"{self.meta_path}: not valid JSON ({e}); this run directory cannot be "
                               "continued: start a new run") from None
        if not isinstance(meta, dict):
            raise RunFileError(f"{self.meta_path}: expected a JSON object, got {type(meta).__name__}")
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Replace run.json atomically (never half-written). On a full disk the new copy cannot be
        written beside the old one: rewrite it in place instead, so its status can still say `failed`."""
        from dsa_bench.safe_io import dumps, write_text

        text = dumps(meta, indent=2) + "\n"
        try:
            write_text(self.meta_path, text)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT) or not self.meta_path.exists():
                raise
            with self.meta_path.open("r+", encoding="utf-8") as f:  # reuses the old file's blocks
                f.write(text)
                f.truncate()

    # --- rows ----------------------------------------------------------------------------------
    def append(self, rows: Iterable[dict[str, Any]], samples: Iterable[dict[str, Any]] = ()) -> None:
        """All rows of one point. Samples first: a crash between the two files leaves orphan samples,
        which reopen() drops."""
        rows = list(rows)
        rows = [dict(r, point_rows=len(rows)) for r in rows]
        self._append(self.samples_path, SAMPLE_COLUMNS, samples)
        self._append(self.results_path, RESULT_COLUMNS, rows)

    @staticmethod
    def _append(path: Path, cols: list[str], rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, cols, extrasaction="raise")
        w.writerows({c: _fmt(r.get(c)) for c in cols} for r in rows)
        _append_whole(refuse_symlink(path), buf.getvalue().encode("utf-8"))

    def rows(self) -> list[dict[str, str]]:
        return _read_rows(self.results_path)


def _append_whole(path: Path, data: bytes) -> None:
    """Append `data` (whole lines) and sync; on any failure cut the file back to its old length, so a
    full disk never leaves part of a row behind."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # the reader drops a torn last line; resume drops an incomplete point
            if isinstance(exc, OSError) and exc.filename is None:  # os.write names no file: say which
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise
    finally:
        os.close(fd)


def _complete(rows: list[dict[str, str]]) -> bool:
    """Whether a point's rows are all there (rows written before point_rows existed count as whole)."""
    want = rows[0].get("point_rows") or ""
    return not want.isdigit() or len(rows) >= int(want)


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
