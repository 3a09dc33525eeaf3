"""The full model's cost per token, as the answer states it: per phase, where DSA becomes cheaper and
what a token costs at the curves' last position, on which GPU and why that one.

Read from the run's cost_curves.csv / cost_calibration.json (the cost model's outputs); the cost plot
draws the same curves with the same crossover rule (report/costdata.py).
"""
from __future__ import annotations

import json
from typing import Any, Optional

from dsa_bench.report.costdata import cost_crossing, cost_frame, held_below, phases, position_bracket, timing_kind
from dsa_bench.report.load import Run


def run_gpu_profile(run: Run) -> Optional[str]:
    """The cost model's profile name of the GPU that timed the run ('NVIDIA H200' -> 'H200'), or None."""
    from dsa_bench.costmodel.gpus import profile_for_device

    prof = profile_for_device(run.env.get("gpu_name")) if run.is_gpu else None
    return None if prof is None else prof.name.split()[0]


def _calibration(run: Run) -> dict[str, Any]:
    try:
        info = json.loads((run.dir / "cost_calibration.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def full_model_cost(run: Run) -> Optional[dict[str, Any]]:
    """None when the run has no cost curves; else {gpu, gpu_hour_usd, run_gpu, measured_gpu, phases: [...]}
    with, per phase, the crossover position (0: DSA cheaper everywhere, None: nowhere in range), the
    timing kind (measured / modelled / mixed), dense and DSA USD per million tokens at the last position,
    and the paper's Figure 3 crossover when priced in its setting (else None)."""
    c = cost_frame(run.cost_curves)
    if c.empty:
        return None
    info = _calibration(run)
    gpu = info.get("gpu") or (str(c["gpu"].dropna().iloc[0]) if "gpu" in c.columns and c["gpu"].notna().any() else None)
    price = info.get("gpu_hour_usd")
    if price is None and "gpu_hour_usd" in c.columns and c["gpu_hour_usd"].notna().any():
        price = float(c["gpu_hour_usd"].dropna().iloc[0])
    out: dict[str, Any] = {"gpu": gpu, "gpu_hour_usd": price, "run_gpu": run_gpu_profile(run),
                           "measured_gpu": info.get("measured_gpu"), "phases": []}
    # Priced in the paper's setting (H800, 2 USD/GPU-hour): its Figure 3 crossovers stand beside ours.
    paper = ((info.get("crossover_tokens") or {}).get("paper_piecewise_linear") or {}) \
        if isinstance(info.get("vs_paper"), list) else {}
    held = held_below(run)
    for phase in phases(c):
        p = c[c["phase"] == phase]
        models = {f: list(dict.fromkeys(p.loc[p["family"] == f, "model"])) for f in ("dense", "dsa")}
        if len(models["dense"]) != 1 or len(models["dsa"]) != 1:
            continue  # not one dense against one DSA curve: no single answer to state
        dense, dsa = (p[p["model"] == models[f][0]].sort_values("position_tokens") for f in ("dense", "dsa"))
        x0 = cost_crossing(dense, dsa)
        last = float(min(dense["position_tokens"].max(), dsa["position_tokens"].max()))
        at = {f: float(s.loc[s["position_tokens"] <= last, "usd_per_million_tokens"].iloc[-1])
              for f, s in (("dense", dense), ("dsa", dsa))}
        out["phases"].append({
            "phase": phase, "timing": timing_kind(p), "dense_model": models["dense"][0], "dsa_model": models["dsa"][0],
            "crossover_status": "never" if x0 is None else ("always" if x0 <= 0 else "crosses"),
            "crossover_tokens": x0, "position_tokens": int(last), "usd_per_million_tokens": at,
            "paper_crossover_tokens": paper.get(phase),
            # the sampled positions around the crossover, and (measured curves) the first timed context
            "bracket_tokens": list(position_bracket(c, phase, x0)) if x0 and position_bracket(c, phase, x0) else None,
            "held_below_tokens": held.get(phase),
        })
    return out if out["phases"] else None
