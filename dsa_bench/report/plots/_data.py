"""Data selection shared by the figures: pure functions of pandas frames, no matplotlib.

Which panels and series a figure shows (never dropping the headline k), and what phase a set of rows
measures (decode step, whole-sequence prefill, or one chunked-prefill step), for titles and guides.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from dsa_bench.report.load import Run
from dsa_bench.report.plots._style import fmt_tokens

# The model's default top-k (DeepSeek-V3.2's index_topk, the scenario default): the k every headline
# is quoted at, so a figure that cannot show every k always keeps this one.
HEADLINE_K = 2048


# --- picking what to show ----------------------------------------------------------------------------

def sweep_contexts(rows: pd.DataFrame) -> pd.Series:
    """The contexts of the sweep, for axis ticks: crossover-refinement points (the `refinement`
    column) sit a few percent apart and would pile their labels on each other."""
    if "refinement" not in rows or rows.empty:
        return rows["context"]
    sweep = rows["refinement"].astype(str).str.strip().isin(("", "nan", "<NA>", "None"))
    return rows.loc[sweep, "context"] if sweep.any() else rows["context"]


def pick(values: Sequence, n: int) -> list:
    """At most n of the values, spread evenly (always the first and the last)."""
    values = list(values)
    if len(values) <= n:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, n)).astype(int))
    return [values[i] for i in idx]


def pick_keeping(values: Sequence, n: int, keep: Callable[[object], bool]) -> list:
    """At most n of the values, in their order: every value keep() accepts first (spread evenly if they
    alone are more than n), the remaining slots filled with the others spread evenly."""
    values = list(values)
    if len(values) <= n:
        return values
    kept = [i for i, v in enumerate(values) if keep(v)]
    if len(kept) >= n:
        return [values[i] for i in pick(kept, n)]
    others = pick([i for i, v in enumerate(values) if not keep(v)], n - len(kept))
    return [values[i] for i in sorted(kept + others)]


def headline_k(topks: Iterable) -> Optional[int]:
    """The k to keep whatever else is dropped: 2048 (the model's default) when measured, else the most
    common k among the rows (ties: the one nearest 2048 on a log scale); None when there is no k."""
    ks = [int(k) for k in topks if k is not None and not pd.isna(k)]
    if not ks:
        return None
    if HEADLINE_K in ks:
        return HEADLINE_K
    counts = Counter(ks)
    return min(counts, key=lambda k: (-counts[k], abs(math.log2(k / HEADLINE_K)) if k > 0 else math.inf, k))


def pick_topks(topks: Iterable, n: int, headline: Optional[int] = None) -> list[int]:
    """At most n distinct k values (of row-level topks), sorted, spread evenly, the headline k (by
    default headline_k(topks)) always among them."""
    rows = [int(k) for k in topks if k is not None and not pd.isna(k)]
    if headline is None:
        headline = headline_k(rows)
    return pick_keeping(sorted(set(rows)), n, lambda k: k == headline)


# --- phases -----------------------------------------------------------------------------------------

def phase_kind(results: pd.DataFrame, phase: str) -> str:
    """'decode', 'prefill' (the whole sequence) or 'prefill_step' (a chunked-prefill step: fewer query
    tokens than the context, at its end) for the rows of one phase."""
    if phase != "prefill":
        return "decode"
    q = prefill_step_queries(results)
    return "prefill_step" if q is not None else "prefill"


def prefill_step_queries(results: pd.DataFrame) -> Optional[int]:
    """The query tokens of a chunked-prefill step among the prefill rows, or None if they cover the context."""
    if "query_tokens" not in results or results.empty:
        return None
    rows = results[(results["phase"] == "prefill") & results["query_tokens"].notna() & results["context"].notna()]
    steps = rows[rows["query_tokens"].astype(float) < rows["context"].astype(float)]
    return int(steps["query_tokens"].iloc[0]) if len(steps) else None


def phase_word(phase: str, results: Optional[pd.DataFrame] = None) -> str:
    """'decode step', 'prefill (whole sequence)' or 'prefill step (N queries at the end of the context)'."""
    kind = phase_kind(results if results is not None else pd.DataFrame(), phase)
    if kind == "decode":
        return "decode step"
    if kind == "prefill_step":
        q = prefill_step_queries(results)
        return f"prefill step ({fmt_tokens(q)} queries at the end of the context)"
    return "prefill (whole sequence)"


def phase_kinds(results: pd.DataFrame, phases: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(phase_kind(results, p) for p in phases))


# --- labels -----------------------------------------------------------------------------------------

def cpu_tag(run: Run) -> str:
    return "  [CPU run: not GPU timings]" if not run.is_gpu else ""


def ref_suffix(df: pd.DataFrame, impl: str) -> str:
    r = df.loc[df["implementation"] == impl, "is_reference"]
    return " (reference)" if len(r) and bool(r.iloc[0]) else ""
