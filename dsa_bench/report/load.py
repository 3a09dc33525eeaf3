"""Read a run directory (results.csv, samples.csv, run.json, optional cost_curves.csv) for reporting.

Only the store's files are read; nothing is imported from the measuring side (no torch, no Triton),
so a report can be made on any machine from a copied run directory.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from dsa_bench.ops import STAGE_LABELS, STAGES  # noqa: F401 - re-exported for the report modules
from dsa_bench.store import RESULT_COLUMNS, SAMPLE_COLUMNS

NUMERIC = [
    "batch", "context", "topk", "query_tokens", "q_start", "rel_err", "latency_ms", "latency_ms_q1",
    "latency_ms_q3", "latency_ms_min", "samples", "peak_mem_bytes", "workspace_bytes", "kv_cache_bytes",
    "flops", "bytes", "tflops", "gbps", "usd_per_million_tokens", "gpu_hour_usd", "sm_clock_mhz",
    "sm_clock_min_mhz", "sm_clock_max_mhz", "gpu_temp_c",
]


class RunError(ValueError):
    """A directory that is not a readable run."""


def refuse_symlink(path: Path) -> None:
    """A run's file that is a symbolic link may point at anything (/etc/passwd): not read."""
    if Path(path).is_symlink():
        raise RunError(f"{path} is a symbolic link; a run's files are read only as regular files: copy the "
                       "run's own file there")


RUN_FILES = ("results.csv", "samples.csv", "run.json")


def check_report_target(final: Path, run_dir: Path) -> Path:
    """The report folder about to be replaced whole must be a report: never the run directory (`report
    RUN --out results` names it), a folder holding it, or a folder holding a run's files."""
    f, r = Path(final).resolve(), Path(run_dir).resolve()
    if f == r or r.is_relative_to(f) or any((Path(final) / name).exists() for name in RUN_FILES):
        raise RunError(f"the report would replace {final}, which holds a run's results (results.csv, run.json); "
                       "choose a reports directory apart from the results (e.g. --out reports)")
    return Path(final)


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def safe_name(value: str, what: str) -> str:
    """A scenario name or run id read from a run directory, before it becomes part of an output path:
    one plain path component (no separators, no '..'), or RunError."""
    if not SAFE_NAME.match(value) or ".." in value:
        raise RunError(f"run.json: {what} {value[:80]!r} is not a plain name (letters, digits, '.', '_', '-'); "
                       "refusing to build an output path from it")
    return value


@dataclass
class Run:
    dir: Path
    meta: dict[str, Any]
    results: pd.DataFrame  # every row of results.csv, typed; plus the derived column is_reference
    samples: pd.DataFrame
    cost_curves: Optional[pd.DataFrame] = None
    notes: list[str] = field(default_factory=list)  # problems met while loading, shown in the report

    # --- identity ---------------------------------------------------------------------------------
    @property
    def scenario_name(self) -> str:
        sc = self.meta.get("scenario") or {}
        sc = sc if isinstance(sc, dict) else {}
        return safe_name(str(self.meta.get("scenario_name") or sc.get("name") or self.dir.resolve().parent.name),
                         "scenario_name")

    @property
    def run_id(self) -> str:
        return safe_name(str(self.meta.get("run_id") or self.dir.resolve().name), "run_id")

    @property
    def env(self) -> dict[str, Any]:
        return self.meta.get("environment") or {}

    @property
    def device(self) -> str:
        return str(self.meta.get("device") or self.env.get("device") or "unknown")

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("cuda") and bool(self.env.get("gpu_name"))

    @property
    def gpu_hour_usd(self) -> Optional[float]:
        cost = (self.meta.get("scenario") or {}).get("cost") or {}
        v = cost.get("gpu_hour_usd")
        return float(v) if v is not None else None

    # --- row selections -------------------------------------------------------------------------
    def ok(self, stage: str = "total") -> pd.DataFrame:
        """Rows measured successfully (status ok, finite positive latency) of one stage."""
        r = self.results
        m = (r["status"] == "ok") & (r["stage"] == stage) & np.isfinite(r["latency_ms"]) & (r["latency_ms"] > 0)
        return r[m]


