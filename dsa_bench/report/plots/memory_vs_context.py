"""memory_vs_context.png: KV-cache bytes (MLA latent, plus DSA's indexer keys) and measured peak memory
vs context, one panel per batch."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dsa_bench.report.load import Run, topk_label
from dsa_bench.report.plots import _style as st
from dsa_bench.report.plots._data import cpu_tag, phase_word, pick, pick_topks, ref_suffix, sweep_contexts

NAME = "memory_vs_context"
TITLE = "Memory"
QUESTION = "Peak memory, and KV-cache bytes (MLA latent plus DSA's indexer key cache), vs context."


# --- data selection ----------------------------------------------------------------------------------

def kv_cache_by_family(total_rows: pd.DataFrame, batch: int) -> dict[str, pd.Series]:
    """family -> KV-cache bytes per context (largest over the rows) at one batch."""
    kv = total_rows[np.isfinite(total_rows["kv_cache_bytes"]) & (total_rows["kv_cache_bytes"] > 0)
                    & (total_rows["batch"] == batch)]
    out = {}
    for fam in ("dense", "dsa"):
        f = kv[kv["family"] == fam].groupby("context")["kv_cache_bytes"].max().sort_index()
        if len(f):
            out[fam] = f
    return out


def peak_rows(total_rows: pd.DataFrame) -> pd.DataFrame:
    return total_rows[(total_rows["status"] == "ok") & np.isfinite(total_rows["peak_mem_bytes"])
                      & (total_rows["peak_mem_bytes"] > 0)]


def peak_series(pb: pd.DataFrame, ks: list[int]) -> list[tuple[str, object, pd.DataFrame]]:
    """(implementation, k, rows by context) of measured peak memory; DSA series only at the k values in ks."""
    out = []
    for impl in dict.fromkeys(pb["implementation"]):
        s_impl = pb[pb["implementation"] == impl]
        dsa = s_impl["family"].iloc[0] == "dsa"
        for k, s in s_impl.groupby("topk", dropna=False, sort=True):
            if dsa and (pd.isna(k) or int(k) not in ks):
                continue
            out.append((impl, k, s.sort_values("context")))
    return out


LINESTYLES = ["-", ":", "-.", (0, (3, 1, 1, 1, 1, 1))]  # never "--": the KV-cache lines are dashed
SAME_BYTES = 0.01  # relative difference below which two series' peaks are drawn as meeting


def coinciding(series: list[tuple[str, object, pd.DataFrame]]) -> dict[int, str]:
    """index -> name of an earlier series that has the same peak bytes (within SAME_BYTES) at one or more
    shared contexts: the legend says so, since one line lies on the other there."""
    out: dict[int, str] = {}
    for i, (_, _, s) in enumerate(series):
        a = s.groupby("context")["peak_mem_bytes"].max()
        for impl, k, t in series[:i]:
            b = t.groupby("context")["peak_mem_bytes"].max()
            j = a.index.intersection(b.index)
            if len(j) and (abs(a.loc[j] / b.loc[j] - 1) < SAME_BYTES).any():
                out[i] = impl + (f" k={topk_label(k)}" if t["family"].iloc[0] == "dsa" else "")
                break
    return out


def is_576(run: Run) -> bool:
    m = (run.meta.get("scenario") or {}).get("model") or {}
    if not isinstance(m, dict):
        return False
    return m.get("kv_lora_rank", 0) + m.get("qk_rope_head_dim", 0) == 576


# --- drawing -------------------------------------------------------------------------------------------

@st.styled
def build(run: Run, notes: Optional[list[str]] = None) -> Optional[Figure]:
    r = run.results[run.results["stage"] == "total"]
    kv_any = r[np.isfinite(r["kv_cache_bytes"]) & (r["kv_cache_bytes"] > 0)]
    peak = peak_rows(r)
    if kv_any.empty and peak.empty:
        st.note(notes, "no KV-cache or peak-memory figures in results.csv")
        return None
    colors = st.impl_colors(run.results)
    ks = pick_topks(peak.loc[peak["family"] == "dsa", "topk"], len(st.DSA_COLORS))
    all_ks = sorted({int(k) for k in peak.loc[peak["family"] == "dsa", "topk"].dropna()})
    if len(ks) < len(all_ks):
        st.note(notes, f"peak memory shown for k = {', '.join(map(str, ks))} of {', '.join(map(str, all_ks))}")
    kcolor = st.topk_colors(ks)
    phases = list(dict.fromkeys(r["phase"].dropna()))
    what = f" ({phase_word(phases[0], run.results)})" if len(phases) == 1 else ""
    batches = pick(sorted({int(b) for b in r["batch"].dropna()}), 3)
    fig, axes = st.new_figure(len(batches), 1, figsize=(10.5, 4.4 * len(batches)))
    for ax, batch in zip(axes[:, 0], batches):
        fams = kv_cache_by_family(r, batch)
        if "dense" in fams:
            ax.plot(fams["dense"].index, fams["dense"].values, color="#1f5fa8", lw=2.2, ls="--",
                    label="KV cache, dense: MLA latent" + (" (576 values/token)" if is_576(run) else ""))
        if "dsa" in fams:
            ax.plot(fams["dsa"].index, fams["dsa"].values, color="#d1495b", lw=2.2, ls="--",
                    label="KV cache, DSA: latent + indexer keys")
            if "dense" in fams:
                j = fams["dsa"].index.intersection(fams["dense"].index)
                ax.fill_between(j, fams["dense"].loc[j].values, fams["dsa"].loc[j].values, color="#f4a259", alpha=0.35,
                                label="indexer key cache (DSA's extra)")
                extra = (fams["dsa"].loc[j] / fams["dense"].loc[j] - 1).median() if len(j) else math.nan
                if math.isfinite(extra):
                    ax.text(0.99, 0.03, f"indexer keys add {extra:.1%} to the KV cache", transform=ax.transAxes,
                            ha="right", va="bottom", fontsize=8.5,
                            bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="#cccccc"))
        pb = peak[peak["batch"] == batch]
        series = peak_series(pb, ks)
        same = coinciding(series)
        for i, (impl, k, s) in enumerate(series):
            dsa = s["family"].iloc[0] == "dsa"
            color = kcolor[int(k)] if dsa else colors[impl]
            kl = f" k={topk_label(k)}" if dsa else ""
            # Each series its own marker and line style, drawn thinner and hollow over the earlier ones:
            # where two series have the same bytes, both stay visible.
            ax.plot(s["context"], s["peak_mem_bytes"], marker=st.MARKERS[i % len(st.MARKERS)],
                    ms=max(3.5, 7 - 1.2 * i), mfc="white" if i else color, mew=1.3, color=color,
                    lw=max(1.0, 2.6 - 0.5 * i), ls=LINESTYLES[i % len(LINESTYLES)], zorder=3 + i,
                    label=f"peak memory, {impl}{kl}{ref_suffix(run.results, impl)}"
                          + (f" (where it meets {same[i]}: same bytes)" if i in same else ""))
        oom = r[(r["status"] == "oom") & (r["batch"] == batch)]
        for impl in dict.fromkeys(oom["implementation"]):
            o = oom[oom["implementation"] == impl]
            ax.scatter(o["context"], [1.0] * len(o), transform=ax.get_xaxis_transform(), marker="x",
                       color=colors.get(impl, "red"), s=50, clip_on=False, label=f"out of memory: {impl}")
        st.context_axis(ax, sweep_contexts(r))
        st.bytes_axis(ax)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("bytes (log scale)")
        ax.set_title(f"Memory vs context, batch {batch}{what}{cpu_tag(run)}", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if peak.empty:
        st.note(notes, "peak memory was not measured in this run (it is measured on CUDA only); "
                       "the plot shows the KV-cache bytes, which are computed from the model dimensions")
        axes[0, 0].text(0.01, 0.97, "peak memory not measured (CPU run)", transform=axes[0, 0].transAxes,
                        va="top", fontsize=8.5, color="#777777")
    st.suptitle(fig, "How much memory does each need? Peak memory and KV-cache bytes vs context")
    return fig


@st.styled
def plot(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    fig = build(run, notes)
    return st.save(fig, out_dir, NAME) if fig is not None else None
