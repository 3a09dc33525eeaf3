"""The report's plots: one function per plot, each writing one PNG.

Every function has the signature `fn(run, out_dir, notes=None) -> Path | None`. It returns None
(and appends the reason to `notes`) when the run lacks the data for that plot, so the report can
say what is missing instead of showing an empty figure; caveats about a plot that was drawn are
appended to `notes` too.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator  # noqa: E402

from dsa_bench.report import ceilings as ceil  # noqa: E402
from dsa_bench.report.crossover import find_crossover  # noqa: E402
from dsa_bench.report.fit import fit_power_law  # noqa: E402
from dsa_bench.report.load import (  # noqa: E402
    STAGES,
    Run,
    best_dense,
    dense_baselines,
    main_implementations,
    topk_label,
)

DPI = 110
MAX_PANELS = 4
DENSE_COLORS = ["#1f5fa8", "#4fa3d9", "#555555", "#7b5ea7", "#2a9d8f"]
DSA_COLORS = ["#d1495b", "#f08a24", "#8c564b", "#e377c2", "#b8860b"]
STAGE_COLORS = {"indexer": "#f4a259", "topk": "#7b5ea7", "sparse_mla": "#5b8e7d"}
STAGE_NAMES = {"indexer": "lightning indexer", "topk": "top-k", "sparse_mla": "sparse MLA"}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

plt.rcParams.update({
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linestyle": "-", "axes.spines.top": False,
    "axes.spines.right": False, "figure.facecolor": "white",
})


# --- small helpers -------------------------------------------------------------------------------

def fmt_tokens(x: float, _pos=None) -> str:
    """1024 -> 1K, 65536 -> 64K, 1048576 -> 1M, 37 -> 37."""
    if x <= 0 or not math.isfinite(x):
        return ""
    for div, suf in ((1 << 20, "M"), (1 << 10, "K")):
        if x >= div:
            v = x / div
            return f"{v:.0f}{suf}" if abs(v - round(v)) < 0.05 else f"{v:.1f}{suf}"
    return f"{x:.0f}"


def fmt_bytes(x: float, _pos=None) -> str:
    if x <= 0 or not math.isfinite(x):
        return ""
    for div, suf in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if x >= div:
            v = x / div
            return f"{v:.3g} {suf}"
    return f"{x:.0f} B"


def fmt_ms(x: float) -> str:
    if x >= 100:
        return f"{x:.0f} ms"
    if x >= 1:
        return f"{x:.3g} ms"
    return f"{x * 1000:.3g} µs"


def fmt_ms_tick(v: float) -> str:
    if v <= 0 or not math.isfinite(v):
        return ""
    if v >= 1000:
        return f"{v / 1000:g} s"
    if v >= 1:
        return f"{v:g} ms"
    return f"{v * 1000:g} µs"


def _context_axis(ax, contexts, mark_values: bool = True) -> None:
    """Log-2 token axis: the measured contexts as ticks when few, else powers of two (1K, 2K, 4K...)."""
    ax.set_xscale("log", base=2)
    ctx = sorted({int(c) for c in contexts if pd.notna(c)})
    if mark_values and 0 < len(ctx) <= 12:
        ax.set_xticks(ctx)
    else:
        ax.xaxis.set_major_locator(LogLocator(base=2, numticks=10))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_tokens))
    if len(ctx) == 1:
        ax.set_xlim(ctx[0] / 1.6, ctx[0] * 1.6)
    elif ctx:
        ax.set_xlim(ctx[0] / 1.25, ctx[-1] * 1.25)


def _bytes_axis(ax) -> None:
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_locator(LogLocator(base=2, numticks=9))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(fmt_bytes))


def _value_axis(ax, fmt: Callable[[float], str]) -> None:
    """Log y axis labelled with fmt; minor ticks labelled too when it spans less than a decade."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    subs = (1.0, 2.0, 5.0) if hi / lo < 1e4 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt(v)))


def _colors(df: pd.DataFrame) -> dict[str, str]:
    out: dict[str, str] = {}
    for fam, palette in (("dense", DENSE_COLORS), ("dsa", DSA_COLORS)):
        names = list(dict.fromkeys(df.loc[df["family"] == fam, "implementation"]))
        for i, n in enumerate(names):
            out[n] = palette[i % len(palette)]
    for n in dict.fromkeys(df["implementation"]):
        out.setdefault(n, "#333333")
    return out


