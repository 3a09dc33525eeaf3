"""Compare two runs point by point: ratio of medians and a verdict per matching point.

Points match on (implementation, phase, stage, batch, context, topk). For points measured
successfully in both runs, with ratio = median_B / median_A (below 1: B is faster):

  - faster / slower: the interquartile ranges [q1, q3] of A and B are disjoint; the side of the
    ratio decides which. Disjoint IQRs mean at least three quarters of B's samples lie beyond three
    quarters of A's: the difference is larger than the run-to-run spread.
  - same: the IQRs overlap and |ratio - 1| < NOISE (5 %).
  - unclear: the IQRs overlap but the medians differ by NOISE or more: the spread is too large to
    tell whether anything changed (take more samples).

Points not comparable get a verdict saying why: "broken" (ok in A, oom/error/wrong in B), "fixed"
(the reverse), "not measured" (neither ok, or skipped), "only in A" / "only in B".

Crossovers: each run's crossover per (DSA implementation, phase, batch, k), stated by its bracket
(the measured contexts it lies between) with the log-log interpolation beside it, side by side
(`crossover_rows`); they are not gated.

Regression gate (`--fail-on-regression PCT`): a point fails when its verdict is "slower" and
B's median is more than PCT % above A's, or when its verdict is "broken". "unclear" points never
fail the gate (they are listed, so a person can rerun them), so the gate does not flake on noise.
"""
from __future__ import annotations

from dsa_bench.ops import STAGE_ORDER

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from dsa_bench.report.load import Run, load_run, topk_label

NOISE = 0.05
KEY = ["implementation", "phase", "stage", "batch", "context", "topk"]
VERDICT_RULE = (
    f"ratio = median B / median A (below 1: B faster). faster/slower: the IQRs [q1, q3] of A and B are "
    f"disjoint. same: the IQRs overlap and the medians differ by less than {NOISE:.0%}. unclear: the IQRs "
    f"overlap but the medians differ by {NOISE:.0%} or more. broken: ok in A, oom/error/wrong in B."
)
FAILING_STATUSES = ("oom", "error", "wrong")


def verdict(med_a: float, q1_a: float, q3_a: float, med_b: float, q1_b: float, q3_b: float,
            noise: float = NOISE) -> str:
    """The verdict for B relative to A (see the module docstring)."""
    ratio = med_b / med_a
    q1_a, q3_a = (med_a, med_a) if not (np.isfinite(q1_a) and np.isfinite(q3_a)) else (q1_a, q3_a)
    q1_b, q3_b = (med_b, med_b) if not (np.isfinite(q1_b) and np.isfinite(q3_b)) else (q1_b, q3_b)
    overlap = max(q1_a, q1_b) <= min(q3_a, q3_b)
    if not overlap:
        return "faster" if ratio < 1 else "slower"
    return "same" if abs(ratio - 1) < noise else "unclear"


def _side(run: Run) -> pd.DataFrame:
    r = run.results.copy()
    r = r.drop_duplicates(subset=KEY, keep="last")
    return r[KEY + ["family", "status", "latency_ms", "latency_ms_q1", "latency_ms_q3", "samples"]]


