"""roofline.png: achieved compute vs arithmetic intensity against the GPU's roofs, and achieved memory
bandwidth vs context, for every successful row (whole calls and DSA's stages)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dsa_bench.report import ceilings as ceil
from dsa_bench.report.load import Run
from dsa_bench.report.plots import _style as st
from dsa_bench.report.plots._data import phase_word, ref_suffix

NAME = "roofline"
TITLE = "Roofline"
QUESTION = "Achieved TFLOP/s and GB/s against the GPU's datasheet and measured ceilings."


# --- data selection ----------------------------------------------------------------------------------

def roofline_points(results: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Successful rows with FLOPs and bytes, with arithmetic intensity `ai` (FLOP/byte), `tf` (TFLOP/s)
    and `gb` (GB/s); PyTorch references dropped when there is anything else. Returns (rows, refs_dropped)."""
    r = results
    ok = r[(r["status"] == "ok") & np.isfinite(r["flops"]) & np.isfinite(r["bytes"]) & (r["bytes"] > 0)
           & np.isfinite(r["latency_ms"]) & (r["latency_ms"] > 0)].copy()
    dropped = bool((~ok["is_reference"]).any() and ok["is_reference"].any())
    if dropped:
        ok = ok[~ok["is_reference"]]
    ok["ai"] = ok["flops"] / ok["bytes"]
    ok["tf"] = ok["flops"] / (ok["latency_ms"] / 1e3) / 1e12
    ok["gb"] = ok["bytes"] / (ok["latency_ms"] / 1e3) / 1e9
    return ok, dropped


def row_label(results: pd.DataFrame, impl: str, stage: str) -> str:
    what = " (whole call)" if stage == "total" else f": {st.stage_label(stage)}"
    return f"{impl}{ref_suffix(results, impl)}{what}"


# --- drawing -------------------------------------------------------------------------------------------

@st.styled
def build(run: Run, notes: Optional[list[str]] = None) -> Optional[Figure]:
    r = run.results
    ok, dropped = roofline_points(r)
    if ok.empty:
        st.note(notes, "no successful rows with FLOPs and bytes")
        return None
    if dropped:
        st.note(notes, "PyTorch references (fp32 correctness oracles) are left out of the roofline")
    gpu = run.env.get("gpu_name")
    cs = ceil.ceilings_for(gpu, run.device)
    colors = st.impl_colors(r)
    impl_marker = {n: st.MARKERS[i % len(st.MARKERS)] for i, n in enumerate(dict.fromkeys(ok["implementation"]))}
    fig, axes = st.new_figure(1, 2, figsize=(14, 5.6), gridspec_kw=dict(width_ratios=[1.15, 1]))
    ax, ax2 = axes[0]
    for (impl, stage), g in ok.groupby(["implementation", "stage"], sort=False):
        color = colors[impl] if stage == "total" else st.STAGE_COLORS.get(stage, colors[impl])
        marker = impl_marker[impl]
        label = row_label(r, impl, stage)
        first = True
        for _, s in g.groupby(["batch", "topk"], dropna=False, sort=True):
            s = s.sort_values("context")
            sc = s[s["flops"] > 0]
            if len(sc):
                ax.plot(sc["ai"], sc["tf"], marker=marker, color=color, lw=0.8, ms=5.5, alpha=0.9,
                        label=label if first else None)
            ax2.plot(s["context"], s["gb"], marker=marker, color=color, lw=0.8, ms=5.5, alpha=0.9,
                     label=label if first else None)
            first = False
    # ceilings
    comp = ok.loc[ok["flops"] > 0, "ai"]
    ridge = [c.bf16_tflops * 1000 / c.hbm_gbps for c in cs]
    ai_lo = comp.min() / 4 if len(comp) else 0.1
    ai_hi = max(comp.max() * 4 if len(comp) else 10.0, 4 * max(ridge, default=1))
    ai_lo = min(ai_lo, 0.5 * min(ridge, default=ai_lo))
    xs = np.geomspace(ai_lo, ai_hi, 200)
    has_fp8 = (r["indexer_dtype"] == "fp8").any()
    for c in cs:
        ls = "--" if c.measured else "-"
        ax.plot(xs, np.minimum(c.bf16_tflops, xs * c.hbm_gbps / 1000), color="#444444" if not c.measured else "#888888",
                ls=ls, lw=1.4, label=f"roof: {c.label} (BF16 {c.bf16_tflops:g} TFLOP/s, {c.hbm_gbps / 1000:g} TB/s)")
        if has_fp8 and c.fp8_tflops:
            ax.plot(xs, np.minimum(c.fp8_tflops, xs * c.hbm_gbps / 1000), color="#bbbbbb", ls=ls, lw=1,
                    label=f"roof: {c.label} FP8 {c.fp8_tflops:g} TFLOP/s (fp8 indexer)")
        ax2.axhline(c.hbm_gbps, color="#444444" if not c.measured else "#888888", ls=ls, lw=1.4,
                    label=f"{c.label} memory bandwidth {c.hbm_gbps / 1000:g} TB/s")
    ax.set_xscale("log")
    st.value_axis(ax, st.fmt_tflops_tick)
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("achieved compute (log scale)")
    ax.set_title("Roofline: achieved compute vs arithmetic intensity", loc="left")
    st.context_axis(ax2, ok["context"])
    st.value_axis(ax2, st.fmt_gbps_tick)
    ax2.set_xlabel("context length L (tokens)")
    ax2.set_ylabel("achieved memory bandwidth (log scale)")
    ax2.set_title("Achieved bandwidth vs context", loc="left")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    seen, hh, ll = set(), [], []
    for h, lab in list(zip(h1, l1)) + list(zip(h2, l2)):
        if lab not in seen:
            seen.add(lab)
            hh.append(h)
            ll.append(lab)
    fig.legend(hh, ll, loc="outside lower center", ncol=2, frameon=False)
    if cs:
        sub = f"{gpu}: roofs are datasheet peaks (solid) and what this project measured (dashed)"
    elif run.is_gpu:
        sub = f"{gpu}: no known ceilings, points only"
        st.note(notes, f"no ceilings are known for {gpu}")
    else:
        sub = "CPU run: no GPU ceilings; these rates are of the interpreter on the CPU and are not meaningful"
        st.note(notes, "CPU run: the roofline has no ceilings and is not meaningful for GPU performance")
    phases = list(dict.fromkeys(ok["phase"]))
    what = f", {phase_word(phases[0], r)}" if len(phases) == 1 else ""
    st.suptitle(fig, f"How close to the GPU's limits? Achieved TFLOP/s and GB/s vs ceilings{what}\n{sub}")
    if (ok["stage"] == "topk").any():
        st.note(notes, "top-k does no floating-point work: it appears on the bandwidth panel only")
    return fig


@st.styled
def plot(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    fig = build(run, notes)
    return st.save(fig, out_dir, NAME) if fig is not None else None