def _pick(values: list, n: int = MAX_PANELS) -> list:
    """At most n of the values, spread evenly (always the first and the last)."""
    if len(values) <= n:
        return list(values)
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, n)).astype(int))
    return [values[i] for i in idx]


def _note(notes: Optional[list[str]], msg: str) -> None:
    if notes is not None:
        notes.append(msg)


def _subplots(*args, **kw):
    """plt.subplots with constrained layout, which makes room for suptitles and outside legends."""
    kw.setdefault("layout", "constrained")
    return plt.subplots(*args, **kw)


def _save(fig, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _ref_suffix(df: pd.DataFrame, impl: str) -> str:
    r = df.loc[df["implementation"] == impl, "is_reference"]
    return " (reference)" if len(r) and bool(r.iloc[0]) else ""


def _phase_word(phase: str, df: pd.DataFrame | None = None) -> str:
    if phase != "prefill":
        return "decode step"
    if df is not None and "query_tokens" in df:
        rows = df[(df["phase"] == "prefill") & df["query_tokens"].notna()]
        steps = rows[rows["query_tokens"].astype(float) < rows["context"].astype(float)]
        if len(steps):  # scenario's prefill_tokens: one chunked-prefill step at the end of the context
            return f"prefill step ({fmt_tokens(int(steps['query_tokens'].iloc[0]))} queries at the end of the context)"
    return "prefill (whole sequence)"


def _cpu_tag(run: Run) -> str:
    return "  [CPU run: not GPU timings]" if not run.is_gpu else ""


# --- 1. latency vs context --------------------------------------------------------------------------

def latency_vs_context(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    ok = run.ok("total")
    if ok.empty or ok["context"].nunique() < 2:
        _note(notes, "needs successful whole-call rows at 2 or more context lengths")
        return None
    colors = _colors(run.results)
    panels = sorted({(p, int(b)) for p, b in zip(ok["phase"], ok["batch"])})
    shown = _pick(panels)
    if len(shown) < len(panels):
        _note(notes, f"batches shown: {', '.join(str(b) for _, b in shown)} of {len(panels)}")
    fig, axes = _subplots(len(shown), 1, figsize=(10.5, 4.8 * len(shown)), squeeze=False)
    best = best_dense(ok)
    for ax, (phase, batch) in zip(axes[:, 0], shown):
        sub = ok[(ok["phase"] == phase) & (ok["batch"] == batch)]
        for (impl, k), s, color, marker in _series(sub, colors):
            ref = bool(s["is_reference"].iloc[0])
            s = s.sort_values("context")
            x, y = s["context"].astype(float).to_numpy(), s["latency_ms"].to_numpy()
            klabel = f" k={topk_label(k)}" if s["family"].iloc[0] == "dsa" else ""
            f = fit_power_law(x, y)
            fit_txt = f": ∝ {f.label()}" if f else ""
            alpha = 0.7 if ref else 1.0
            ax.plot(x, y, marker=marker, ms=5.5, color=color, lw=1.2 if ref else 2.0, ls="--" if ref else "-",
                    alpha=alpha, label=f"{impl}{klabel}{' (reference)' if ref else ''}{fit_txt}", zorder=3)
            q1 = s["latency_ms_q1"].fillna(s["latency_ms"]).to_numpy()
            q3 = s["latency_ms_q3"].fillna(s["latency_ms"]).to_numpy()
            ax.errorbar(x, y, yerr=np.vstack([y - q1, q3 - y]).clip(0), fmt="none", ecolor=color, elinewidth=1,
                        capsize=2, alpha=alpha, zorder=2)
            unused = ~np.isin(x, f.x_used) if f else np.zeros(len(y), bool)
            ax.plot(x[unused], y[unused], ls="none", marker=marker, ms=5.5, mfc="white", mec=color, zorder=4)
        bad = run.results[(run.results["stage"] == "total") & (run.results["phase"] == phase)
                          & (run.results["batch"] == batch) & run.results["status"].isin(["oom", "error", "wrong"])]
        for (impl, status), g in bad.groupby(["implementation", "status"]):
            ax.plot(g["context"].astype(float), [0.97] * len(g), ls="none", marker="x", ms=8, mew=2,
                    color=colors.get(impl, "#cc0000"), transform=ax.get_xaxis_transform(), clip_on=False,
                    label=f"{impl}: {status} (not measured)", zorder=5)
        _guides(ax, sub, best[(best["phase"] == phase) & (best["batch"] == batch)], phase)
        _crossover_lines(ax, sub, best[(best["phase"] == phase) & (best["batch"] == batch)])
        _context_axis(ax, sub["context"])
        _value_axis(ax, fmt_ms_tick)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("median latency (log scale), bars: IQR")
        ax.set_title(f"{_phase_word(phase, run.results).capitalize()} latency vs context, batch {batch}{_cpu_tag(run)}", loc="left")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], marker="o", ls="none", mfc="white", mec="#555555"))
        labels.append("hollow: launch-overhead regime, not fitted")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title="implementation: fitted exponent ± s.e.", title_fontsize=8.5)
    fig.suptitle("Does DSA scale linearly in context where dense attention scales quadratically?",
                 x=0.01, ha="left", fontsize=12, fontweight="bold")
    return _save(fig, out_dir, "latency_vs_context")