def compare_loaded(a: Run, b: Run, noise: float = NOISE) -> pd.DataFrame:
    sa, sb = _side(a), _side(b)
    m = sa.merge(sb, on=KEY, how="outer", suffixes=("_a", "_b"), indicator=True)
    rows = []
    for _, x in m.iterrows():
        row: dict[str, Any] = {k: x[k] for k in KEY}
        row["family"] = x["family_a"] if isinstance(x["family_a"], str) else x["family_b"]
        for s in ("a", "b"):
            row[f"status_{s}"] = x[f"status_{s}"] if isinstance(x[f"status_{s}"], str) else ""
            row["median_a" if s == "a" else "median_b"] = x[f"latency_ms_{s}"]
            row[f"q1_{s}"] = x[f"latency_ms_q1_{s}"]
            row[f"q3_{s}"] = x[f"latency_ms_q3_{s}"]
        row["ratio"] = math.nan
        row["change_pct"] = math.nan
        if x["_merge"] == "left_only":
            row["verdict"] = "only in A"
        elif x["_merge"] == "right_only":
            row["verdict"] = "only in B"
        elif row["status_a"] == "ok" and row["status_b"] == "ok" and row["median_a"] > 0 and row["median_b"] > 0:
            row["ratio"] = row["median_b"] / row["median_a"]
            row["change_pct"] = (row["ratio"] - 1) * 100
            row["verdict"] = verdict(row["median_a"], row["q1_a"], row["q3_a"], row["median_b"], row["q1_b"],
                                     row["q3_b"], noise)
        elif row["status_a"] == "ok" and row["status_b"] in FAILING_STATUSES:
            row["verdict"] = "broken"
        elif row["status_b"] == "ok" and row["status_a"] in FAILING_STATUSES:
            row["verdict"] = "fixed"
        else:
            row["verdict"] = "not measured"
        rows.append(row)
    cols = KEY + ["family", "status_a", "status_b", "median_a", "q1_a", "q3_a", "median_b", "q1_b", "q3_b",
                  "ratio", "change_pct", "verdict"]
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        stage_order = STAGE_ORDER
        df = df.assign(_s=df["stage"].map(stage_order).fillna(9)).sort_values(
            ["phase", "implementation", "batch", "topk", "context", "_s"], na_position="first"
        ).drop(columns="_s").reset_index(drop=True)
    df.attrs["run_a"] = str(a.dir)
    df.attrs["run_b"] = str(b.dir)
    df.attrs["meta_a"] = _summary(a)
    df.attrs["meta_b"] = _summary(b)
    df.attrs["notes"] = _mismatch_notes(a, b)
    df.attrs["crossovers"] = crossover_rows(a, b)
    df.attrs["not_comparable"] = not_comparable(a, b)
    df.attrs["noise"] = noise
    return df


def crossover_rows(a: Run, b: Run) -> list[dict[str, str]]:
    """Each run's crossover per (DSA implementation, phase, batch, k), matched by that key."""
    from dsa_bench.report.crossover import crossover_series, short_text

    sides: dict[tuple, dict[str, str]] = {}
    for side, run in (("a", a), ("b", b)):
        for sr in crossover_series(run.ok("total")):
            key = (sr.dsa_impl, sr.phase, sr.batch, topk_label(sr.topk))
            sides.setdefault(key, {"a": "-", "b": "-"})[side] = short_text(sr.crossover)
    return [{"dsa_impl": k[0], "phase": k[1], "batch": str(k[2]), "topk": k[3], **v} for k, v in sorted(sides.items())]


# What decides the work of a point beyond its key (implementation, phase, stage, B, T, k): two runs that
# differ here time different work under the same key, so their ratio would be meaningless.
WORK_FIELDS = ("model", "phase", "decode_tokens", "prefill_tokens", "measure.dtype", "measure.indexer_dtype")


def not_comparable(a: Run, b: Run) -> str:
    """'' when matching points of A and B time the same work, else what differs (from run.json). A field
    (or model dimension) that one run.json lacks, as an older version wrote it, is not a difference."""
    sa, sb = a.meta.get("scenario") or {}, b.meta.get("scenario") or {}
    if not sa or not sb:
        return ""  # a run without its scenario cannot be checked; its load notes say so
    missing = object()

    def get(sc: Any, dotted: str) -> Any:
        for part in dotted.split("."):
            sc = sc.get(part, missing) if isinstance(sc, dict) else missing
        return sc

    diffs = []
    for field in WORK_FIELDS:
        va, vb = get(sa, field), get(sb, field)
        if va is missing or vb is missing:
            continue
        if field == "model" and isinstance(va, dict) and isinstance(vb, dict):
            dims = sorted(k for k in va.keys() & vb.keys() if k != "name" and va[k] != vb[k])
            if dims:
                diffs.append(f"model dimensions differ (A: {va.get('name', '?')}, B: {vb.get('name', '?')}: "
                             + ", ".join(f"{k} {va[k]} vs {vb[k]}" for k in dims) + ")")
        elif va != vb:
            diffs.append(f"{field} differs (A: {va}, B: {vb})")
    return "; ".join(diffs)


