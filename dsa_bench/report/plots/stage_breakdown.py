"""stage_breakdown.png: where a DSA call's time goes, per context: the stages' shares of the whole call.

Design: each bar is the DSA whole call at one context, on a LINEAR axis from 0 to 100 %, stacked from
the stages' shares of it (lightning indexer, top-k, sparse MLA or masked MHA) plus the remainder no
stage accounts for ("launch / host / other" = whole call minus the sum of the separately timed
stages). The absolute whole-call latency (and the best dense baseline's, for comparison) is written
above each bar. Chosen over side-by-side log-scale bars because the question is "what fraction of
the call is the indexer / top-k / attention / overhead, and how does that shift with context?":
shares answer it directly and compare across contexts whose latencies differ by orders of magnitude,
whereas on a log axis a stacked segment's height means nothing and side-by-side bars hide the
remainder; the absolute growth is what latency_vs_context shows on its log axis.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from dsa_bench.ops import STAGES
from dsa_bench.report.load import Run, best_dense, main_implementations
from dsa_bench.report.plots import _style as st
from dsa_bench.report.plots._data import cpu_tag, headline_k, phase_word, pick_keeping

NAME = "stage_breakdown"
TITLE = "DSA stage breakdown"
QUESTION = ("What share of DSA's whole call goes to the lightning indexer, the top-k selection, the sparse "
            "attention (or masked MHA, the short-prefill mode) and to launch / host / other overhead, per "
            "context? The whole call's latency, and the best dense baseline's, are written above each bar.")

OTHER = "other"  # the remainder segment's key in the share columns


# --- data selection ----------------------------------------------------------------------------------

def _ok(results: pd.DataFrame) -> pd.DataFrame:
    lat = pd.to_numeric(results["latency_ms"], errors="coerce")
    return results[(results["status"] == "ok") & np.isfinite(lat) & (lat > 0)]


def stage_shares(results: pd.DataFrame, impl: str, phase: str, batch: int, topk: int) -> pd.DataFrame:
    """Per context (the index): how one DSA implementation's whole call divides among its stages.

    Columns: `total_ms` (median whole call; NaN if not measured), `<stage>_ms` (median of each stage of
    ops.STAGES that was timed), `stage_sum_ms`, `other_ms` (total - stage sum, clipped at 0), `over_ms`
    (how much the stage sum exceeds the total, else 0), `clipped` (stage sum > total), `share_<stage>`
    and `share_other`, which sum to 1: shares of the whole call, or, where the stages sum to more than
    the whole call (clipped) or the whole call was not timed, shares of the stage sum.
    """
    r = _ok(results)
    r = r[(r["family"] == "dsa") & (r["implementation"] == impl) & (r["phase"] == phase)
          & (r["batch"] == batch) & (r["topk"] == topk)]
    stages = r[r["stage"].isin(STAGES)]
    cols = ["total_ms", "stage_sum_ms", "other_ms", "over_ms", "clipped"]
    if stages.empty:
        return pd.DataFrame(columns=cols)
    piv = stages.pivot_table(index="context", columns="stage", values="latency_ms", aggfunc="median")
    present = [s for s in STAGES if s in piv.columns]
    piv = piv[present].sort_index()
    tot = r[r["stage"] == "total"].groupby("context")["latency_ms"].median()
    out = pd.DataFrame(index=piv.index)
    out.index.name = "context"
    out["total_ms"] = tot.reindex(piv.index).astype(float)
    for s in present:
        out[f"{s}_ms"] = piv[s].astype(float)
    ssum = piv.sum(axis=1, skipna=True).astype(float)
    out["stage_sum_ms"] = ssum
    diff = out["total_ms"] - ssum
    out["other_ms"] = diff.clip(lower=0).fillna(0.0)
    out["over_ms"] = (-diff).clip(lower=0).fillna(0.0)
    out["clipped"] = (diff < 0).fillna(False).astype(bool)
    denom = np.fmax(out["total_ms"], ssum)  # fmax: the stage sum where the total is NaN
    for s in present:
        out[f"share_{s}"] = (out[f"{s}_ms"] / denom).fillna(0.0)
    out[f"share_{OTHER}"] = out["other_ms"] / denom
    return out


def stage_panels(results: pd.DataFrame,
                 n: int = st.MAX_PANELS) -> tuple[Optional[str], list[tuple[str, int, int]], list[str]]:
    """(implementation shown, its (phase, batch, k) panels, notes): the first main DSA implementation with
    stage rows; at most n panels, those at the headline k kept first."""
    r = _ok(results)
    stg = r[r["stage"].isin(STAGES) & (r["family"] == "dsa")]
    if stg.empty:
        return None, [], []
    notes = []
    impls = main_implementations(stg, "dsa")
    impl = impls[0]
    if len(impls) > 1:
        notes.append(f"stages shown for {impl}; other DSA implementations are in the tables")
    stg = stg[stg["implementation"] == impl]
    combos = sorted({(p, int(b), int(k)) for p, b, k in zip(stg["phase"], stg["batch"], stg["topk"]) if pd.notna(k)},
                    key=lambda t: (t[0], -t[1], t[2]))
    hk = headline_k(stg["topk"])
    shown = pick_keeping(combos, n, lambda c: c[2] == hk)
    if len(shown) < len(combos):
        notes.append(f"{len(shown)} of {len(combos)} (batch, k) combinations shown (k = {hk} kept)")
    return impl, shown, notes


# --- drawing -------------------------------------------------------------------------------------------

@st.styled
def build(run: Run, notes: Optional[list[str]] = None) -> Optional[Figure]:
    impl, shown, sel_notes = stage_panels(run.results)
    if impl is None or not shown:
        st.note(notes, "no DSA stage rows (indexer / top-k / sparse MLA or masked MHA) in this run: the scenario "
                       "has measure.stages: false or no DSA implementation succeeded")
        return None
    for m in sel_notes:
        st.note(notes, m)
    best = best_dense(run.ok("total"))
    nctx = max(len(stage_shares(run.results, impl, *c)) for c in shown)
    fig, axes = st.new_figure(len(shown), 1, figsize=(max(9.5, 0.95 * nctx + 5), 4.0 * len(shown)))
    clipped_any, untimed_any = [], False
    for ax, (phase, batch, k) in zip(axes[:, 0], shown):
        sh = stage_shares(run.results, impl, phase, batch, k)
        dn = best[(best["phase"] == phase) & (best["batch"] == batch)].set_index("context")["dense_ms"]
        present = [s for s in STAGES if f"share_{s}" in sh.columns]
        x = np.arange(len(sh))
        bottom = np.zeros(len(sh))
        for s in present + [OTHER]:
            v = sh[f"share_{s}"].to_numpy(dtype=float)
            color = st.OTHER_COLOR if s == OTHER else st.STAGE_COLORS[s]
            ax.bar(x, v, 0.62, bottom=bottom, facecolor=color, edgecolor=st.OTHER_EDGE if s == OTHER else "white",
                   lw=0.6, hatch="//" if s == OTHER else None)
            for i in np.nonzero(v >= 0.07)[0]:  # the share in the segment when it is tall enough to hold it
                ax.text(x[i], bottom[i] + v[i] / 2, f"{v[i]:.0%}", ha="center", va="center", fontsize=7.5,
                        color="black" if s in (OTHER, "indexer") else "white")
            bottom += v
        for i, (ctx, row) in enumerate(sh.iterrows()):
            if np.isfinite(row["total_ms"]):
                txt = st.fmt_ms(row["total_ms"]) + ("*" if row["clipped"] else "")
            else:
                txt, untimed_any = "call not\ntimed", True
            d = dn.get(ctx, np.nan)
            if np.isfinite(d):
                txt += f"\ndense {st.fmt_ms(d)}"
            ax.text(x[i], 1.01, txt, ha="center", va="bottom", fontsize=7.5)
            if row["clipped"]:
                clipped_any.append(int(ctx))
        ax.set_ylim(0, 1.16)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xticks(x)
        ax.set_xticklabels([st.fmt_tokens(c) for c in sh.index])
        ax.set_xlim(-0.6, len(sh) - 0.4)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("share of the whole DSA call")
        ax.grid(axis="x", visible=False)
        ax.set_title(f"{phase_word(phase, run.results).capitalize()}, batch {batch}, k = {k}: {impl}{cpu_tag(run)}",
                     loc="left")
        handles = [Patch(color=st.STAGE_COLORS[s], label=st.stage_label(s)) for s in present]
        handles.append(Patch(facecolor=st.OTHER_COLOR, hatch="//", edgecolor=st.OTHER_EDGE,
                             label=f"{st.OTHER_LABEL} (whole call − stages)"))
        handles.append(Patch(color="none", label="above a bar: DSA whole-call median"))
        if dn.reindex(sh.index).notna().any():
            handles.append(Patch(color="none", label="and the best dense baseline's"))
        if sh["clipped"].any():
            handles.append(Patch(color="none",
                                 label="*: stages sum to more than the whole call\n   (remainder clipped at 0)"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    st.suptitle(fig, "Where does DSA's time go? Shares of the whole call: indexer, top-k, attention, overhead")
    st.note(notes, "each bar is DSA's whole call (100 %, linear axis) split into the medians of its stages, "
                   "timed separately, and the remainder (launch / host / other = whole call minus the stages); "
                   "the whole call's median latency is written above the bar")
    if clipped_any:
        st.note(notes, "at L = " + ", ".join(st.fmt_tokens(c) for c in sorted(set(clipped_any))) + " (marked *) the "
                       "separately timed stages sum to more than the whole call: the remainder is clipped at 0 "
                       "and the bar shows shares of the stage sum")
    if untimed_any:
        st.note(notes, "where the whole call was not timed, the bar shows shares of the stage sum")
    return fig


@st.styled
def plot(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    fig = build(run, notes)
    return st.save(fig, out_dir, NAME) if fig is not None else None