def _guides(ax, sub: pd.DataFrame, best: pd.DataFrame, phase: str) -> None:
    """O(L^2) / O(L*k) guides (prefill) or O(L) / O(k) guides (decode), through the series' last points."""
    ctx = np.array(sorted(sub["context"].astype(float).unique()))
    if len(ctx) < 2:
        return
    xs = np.geomspace(ctx[0], ctx[-1], 50)
    if phase == "prefill":
        dense_slope, dense_lbl, dsa_slope, dsa_lbl = 2, "O(L²) guide: dense attention", 1, "O(L·k) guide: sparse attention, fixed k"
    else:
        dense_slope, dense_lbl, dsa_slope, dsa_lbl = 1, "O(L) guide: dense decode step", 0, "O(k) guide: sparse decode step, fixed k"
    # Drawn through half of the followed series' last point, so the guide stays visible beside the data.
    if not best.empty:
        b = best.sort_values("context").iloc[-1]
        ax.plot(xs, 0.5 * b["dense_ms"] * (xs / float(b["context"])) ** dense_slope, ls=(0, (6, 3)),
                color="#8a8a8a", lw=1.2, label=dense_lbl, zorder=1)
    dsa = sub[(sub["family"] == "dsa") & ~sub["is_reference"]]
    if dsa.empty:
        dsa = sub[sub["family"] == "dsa"]
    if not dsa.empty:
        k0 = dsa["topk"].dropna().min() if dsa["topk"].notna().any() else None
        s = dsa[dsa["topk"] == k0] if k0 is not None else dsa
        b = s.sort_values("context").iloc[-1]
        ax.plot(xs, 0.5 * b["latency_ms"] * (xs / float(b["context"])) ** dsa_slope, ls=(0, (1, 2)),
                color="#444444", lw=1.4, label=dsa_lbl, zorder=1)


def _crossover_lines(ax, sub: pd.DataFrame, best: pd.DataFrame) -> None:
    if best.empty:
        return
    i = 0
    for impl in main_implementations(sub, "dsa"):
        s = sub[sub["implementation"] == impl]
        for k, g in s.groupby("topk", sort=True):
            m = g.merge(best, on=["phase", "batch", "context"])
            c = find_crossover(m["context"].astype(float), m["latency_ms"], m["dense_ms"])
            if c.context is None:
                continue
            ax.axvline(c.context, color="#2b2b2b", lw=1, ls=":", zorder=1)
            ax.annotate(f"{impl} k={topk_label(k)} faster from L ≈ {c.context:,.0f}", xy=(c.context, 1.0),
                        xycoords=("data", "axes fraction"), xytext=(-4, -6 - 14 * i), textcoords="offset points",
                        ha="right", va="top", fontsize=8, color="#2b2b2b",
                        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85))
            i += 1


def _series(sub: pd.DataFrame, colors: dict[str, str]):
    """(impl, k) series of a panel with their colour and marker: each DSA k gets its own colour."""
    out = []
    dsa_i = 0
    for impl in dict.fromkeys(sub["implementation"]):
        s_impl = sub[sub["implementation"] == impl]
        fam = s_impl["family"].iloc[0]
        for j, (k, s) in enumerate(s_impl.groupby("topk", dropna=False, sort=True)):
            if fam == "dsa":
                color = DSA_COLORS[dsa_i % len(DSA_COLORS)]
                marker = MARKERS[(j + 1) % len(MARKERS)]
                dsa_i += 1
            else:
                color, marker = colors[impl], "o"
            out.append(((impl, k), s, color, marker))
    return out


# --- 2. DSA stage breakdown ---------------------------------------------------------------------------