def compare_runs(run_a: Path, run_b: Path, noise: float = NOISE) -> pd.DataFrame:
    """Point-by-point comparison of two run directories (B relative to A)."""
    return compare_loaded(load_run(Path(run_a)), load_run(Path(run_b)), noise)


def _summary(r: Run) -> dict[str, Any]:
    env = r.env
    git = env.get("git") or {}
    return {"scenario": r.scenario_name, "run_id": r.run_id, "device": r.device,
            "gpu": env.get("gpu_name") or "-", "commit": (git.get("commit") or "-")[:12]
            + (" (dirty)" if git.get("dirty") else ""), "torch": env.get("torch") or "-",
            "triton": env.get("triton") or "-", "start": r.meta.get("start_time") or "-"}


def _mismatch_notes(a: Run, b: Run) -> list[str]:
    notes = []
    if a.scenario_name != b.scenario_name:
        notes.append(f"the runs are of different scenarios ({a.scenario_name} vs {b.scenario_name}): only points "
                     "with the same implementation, phase, batch, context and k are compared")
    if a.device != b.device:
        notes.append(f"the runs were made on different devices ({a.device} vs {b.device})")
    ga, gb = a.env.get("gpu_name"), b.env.get("gpu_name")
    if ga != gb:
        notes.append(f"different GPUs: {ga or 'none'} vs {gb or 'none'}")
    ma = (a.meta.get("scenario") or {}).get("model")
    mb = (b.meta.get("scenario") or {}).get("model")
    if ma and mb and ma != mb:
        notes.append("the model dimensions differ between the runs: matching points are not the same work")
    for side, r in (("A", a), ("B", b)):
        if not r.is_gpu:
            notes.append(f"run {side} is a CPU run: its timings are not GPU timings")
    return notes


def regressions(df: pd.DataFrame, pct: float, stages: str = "all") -> pd.DataFrame:
    """Points that fail the gate: slower by more than pct %, or broken. stages="total" gates on
    whole calls only (a noisy stage timing then cannot fail a run whose totals got faster)."""
    slow = (df["verdict"] == "slower") & (df["change_pct"] > pct)
    failing = df[slow | (df["verdict"] == "broken")]
    if stages == "total" and "stage" in failing:
        failing = failing[failing["stage"] == "total"]
    return failing


def display_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    """The comparison as strings, for the terminal table and the HTML page."""
    out = []
    for _, r in df.iterrows():
        out.append({
            "implementation": r["implementation"], "phase": r["phase"], "stage": r["stage"],
            "batch": str(int(r["batch"])) if pd.notna(r["batch"]) else "-",
            "context": str(int(r["context"])) if pd.notna(r["context"]) else "-",
            "topk": topk_label(r["topk"]),
            "a": _ms(r["median_a"], r["q1_a"], r["q3_a"], r["status_a"]),
            "b": _ms(r["median_b"], r["q1_b"], r["q3_b"], r["status_b"]),
            "ratio": f"{r['ratio']:.3f}" if pd.notna(r["ratio"]) else "-",
            "change": f"{r['change_pct']:+.1f}%" if pd.notna(r["change_pct"]) else "-",
            "verdict": r["verdict"],
        })
    return out


def _ms(med: float, q1: float, q3: float, status: Optional[str]) -> str:
    if status and status != "ok":
        return status
    if med is None or not np.isfinite(med):
        return "-"
    s = f"{med:.4g}"
    if np.isfinite(q1) and np.isfinite(q3):
        s += f" [{q1:.3g}–{q3:.3g}]"
    return s