# Fields of run.json the report reads, and the JSON types each may have (absent or null is fine).
_STR, _NUM, _DICT, _LIST = (str,), (int, float), (dict,), (list,)
META_TYPES = {
    "scenario_name": _STR, "run_id": _STR, "status": _STR, "timing_note": _STR, "scenario_file": _STR,
    "device": _STR, "start_time": _STR, "end_time": _STR, "environment": _DICT, "scenario": _DICT,
    "clocks_start": _DICT + _STR, "clocks_end": _DICT + _STR, "workers": _LIST + _DICT,
    "scenario.name": _STR, "scenario.description": _STR, "scenario.phase": _STR, "scenario.implementations": _LIST,
    "scenario.decode_tokens": _NUM, "scenario.sweep": _DICT, "scenario.measure": _DICT, "scenario.model": _DICT + _STR,
    "scenario.cost": _DICT, "scenario.cost.gpu_hour_usd": _NUM, "scenario.sweep.context": _LIST,
    "scenario.sweep.topk": _LIST, "scenario.sweep.batch": _LIST, "scenario.sweep.zip": _LIST,
    "environment.git": _DICT, "environment.argv": _LIST, "environment.gpu_name": _STR,
}


def check_meta_types(meta: dict[str, Any], path: Path) -> None:
    """RunError naming the file and the field when run.json holds a value of the wrong type (a file
    edited by hand or written by something else): better refused here than a crash deep in a plot."""
    for dotted, types in META_TYPES.items():
        node: Any = meta
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        if isinstance(node, bool) or not isinstance(node, types):
            want = " or ".join({str: "a string", int: "a number", float: "a number", dict: "an object",
                                list: "a list"}[t] for t in dict.fromkeys(types))
            raise RunError(f"{path}: field {dotted} must be {want}, got {json.dumps(node)[:60]}; the file was "
                           "edited or written by another program: restore the run's own run.json")