def stage_breakdown(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    """Per context: the best dense baseline's bar next to DSA's bar split into its stages, on a log axis.

    Bar tops are medians (log scale, so contexts with very different latencies stay readable); each
    DSA bar is divided in proportion to the stages' shares of its stage sum, so the split reads as a
    share even on the log axis; the indexer's share is written above the bar.
    """
    r = run.results
    st = r[(r["status"] == "ok") & r["stage"].isin(STAGES) & (r["family"] == "dsa") & (r["latency_ms"] > 0)]
    if st.empty:
        _note(notes, "no DSA stage rows (indexer / top-k / sparse MLA) in this run: the scenario has "
                     "measure.stages: false or no DSA implementation succeeded")
        return None
    impls = main_implementations(st, "dsa")
    impl = impls[0]
    if len(impls) > 1:
        _note(notes, f"stages shown for {impl}; other DSA implementations are in the tables")
    st = st[st["implementation"] == impl]
    ok = run.ok("total")
    best = best_dense(ok)
    dsa_tot = ok[ok["implementation"] == impl]
    combos = sorted({(p, int(b), int(k)) for p, b, k in zip(st["phase"], st["batch"], st["topk"]) if pd.notna(k)},
                    key=lambda t: (t[0], -t[1], t[2]))
    shown = _pick(combos)
    if len(shown) < len(combos):
        _note(notes, f"{len(shown)} of {len(combos)} (batch, k) combinations shown")
    nctx = st["context"].nunique()
    fig, axes = _subplots(len(shown), 1, figsize=(max(9.5, 0.9 * nctx + 5), 4.2 * len(shown)), squeeze=False)
    any_dense = False
    for ax, (phase, batch, k) in zip(axes[:, 0], shown):
        s = st[(st["phase"] == phase) & (st["batch"] == batch) & (st["topk"] == k)]
        piv = s.pivot_table(index="context", columns="stage", values="latency_ms", aggfunc="median")
        piv = piv.reindex(columns=[c for c in STAGES if c in piv.columns]).sort_index()
        dn = best[(best["phase"] == phase) & (best["batch"] == batch)].set_index("context")["dense_ms"]
        tot = dsa_tot[(dsa_tot["phase"] == phase) & (dsa_tot["batch"] == batch) & (dsa_tot["topk"] == k)]
        tot = tot.set_index("context")["latency_ms"]
        sums = piv.sum(axis=1, skipna=True)
        dense_here = dn.reindex(piv.index)
        has_dense = dense_here.notna().any()
        any_dense |= has_dense
        vals = pd.concat([sums, dense_here.dropna(), tot.reindex(piv.index).dropna()])
        vals = vals[vals > 0]
        floor = float(vals.min()) / 4
        x = np.arange(len(piv))
        w = 0.38 if has_dense else 0.6
        xd = x + (w / 2 + 0.01 if has_dense else 0)
        for i, ctx in enumerate(piv.index):
            if has_dense:
                d = dense_here.loc[ctx]
                if np.isfinite(d):
                    ax.bar(x[i] - w / 2 - 0.01, d - floor, w, bottom=floor, color="#1f5fa8", alpha=0.85)
                else:
                    ax.text(x[i] - w / 2 - 0.01, floor * 1.15, "no\ndense", ha="center", va="bottom", fontsize=7,
                            color="#777777")
            total = float(sums.loc[ctx])
            if total <= 0:
                continue
            cum = 0.0
            lo = floor
            for stage in piv.columns:
                v = piv.loc[ctx, stage]
                if not np.isfinite(v) or v <= 0:
                    continue
                cum += v / total
                hi = floor * (total / floor) ** cum
                ax.bar(xd[i], hi - lo, w, bottom=lo, color=STAGE_COLORS[stage], edgecolor="white", lw=0.5)
                lo = hi
            top = total
            if ctx in tot.index and np.isfinite(tot.loc[ctx]):
                tv = float(tot.loc[ctx])
                ax.plot([xd[i] - w / 2, xd[i] + w / 2], [tv, tv], color="black", lw=2)
                top = max(top, tv)
            share = piv.loc[ctx].get("indexer", math.nan) / total
            if math.isfinite(share):
                ax.annotate(f"idx\n{share:.0%}", (xd[i], top), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7.5)
        ax.set_ylim(floor, float(vals.max()) * 4)
        _value_axis(ax, fmt_ms_tick)
        ax.set_xticks(x)
        ax.set_xticklabels([fmt_tokens(c) for c in piv.index])
        ax.set_xlim(-0.6, len(piv) - 0.4)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("median time (log scale)")
        ax.grid(axis="x", visible=False)
        ax.set_title(f"{_phase_word(phase, run.results).capitalize()}, batch {batch}, k = {k}: {impl} stages"
                     f"{' next to the best dense baseline' if has_dense else ' (no dense baseline measured)'}"
                     f"{_cpu_tag(run)}", loc="left")
        handles = ([Patch(color="#1f5fa8", alpha=0.85, label="best dense baseline (whole call)")] if has_dense else [])
        handles += [Patch(color=STAGE_COLORS[c], label=f"DSA: {STAGE_NAMES[c]}") for c in piv.columns]
        handles.append(Line2D([], [], color="black", lw=2, label="DSA whole call (stages fused)"))
        handles.append(Patch(color="none", label="idx N%: indexer's share of DSA's stage time"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle("Where does DSA's time go? Indexer, top-k and sparse attention, stacked, next to dense",
                 x=0.01, ha="left", fontsize=12, fontweight="bold")
    _note(notes, "bar tops are medians on a log axis; each DSA bar is split in proportion to the stages' shares "
                 "of their sum, and 'idx' is the lightning indexer's share; the black tick is the whole fused call, "
                 "timed separately from the stages")
    return _save(fig, out_dir, "stage_breakdown")


# --- 3. memory ------------------------------------------------------------------------------------------

def memory_vs_context(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    r = run.results[run.results["stage"] == "total"]
    kv = r[np.isfinite(r["kv_cache_bytes"]) & (r["kv_cache_bytes"] > 0)]
    peak = r[(r["status"] == "ok") & np.isfinite(r["peak_mem_bytes"]) & (r["peak_mem_bytes"] > 0)]
    if kv.empty and peak.empty:
        _note(notes, "no KV-cache or peak-memory figures in results.csv")
        return None
    colors = _colors(run.results)
    batches = _pick(sorted({int(b) for b in r["batch"].dropna()}), 3)
    fig, axes = _subplots(len(batches), 1, figsize=(10.5, 4.4 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        kb = kv[kv["batch"] == batch]
        fams = {}
        for fam in ("dense", "dsa"):
            f = kb[kb["family"] == fam].groupby("context")["kv_cache_bytes"].max().sort_index()
            if len(f):
                fams[fam] = f
        if "dense" in fams:
            ax.plot(fams["dense"].index, fams["dense"].values, color="#1f5fa8", lw=2.2, ls="--",
                    label="KV cache, dense: MLA latent (576 values/token)" if _is_576(run) else "KV cache, dense: MLA latent")
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
        for (impl, k), s, color, marker in _series(pb, colors):
            s = s.sort_values("context")
            kl = f" k={topk_label(k)}" if s["family"].iloc[0] == "dsa" else ""
            ax.plot(s["context"], s["peak_mem_bytes"], marker=marker, ms=4.5, color=color, lw=1.5,
                    label=f"peak memory, {impl}{kl}{_ref_suffix(run.results, impl)}")
        oom = r[(r["status"] == "oom") & (r["batch"] == batch)]
        if len(oom):
            for impl in dict.fromkeys(oom["implementation"]):
                o = oom[oom["implementation"] == impl]
                ax.scatter(o["context"], [1.0] * len(o), transform=ax.get_xaxis_transform(), marker="x",
                           color=colors.get(impl, "red"), s=50, clip_on=False, label=f"out of memory: {impl}")
        _context_axis(ax, r["context"])
        _bytes_axis(ax)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("bytes (log scale)")
        ax.set_title(f"Memory vs context, batch {batch}{_cpu_tag(run)}", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if peak.empty:
        _note(notes, "peak memory was not measured in this run (it is measured on CUDA only); "
                     "the plot shows the KV-cache bytes, which are computed from the model dimensions")
        axes[0, 0].text(0.01, 0.97, "peak memory not measured (CPU run)", transform=axes[0, 0].transAxes,
                        va="top", fontsize=8.5, color="#777777")
    fig.suptitle("How much memory does each need? Peak memory and KV-cache bytes vs context",
                 x=0.01, ha="left", fontsize=12, fontweight="bold")
    return _save(fig, out_dir, "memory_vs_context")


def _is_576(run: Run) -> bool:
    m = (run.meta.get("scenario") or {}).get("model") or {}
    return m.get("kv_lora_rank", 0) + m.get("qk_rope_head_dim", 0) == 576


# --- 4. roofline ----------------------------------------------------------------------------------------

def roofline(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    r = run.results
    ok = r[(r["status"] == "ok") & np.isfinite(r["flops"]) & np.isfinite(r["bytes"]) & (r["bytes"] > 0)
           & np.isfinite(r["latency_ms"]) & (r["latency_ms"] > 0)].copy()
    if ok.empty:
        _note(notes, "no successful rows with FLOPs and bytes")
        return None
    if (~ok["is_reference"]).any() and ok["is_reference"].any():
        ok = ok[~ok["is_reference"]]
        _note(notes, "PyTorch references (fp32 correctness oracles) are left out of the roofline")
    ok["ai"] = ok["flops"] / ok["bytes"]
    ok["tf"] = ok["flops"] / (ok["latency_ms"] / 1e3) / 1e12
    ok["gb"] = ok["bytes"] / (ok["latency_ms"] / 1e3) / 1e9
    gpu = run.env.get("gpu_name")
    cs = ceil.ceilings_for(gpu, run.device)
    colors = _colors(r)
    impl_marker = {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(dict.fromkeys(ok["implementation"]))}
    fig, (ax, ax2) = _subplots(1, 2, figsize=(14, 5.6), gridspec_kw=dict(width_ratios=[1.15, 1]))
    for (impl, stage), g in ok.groupby(["implementation", "stage"], sort=False):
        color = colors[impl] if stage == "total" else STAGE_COLORS.get(stage, colors[impl])
        marker = impl_marker[impl]
        label = f"{impl}{_ref_suffix(r, impl)}" + (" (whole call)" if stage == "total" else f": {STAGE_NAMES.get(stage, stage)}")
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
    ai_lo = comp.min() / 4 if len(comp) else 0.1
    ai_hi = max(comp.max() * 4 if len(comp) else 10.0, 4 * max((c.bf16_tflops * 1000 / c.hbm_gbps for c in cs), default=1))
    ai_lo = min(ai_lo, 0.5 * min((c.bf16_tflops * 1000 / c.hbm_gbps for c in cs), default=ai_lo))
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
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title("Roofline: achieved compute vs arithmetic intensity", loc="left")
    _context_axis(ax2, ok["context"])
    ax2.set_yscale("log")
    ax2.set_xlabel("context length L (tokens)")
    ax2.set_ylabel("achieved memory bandwidth (GB/s)")
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
        _note(notes, f"no ceilings are known for {gpu}")
    else:
        sub = "CPU run: no GPU ceilings; these rates are of the interpreter on the CPU and are not meaningful"
        _note(notes, "CPU run: the roofline has no ceilings and is not meaningful for GPU performance")
    fig.suptitle(f"How close to the GPU's limits? Achieved TFLOP/s and GB/s vs ceilings\n{sub}",
                 x=0.01, ha="left", fontsize=12, fontweight="bold")
    if (ok["stage"] == "topk").any():
        _note(notes, "top-k does no floating-point work: it appears on the bandwidth panel only")
    return _save(fig, out_dir, "roofline")


# --- 5. speedup heatmap ---------------------------------------------------------------------------------

def speedup_heatmap(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    ok = run.ok("total")
    best = best_dense(ok)
    dsa_impls = main_implementations(ok, "dsa")
    if best.empty or not dsa_impls:
        _note(notes, "needs successful whole-call rows of both a DSA implementation and a dense baseline "
                     f"(dense baselines here: {', '.join(dense_baselines(run.results)) or 'none'})")
        return None
    panels = []
    for impl in dsa_impls:
        s = ok[ok["implementation"] == impl].merge(best, on=["phase", "batch", "context"])
        if s.empty:
            continue
        s = s.assign(speedup=s["dense_ms"] / s["latency_ms"])
        for (phase, batch), g in s.groupby(["phase", "batch"], sort=True):
            panels.append((impl, phase, int(batch), g))
    if not panels:
        _note(notes, "DSA and the dense baselines share no (batch, context) point")
        return None
    shown = _pick(panels, 6)
    if len(shown) < len(panels):
        _note(notes, f"{len(shown)} of {len(panels)} (implementation, batch) panels shown")
    all_sp = np.concatenate([p[3]["speedup"].to_numpy() for p in shown])
    lim = max(abs(np.log2(all_sp[np.isfinite(all_sp)])).max(), 0.25)
    norm = mcolors.TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    cmap = plt.get_cmap("RdBu")
    nctx_max = max(p[3]["context"].nunique() for p in shown)
    ncols = min(2 if nctx_max <= 5 else 1, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    nctx = max(p[3]["context"].nunique() for p in shown)
    nk = max(p[3]["topk"].nunique() for p in shown)
    fig, axes = _subplots(nrows, ncols, squeeze=False, layout="constrained",
                             figsize=(max(6.5, 1.0 * nctx + 4.0) * ncols, max(3.2, 0.6 * nk + 2.4) * nrows))
    im = None
    for ax, (impl, phase, batch, g) in zip(axes.flat, shown):
        piv = g.pivot_table(index="topk", columns="context", values="speedup", aggfunc="median").sort_index()
        piv = piv.reindex(columns=sorted(piv.columns))
        data = np.log2(piv.to_numpy(dtype=float))
        im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto")
        ax.set_facecolor("#dddddd")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = piv.iat[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2g}×", ha="center", va="center", fontsize=9,
                            color="white" if abs(data[i, j]) > 0.6 * lim else "black")
                else:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#555555")
        ax.set_xticks(range(len(piv.columns)))
        ax.set_xticklabels([fmt_tokens(c) for c in piv.columns])
        ylabels = []
        for k in piv.index:
            gg = g[g["topk"] == k]
            c = find_crossover(gg["context"].astype(float), gg["latency_ms"], gg["dense_ms"])
            cross = (f"wins from ≈{c.context:,.0f}" if c.context is not None else
                     {"always_faster": "wins everywhere", "never_faster": "never wins"}.get(c.status, ""))
            ylabels.append(f"k={topk_label(k)}\n{cross}")
        ax.set_yticks(range(len(piv.index)))
        ax.set_yticklabels(ylabels, fontsize=8.5)
        ax.grid(False)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("top-k")
        ax.set_title(f"{impl}, {phase}, batch {batch}", loc="left")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.95, pad=0.02, aspect=25)
    ticks = [t for t in (-4, -3, -2, -1, 0, 1, 2, 3, 4) if -lim <= t <= lim] or [0]
    cb.set_ticks(ticks)
    cb.set_ticklabels([f"{2.0 ** t:g}×" for t in ticks])
    cb.set_label("speedup = best dense / DSA\n(>1: DSA faster, blue)")
    fig.suptitle(f"Where does DSA win? Speedup over the best dense baseline{_cpu_tag(run)}",
                 x=0.0, ha="left", fontsize=12, fontweight="bold")
    return _save(fig, out_dir, "speedup_heatmap")


# --- 6. cost -------------------------------------------------------------------------------------------

def cost_vs_position(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    """Cost per million tokens vs token position, prefill and decode panels, from the run's cost_curves.csv.

    Linear axes, as in DeepSeek-V3.2's Figure 3: the cost of a token grows about linearly with its
    position for dense attention and flattens for DSA. Where a dense and a DSA curve cross, the
    position is marked (linear interpolation between neighbouring positions).
    """
    c = run.cost_curves
    if c is None or c.empty:
        _note(notes, "this run has no cost data (cost_curves.csv, written by the cost model) in its directory")
        return None
    c = c.copy()
    c["position_tokens"] = pd.to_numeric(c["position_tokens"], errors="coerce")
    c["usd_per_million_tokens"] = pd.to_numeric(c["usd_per_million_tokens"], errors="coerce")
    c = c[np.isfinite(c["position_tokens"]) & np.isfinite(c["usd_per_million_tokens"]) & (c["position_tokens"] >= 0)]
    if c.empty:
        _note(notes, "cost_curves.csv has no numeric cost values")
        return None
    if "model" not in c.columns:
        c["model"] = c["family"] if "family" in c.columns else "cost"
    c["model"] = c["model"].astype(str)
    if "family" not in c.columns:
        c["family"] = ["dsa" if ("dsa" in m.lower() or "sparse" in m.lower()) else "dense" for m in c["model"]]
    phases = [p for p in ("prefill", "decode") if p in set(c["phase"])] + \
        sorted(set(c["phase"]) - {"prefill", "decode"})
    fig, axes = _subplots(1, len(phases), figsize=(6.4 * len(phases), 4.8), squeeze=False)
    palette: dict[str, str] = {}
    for fam, pal in (("dense", DENSE_COLORS), ("dsa", DSA_COLORS)):
        for i, m in enumerate(dict.fromkeys(c.loc[c["family"] == fam, "model"])):
            palette[m] = pal[i % len(pal)]
    for ax, phase in zip(axes[0], phases):
        p = c[c["phase"] == phase]
        curves = {}
        for m in dict.fromkeys(p["model"]):
            s = p[p["model"] == m].sort_values("position_tokens")
            curves[m] = s
            ax.plot(s["position_tokens"], s["usd_per_million_tokens"], color=palette.get(m, "#333333"), lw=2.2,
                    marker="o" if len(s) <= 12 else None, ms=4, label=m)
        dense_m = [m for m in curves if curves[m]["family"].iloc[0] == "dense"]
        dsa_m = [m for m in curves if curves[m]["family"].iloc[0] == "dsa"]
        if len(dense_m) == 1 and len(dsa_m) == 1:
            x0 = _curve_crossing(curves[dense_m[0]], curves[dsa_m[0]])
            if x0 is not None:
                ax.axvline(x0, color="#2b2b2b", lw=1, ls=":")
                ax.annotate(f"DSA cheaper beyond\n≈ {x0:,.0f} tokens", xy=(x0, 0.97), xycoords=("data", "axes fraction"),
                            xytext=(5, 0), textcoords="offset points", va="top", fontsize=8.5)
        xmax = float(p["position_tokens"].max())
        step = 2 ** max(0, math.ceil(math.log2(max(xmax, 1) / 8)))
        ax.xaxis.set_major_locator(plt.MultipleLocator(step))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: "0" if v == 0 else fmt_tokens(v)))
        ax.set_xlim(0, xmax * 1.02)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"${v:.3g}" if v < 1000 else f"${v:,.0f}"))
        ax.set_xlabel("token position in the sequence (tokens)")
        ax.set_ylabel("USD per million tokens")
        what = {"prefill": "prefill: cost of a prompt token", "decode": "decode: cost of a generated token"}
        ax.set_title(what.get(phase, phase), loc="left")
        ax.legend(loc="center right", frameon=True, framealpha=0.9)
    gpu = str(c["gpu"].dropna().iloc[0]) if "gpu" in c.columns and c["gpu"].notna().any() else None
    price = (float(pd.to_numeric(c["gpu_hour_usd"], errors="coerce").dropna().iloc[0])
             if "gpu_hour_usd" in c.columns and pd.to_numeric(c["gpu_hour_usd"], errors="coerce").notna().any()
             else run.gpu_hour_usd)
    where = " ".join(x for x in (gpu or "", f"at ${price:g}/GPU-hour" if price else "") if x)
    fig.suptitle("What does a million tokens cost at each position in the sequence?" + (f"  ({where})" if where else ""),
                 x=0.01, ha="left", fontsize=12, fontweight="bold")
    _note(notes, "from the cost model's cost_curves.csv in the run directory (whole model, all layers), not from "
                 "this run's attention timings alone")
    return _save(fig, out_dir, "cost_vs_position")


def _curve_crossing(dense: pd.DataFrame, dsa: pd.DataFrame) -> Optional[float]:
    """First position from which DSA's cost stays at or below dense's (linear interpolation)."""
    x = np.union1d(dense["position_tokens"], dsa["position_tokens"]).astype(float)
    d = (np.interp(x, dsa["position_tokens"], dsa["usd_per_million_tokens"])
         - np.interp(x, dense["position_tokens"], dense["usd_per_million_tokens"]))
    above = np.nonzero(d > 0)[0]
    if len(above) == 0 or above[-1] == len(d) - 1:
        return None  # DSA never costs more, or still costs more at the last position
    j = int(above[-1])
    return float(x[j] + (x[j + 1] - x[j]) * d[j] / (d[j] - d[j + 1]))


# name -> (function, section title, what it answers)
PLOTS: dict[str, tuple[Callable, str, str]] = {
    "latency_vs_context": (latency_vs_context, "Latency vs context",
                           "Does DSA scale linearly where dense attention scales quadratically? Exponents "
                           "fitted in log-log; grey guides show the ideal slopes; the crossover is computed."),
    "stage_breakdown": (stage_breakdown, "DSA stage breakdown",
                        "How much of DSA's time goes to the lightning indexer, the top-k and the sparse "
                        "attention, next to the best dense baseline?"),
    "memory_vs_context": (memory_vs_context, "Memory",
                          "Peak memory, and KV-cache bytes (MLA latent plus DSA's indexer key cache), vs context."),
    "roofline": (roofline, "Roofline",
                 "Achieved TFLOP/s and GB/s against the GPU's datasheet and measured ceilings."),
    "speedup_heatmap": (speedup_heatmap, "Speedup heatmap",
                        "Speedup of DSA over the best dense baseline, over context x top-k (one panel per batch)."),
    "cost_vs_position": (cost_vs_position, "Cost per million tokens",
                         "Cost per million tokens vs position in the sequence, prefill and decode."),
}
