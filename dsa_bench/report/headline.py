"""The answer first: one headline per (DSA implementation, phase, batch, k) of a run.

Each headline gives DSA's speedup over the best dense baseline at the largest context both measured,
the crossover context with an interval, the indexer / top-k / sparse MLA shares of DSA's stage
time there, and attention-only $ per million tokens of dense and DSA (GPU runs).

Crossover interval: an interval is only as narrow as the evidence. The crossover lies between two
measured contexts (its bracket); where it lies inside them is a log-log interpolation. The timing
noise is measured by a bootstrap: the raw samples of every point are resampled with replacement
(BOOTSTRAP times, fixed seed), medians recomputed, and the crossover found again on each replicate
with the same rule (dsa_bench.report.crossover). If fewer than RESOLVED of the replicates agree with
the point estimate's status, the answer is "no crossover resolved": the medians are too close for
the data to say. Otherwise the stated interval is the wider of the two, the bracket and the
replicates' 5th-95th percentile (both ends, when neither holds the other): far-apart measured
contexts give "between 16K and 64K (log-log interpolation: ~26K)"; a bracket narrowed by
`--refine-crossover` gives the bootstrap interval when the noise is the larger uncertainty.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pandas as pd

from dsa_bench.crossover import fmt_bracket, fmt_context
from dsa_bench.report.crossover import Crossover, find_crossover, refinement_points, several_crossings
from dsa_bench.report.load import STAGE_LABELS, STAGES, Run, best_dense, main_implementations, topk_label

BOOTSTRAP = 200
RESOLVED = 0.9


def crossover_interval(contexts: list[float], dsa_samples: list[np.ndarray], dense_samples: list[np.ndarray],
                       seed: int = 0) -> dict[str, Any]:
    """Point crossover from medians, its bracket and a bootstrap interval (see the module docstring)."""
    med = find_crossover(contexts, [np.median(s) for s in dsa_samples], [np.median(s) for s in dense_samples])
    out = crossover_record(med)
    if med.status == "insufficient" or any(len(s) == 0 for s in dsa_samples + dense_samples):
        return out
    rng = np.random.default_rng(seed)
    agree, ctxs = 0, []
    for _ in range(BOOTSTRAP):
        a = [np.median(rng.choice(s, len(s))) for s in dsa_samples]
        d = [np.median(rng.choice(s, len(s))) for s in dense_samples]
        c = find_crossover(contexts, a, d)
        if c.status == med.status:  # a replicate may cross in a neighbouring bracket: that is noise too
            agree += 1
            if c.context is not None:
                ctxs.append(c.context)
    if agree < RESOLVED * BOOTSTRAP:
        out.update(status="unresolved", context=None, low=None, high=None, interval_from=None,
                   message=f"no crossover resolved: only {agree} of {BOOTSTRAP} resamples of the timings "
                           f"agree ({_gist(med)}); the medians are too close to call")
    elif ctxs:
        boot = (float(np.percentile(ctxs, 5)), float(np.percentile(ctxs, 95)))
        out.update(crossover_record(med, boot))
    return out


def _gist(c: Crossover) -> str:
    """What the medians alone say, in one clause."""
    if c.status == "crosses":
        return f"the medians put the crossover {fmt_bracket(c.bracket)}"
    return c.message.split(":")[0]


def crossover_record(c: Crossover, bootstrap: Optional[tuple[float, float]] = None) -> dict[str, Any]:
    """The crossover as summary.json and the answer box state it: the interval is the wider of the
    bracket and the bootstrap interval (their envelope), and the message says which it is."""
    out: dict[str, Any] = {"status": c.status, "context": c.context, "low": None, "high": None,
                           "bracket": list(c.bracket) if c.bracket else None,
                           "bootstrap": list(bootstrap) if bootstrap else None, "interval_from": None,
                           "crossings": c.crossings, "message": c.message}
    if c.status != "crosses":
        return out
    a, b = c.bracket
    lo, hi = (a, b) if bootstrap is None else (min(a, bootstrap[0]), max(b, bootstrap[1]))
    out.update(low=float(lo), high=float(hi))
    x = fmt_context(c.context)
    if (lo, hi) == (a, b):
        out["interval_from"] = "bracket"
        noise = f"; bootstrap of the samples: {fmt_context(bootstrap[0])}-{fmt_context(bootstrap[1])}" if bootstrap else ""
        msg = f"DSA is faster from a context {fmt_bracket((a, b))} (log-log interpolation: ~{x}{noise})"
    else:
        out["interval_from"] = "bootstrap" if lo <= a and hi >= b else "bracket and bootstrap"
        msg = (f"DSA is faster from context ≈ {x} on (90% interval {fmt_context(lo)}-{fmt_context(hi)}, "
               f"bootstrap of the samples; measured {fmt_bracket((a, b))})")
    out["message"] = msg + several_crossings(c.crossings)
    return out


def _samples(run: Run, impl: str, phase: str, batch: int, context: int, topk) -> np.ndarray:
    s = run.samples
    if s.empty:
        return np.array([])
    m = ((s["implementation"] == impl) & (s["phase"] == phase) & (s["stage"] == "total")
         & (s["batch"] == batch) & (s["context"] == context))
    if topk is not None and not pd.isna(topk):
        m &= s["topk"] == topk
    return s.loc[m, "ms"].dropna().to_numpy(dtype=float)


def headlines(run: Run) -> list[dict[str, Any]]:
    ok = run.ok("total")
    best = best_dense(ok)
    out: list[dict[str, Any]] = []
    if best.empty:
        return out
    price = run.gpu_hour_usd if run.is_gpu else None
    for impl in main_implementations(ok, "dsa"):
        series = ok[ok["implementation"] == impl]
        for (phase, batch, topk), g in series.groupby(["phase", "batch", "topk"], sort=True):
            m = g.merge(best, on=["phase", "batch", "context"]).sort_values("context")
            if m.empty:
                continue
            last = m.iloc[-1]
            ctx = [float(c) for c in m["context"]]
            dsa_s = [_samples(run, impl, phase, int(batch), int(c), topk) for c in m["context"]]
            dense_s = [_samples(run, d, phase, int(batch), int(c), None) for d, c in zip(m["dense_impl"], m["context"])]
            if any(len(x) == 0 for x in dsa_s + dense_s):  # no raw samples: medians only
                cross = crossover_record(find_crossover(ctx, m["latency_ms"], m["dense_ms"]))
            else:
                cross = crossover_interval(ctx, dsa_s, dense_s)
            cross["refinement_points"] = refinement_points(m)
            shares = _shares(run, impl, phase, int(batch), int(last["context"]), topk)
            tokens = int(last["query_tokens"]) * int(batch) if pd.notna(last.get("query_tokens")) else None
            out.append({
                "dsa_impl": impl, "dense_impl": str(last["dense_impl"]), "phase": phase, "batch": int(batch),
                "topk": topk_label(topk), "context": int(last["context"]),
                "dsa_ms": float(last["latency_ms"]), "dense_ms": float(last["dense_ms"]),
                "speedup": float(last["dense_ms"]) / float(last["latency_ms"]),
                "crossover": cross, "shares": shares,
                "usd_per_million_tokens": None if not (price and tokens) else {
                    "dsa": _usd(float(last["latency_ms"]), price, tokens),
                    "dense": _usd(float(last["dense_ms"]), price, tokens), "gpu_hour_usd": price},
            })
    return out


def _usd(ms: float, price: float, tokens: int) -> float:
    return ms / 1e3 / 3600.0 * price / tokens * 1e6


def _shares(run: Run, impl: str, phase: str, batch: int, context: int, topk) -> Optional[dict[str, float]]:
    r = run.results
    m = ((r["implementation"] == impl) & (r["phase"] == phase) & (r["batch"] == batch) & (r["context"] == context)
         & (r["status"] == "ok") & r["stage"].isin(STAGES))
    if topk is not None and not pd.isna(topk):
        m &= r["topk"] == topk
    st = r[m].set_index("stage")["latency_ms"]
    # indexer, top-k and one attention stage (sparse MLA, or masked MHA in the deployed short-prefill mode)
    if not {"indexer", "topk"} <= set(st.index) or len(st) != 3 or not np.all(np.isfinite(st)):
        return None
    total = float(st.sum())
    return {s: float(st[s]) / total for s in STAGES if s in st.index} if total > 0 else None


def headline_text(h: dict[str, Any], impl: Optional[str] = None) -> str:
    """One sentence for the answer (report, terminal); `impl` names the DSA implementation(s) in place
    of h['dsa_impl'] (the answer merges implementations whose sentences are otherwise the same)."""
    k = f", k = {h['topk']}" if h["topk"] != "-" else ""
    parts = [f"{h['phase']} B = {h['batch']}{k}: {impl or h['dsa_impl']} is {h['speedup']:.2f}x "
             f"{'faster than' if h['speedup'] >= 1 else 'as fast as'} {h['dense_impl']} at "
             f"{fmt_context(h['context'])} tokens ({h['dsa_ms']:.4g} vs {h['dense_ms']:.4g} ms)"]
    parts.append(f"{CALL_LATENCY_LABEL}: {h['crossover']['message']}")
    if h["shares"]:
        sh = h["shares"]
        parts.append("DSA's stages there: " + ", ".join(f"{STAGE_LABELS[s]} {v:.0%}" for s, v in sh.items()))
    if h["usd_per_million_tokens"]:
        u = h["usd_per_million_tokens"]
        parts.append(f"attention-only cost ${u['dsa']:.3g} vs ${u['dense']:.3g} per million tokens "
                     f"at ${u['gpu_hour_usd']:g}/GPU-hour")
    return "; ".join(parts) + "."


# What the measured crossover answers, said beside it (the full model's cost crossover answers another question).
CALL_LATENCY_LABEL = "latency of this attention call (measured)"


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):  # numpy scalars: JSON numbers, not strings
        return _finite(x.item())
    return x


def summary_json(run: Run) -> dict[str, Any]:
    """Machine-readable headlines (summary.json)."""
    from dsa_bench.report.fullcost import full_model_cost

    return {"scenario": run.scenario_name, "run_id": run.run_id, "device": run.device,
            "gpu": run.env.get("gpu_name"), "commit": (run.env.get("git") or {}).get("commit"),
            "headlines": [_finite(h) for h in headlines(run)], "full_model_cost": _finite(full_model_cost(run))}