def read_run_json(path: Path) -> dict[str, Any]:
    refuse_symlink(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e}); restore the run's own run.json (or remove it to report "
                       "without the environment)") from None
    if not isinstance(meta, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    check_meta_types(meta, path)
    return meta


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    refuse_symlink(path)
    if not path.exists():
        return pd.DataFrame(columns=columns)
    if not path.is_file():
        raise RunError(f"{path}: not a regular file")
    head = path.open("rb").read(4096)
    if b"\x00" in head:
        raise RunError(f"{path}: binary content, not a CSV file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="skip")
    except pd.errors.EmptyDataError:
        raise RunError(f"{path}: empty file (not even a header)") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise RunError(f"{path}: not a readable CSV file ({type(e).__name__})") from None
    if "implementation" not in df.columns:
        raise RunError(f"{path}: no 'implementation' column: not a dsa-bench results file")
    for c in columns:
        if c not in df.columns:
            df[c] = ""
    return df


def _int_column(values: pd.Series, name: str, path: Path) -> pd.Series:
    """A nullable integer column, or RunError naming the file, column and first bad row (1.5, 1e30)."""
    num = pd.to_numeric(values.replace("", np.nan), errors="coerce")
    bad = num.notna() & ((num % 1 != 0) | (num.abs() > 2 ** 62))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise RunError(f"{path}: column {name}, row {i + 2}: {str(values.iloc[i])[:40]!r} is not an integer; the "
                       "file was edited or damaged: restore the run's own copy")
    return num.astype("Int64")


def _typed_results(df: pd.DataFrame, path: Path = Path("results.csv")) -> pd.DataFrame:
    df = df.copy()
    for c in NUMERIC:
        if c in ("topk", "batch", "context"):  # nullable integers: dense rows have no k
            df[c] = _int_column(df[c], c, path)
        else:
            df[c] = pd.to_numeric(df[c].replace("", np.nan), errors="coerce")
    df["baseline"] = df["baseline"].astype(str).str.lower().isin(("true", "1", "yes"))
    for c in ("implementation", "family", "backend", "phase", "stage", "status", "reason", "check",
              "dtype", "indexer_dtype", "device", "worker"):
        df[c] = df[c].astype(str)
    df["is_reference"] = [_is_reference(name, check) for name, check in zip(df["implementation"], df["check"])]
    return df


def _is_reference(name: str, check: str) -> bool:
    """A PyTorch reference (the correctness oracle): its `check` is 'reference', or the registry says so."""
    if check == "reference":
        return True
    try:
        from dsa_bench.registry import REGISTRY

        impl = REGISTRY.get(name)
        return bool(impl and impl.is_reference)
    except Exception:  # noqa: BLE001 - the registry (torch) is optional for reporting
        return False


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / "results.csv").exists():
        raise RunError(f"{run_dir}: not a run directory (no results.csv)")
    notes: list[str] = []
    meta: dict[str, Any] = {}
    if (run_dir / "run.json").exists() or (run_dir / "run.json").is_symlink():
        meta = read_run_json(run_dir / "run.json")
    else:
        notes.append("run.json is missing; environment unknown")
    results = _typed_results(_read_csv(run_dir / "results.csv", RESULT_COLUMNS), run_dir / "results.csv")
    samples = _read_csv(run_dir / "samples.csv", SAMPLE_COLUMNS)
    if len(samples):
        samples["ms"] = pd.to_numeric(samples["ms"], errors="coerce")
        for c in ("batch", "context", "topk"):
            samples[c] = _int_column(samples[c], c, run_dir / "samples.csv")
    cost = None
    cpath = run_dir / "cost_curves.csv"
    if cpath.exists():
        try:
            cost = pd.read_csv(cpath)
            missing = {"phase", "position_tokens", "usd_per_million_tokens"} - set(cost.columns)
            if missing:
                notes.append(f"cost_curves.csv lacks columns {sorted(missing)}; cost plot skipped")
                cost = None
        except Exception as e:  # noqa: BLE001
            notes.append(f"cost_curves.csv is unreadable ({e}); cost plot skipped")
    return Run(run_dir, meta, results, samples, cost, notes)


# --- helpers shared by plots, fits and the crossover ------------------------------------------------

def topk_label(k: Any) -> str:
    return "-" if k is None or pd.isna(k) else str(int(k))


def main_implementations(df: pd.DataFrame, family: str) -> list[str]:
    """Implementations of a family worth comparing: non-references when there are any, else all."""
    fam = df[df["family"] == family]
    non_ref = fam[~fam["is_reference"]]
    use = non_ref if len(non_ref) else fam
    return list(dict.fromkeys(use["implementation"]))


def dense_baselines(df: pd.DataFrame) -> list[str]:
    """Dense implementations DSA is compared against: those flagged baseline, else non-reference dense."""
    dense = df[df["family"] == "dense"]
    flagged = dense[dense["baseline"] & ~dense["is_reference"]]
    if len(flagged):
        return list(dict.fromkeys(flagged["implementation"]))
    return main_implementations(df, "dense")


def best_dense(ok_total: pd.DataFrame) -> pd.DataFrame:
    """Per (phase, batch, context): the fastest dense baseline's median latency, and which one it was."""
    names = dense_baselines(ok_total)
    d = ok_total[ok_total["implementation"].isin(names)].reset_index(drop=True)
    if d.empty:
        return pd.DataFrame(columns=["phase", "batch", "context", "dense_ms", "dense_impl", "dense_q1", "dense_q3"])
    idx = d.groupby(["phase", "batch", "context"])["latency_ms"].idxmin()
    best = d.loc[idx, ["phase", "batch", "context", "latency_ms", "implementation", "latency_ms_q1", "latency_ms_q3"]]
    return best.rename(columns={"latency_ms": "dense_ms", "implementation": "dense_impl",
                                "latency_ms_q1": "dense_q1", "latency_ms_q3": "dense_q3"}).reset_index(drop=True)
