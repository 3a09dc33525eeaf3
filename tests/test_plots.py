"""The report's figures (dsa_bench/report/plots/): the data selection behind them, their titles per
phase, the headline k, one crossover rule, and no matplotlib global state."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from dsa_bench.costmodel.model import crossing_position
from dsa_bench.ops import STAGES
from dsa_bench.crossover import fmt_bracket, fmt_context
from dsa_bench.report import crossover
from dsa_bench.report.load import load_run
from dsa_bench.report.plots import (
    PLOTS,
    cost_vs_position,
    latency_vs_context,
    speedup_heatmap,
    stage_breakdown,
)
from dsa_bench.report.plots._data import HEADLINE_K, headline_k, phase_kind, pick_keeping, pick_topks
from dsa_bench.report.plots._style import STAGE_COLORS

REPO = Path(__file__).resolve().parent.parent
CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]


# --- hand-made runs --------------------------------------------------------------------------------

def _row(impl, family, phase, stage, batch, context, topk, ms, query_tokens=None, **kw) -> dict:
    return {"implementation": impl, "family": family, "backend": "triton", "baseline": family == "dense",
            "phase": phase, "stage": stage, "batch": batch, "context": context, "topk": topk,
            "query_tokens": query_tokens if query_tokens is not None else (context if phase == "prefill" else 1),
            "q_start": 0, "status": "ok", "check": "passed", "latency_ms": ms, "latency_ms_q1": ms * 0.99,
            "latency_ms_q3": ms * 1.01, "samples": 10, "dtype": "bf16", "indexer_dtype": "bf16",
            "device": "cuda", "flops": 1e9 * context, "bytes": 1e6 * context,
            "kv_cache_bytes": 1152 * context * (1.2 if family == "dsa" else 1.0), **kw}


def sweep_rows(phase="prefill", batches=(1,), topks=(2048,), contexts=CONTEXTS, query_tokens=None) -> list[dict]:
    """Dense grows as L^2 (whole prefill) or L (a step); DSA as 2 ms + 2e-6 k L (a step: 0.5 ms + ...);
    DSA's stages account for 90 % of its whole call."""
    step = phase == "decode" or query_tokens is not None
    rows = []
    for b in batches:
        for L in contexts:
            q = query_tokens if phase == "prefill" else None
            dense = b * (2e-4 * L if step else 2e-7 * L * L)
            rows.append(_row("dense-triton", "dense", phase, "total", b, L, None, dense, q))
            for k in topks:
                tot = b * ((0.5 if step else 2.0) + 2e-6 * k * L * (0.01 if step else 1))
                rows.append(_row("dsa-triton", "dsa", phase, "total", b, L, k, tot, q))
                for stage, share in (("indexer", 0.3), ("topk", 0.1), ("sparse_mla", 0.5)):
                    rows.append(_row("dsa-triton", "dsa", phase, stage, b, L, k, share * tot, q))
    return rows


def make_run(path: Path, rows: list[dict], cost: pd.DataFrame | None = None, gpu: bool = True):
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    meta = {"run_id": "r1", "scenario_name": "t", "device": "cuda" if gpu else "cpu",
            "environment": {"gpu_name": "NVIDIA H200"} if gpu else {}}
    (path / "run.json").write_text(json.dumps(meta))
    if cost is not None:
        cost.to_csv(path / "cost_curves.csv", index=False)
    return load_run(path)


def _titles(fig) -> list[str]:
    return [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]


# --- stage shares ----------------------------------------------------------------------------------

def _stage_frame() -> pd.DataFrame:
    rows = [
        # 1024: whole call 10 ms, stages 2 + 1 + 4 = 7 ms -> 3 ms of launch / host / other
        ("total", 1024, 10.0), ("indexer", 1024, 2.0), ("topk", 1024, 1.0), ("sparse_mla", 1024, 4.0),
        # 2048: the stages (3 + 1 + 2 = 6 ms) sum to more than the whole call (5 ms): clipped
        ("total", 2048, 5.0), ("indexer", 2048, 3.0), ("topk", 2048, 1.0), ("sparse_mla", 2048, 2.0),
        # 4096: the short-prefill mode, masked MHA in place of sparse MLA
        ("total", 4096, 8.0), ("indexer", 4096, 2.0), ("topk", 4096, 1.0), ("masked_mha", 4096, 3.0),
    ]
    df = pd.DataFrame([_row("dsa-triton", "dsa", "prefill", s, 1, L, 2048, ms) for s, L, ms in rows])
    noise = pd.DataFrame([_row("dsa-triton", "dsa", "prefill", "indexer", 1, 1024, 512, 99.0),  # another k
                          _row("dense-triton", "dense", "prefill", "total", 1, 1024, None, 42.0),
                          {**_row("dsa-triton", "dsa", "prefill", "topk", 1, 1024, 2048, 50.0), "status": "error"}])
    return pd.concat([df, noise], ignore_index=True)


def test_stage_shares_and_remainder_sum_to_one():
    sh = stage_breakdown.stage_shares(_stage_frame(), "dsa-triton", "prefill", 1, 2048)
    assert list(sh.index) == [1024, 2048, 4096]
    share_cols = [c for c in sh.columns if c.startswith("share_")]
    assert set(share_cols) == {"share_indexer", "share_topk", "share_sparse_mla", "share_masked_mha", "share_other"}
    assert np.allclose(sh[share_cols].sum(axis=1), 1.0)
    a = sh.loc[1024]
    assert a["total_ms"] == 10 and a["stage_sum_ms"] == 7 and a["other_ms"] == pytest.approx(3)
    got = (a["share_indexer"], a["share_topk"], a["share_sparse_mla"], a["share_other"])
    assert got == pytest.approx((0.2, 0.1, 0.4, 0.3))
    assert not a["clipped"] and a["share_masked_mha"] == 0
    b = sh.loc[2048]  # remainder clipped at 0; shares of the 6 ms stage sum
    assert b["clipped"] and b["other_ms"] == 0 and b["share_other"] == 0 and b["over_ms"] == pytest.approx(1)
    assert (b["share_indexer"], b["share_topk"], b["share_sparse_mla"]) == pytest.approx((0.5, 1 / 6, 1 / 3))
    c = sh.loc[4096]
    assert c["share_masked_mha"] == pytest.approx(3 / 8) and c["share_sparse_mla"] == 0
    assert c["share_other"] == pytest.approx(2 / 8)


def test_stage_shares_without_a_whole_call_use_the_stage_sum():
    df = _stage_frame()
    df = df[~((df["stage"] == "total") & (df["context"] == 1024))]
    a = stage_breakdown.stage_shares(df, "dsa-triton", "prefill", 1, 2048).loc[1024]
    assert np.isnan(a["total_ms"]) and a["share_other"] == 0
    assert (a["share_indexer"], a["share_topk"], a["share_sparse_mla"]) == pytest.approx((2 / 7, 1 / 7, 4 / 7))


def test_stage_breakdown_figure_is_linear_shares_with_a_note_when_clipped(tmp_path):
    run = make_run(tmp_path, _stage_frame().to_dict("records"))
    notes: list[str] = []
    fig = stage_breakdown.build(run, notes)
    ax = next(a for a in fig.axes if "k = 2048" in a.get_title(loc="left"))
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    labels = ax.get_legend().get_texts()
    text = " ".join(t.get_text() for t in labels)
    for want in ("lightning indexer", "top-k selection", "sparse MLA", "masked MHA", "launch / host / other"):
        assert want in text
    assert any("clipped at 0" in n and "L = 2K" in n for n in notes), notes
    above = [t.get_text() for t in ax.texts]
    assert any(t.startswith("10 ms") for t in above) and any(t.startswith("5 ms*") for t in above)
    assert set(STAGES) <= set(STAGE_COLORS) and len(set(STAGE_COLORS.values())) == len(STAGE_COLORS)


# --- titles per phase ------------------------------------------------------------------------------

@pytest.mark.parametrize("phase, query_tokens, kind, word, want, unwanted", [
    ("decode", None, "decode", "decode step",
     ["Decode step latency", "decode step stay nearly flat", "O(L) guide: dense decode step"],
     ["prefill", "Prefill", "quadratic"]),
    ("prefill", None, "prefill", "prefill (whole sequence)",
     ["Prefill (whole sequence) latency", "scales quadratically", "O(L²) guide"], ["decode", "step"]),
    ("prefill", 512, "prefill_step", "prefill step (512 queries at the end of the context)",
     ["Prefill step (512 queries at the end of the context) latency", "chunked-prefill step",
      "O(L) guide: dense prefill step"], ["decode", "whole sequence", "quadratic"]),
])
def test_titles_fit_the_phase(tmp_path, phase, query_tokens, kind, word, want, unwanted):
    contexts = [2048, 4096, 8192, 16384] if query_tokens else CONTEXTS
    run = make_run(tmp_path, sweep_rows(phase, query_tokens=query_tokens, contexts=contexts))
    assert phase_kind(run.results, phase) == kind
    fig = latency_vs_context.build(run, [])
    titles = " | ".join([fig.get_suptitle()] + _titles(fig))
    legend = " | ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    for w in want:
        assert w in titles + legend, (w, titles, legend)
    for u in unwanted:
        assert u not in titles, (u, titles)
    # the other per-phase figures carry the same phase words
    for mod in (stage_breakdown, speedup_heatmap):
        got = " ".join(_titles(mod.build(run, [])))
        assert word in got.lower(), (mod.NAME, got)


# --- the headline k --------------------------------------------------------------------------------

def test_headline_k_selection():
    ks = [64, 128, 256, 512, 1024, 2048, 4096, 8192]
    assert headline_k(ks) == HEADLINE_K == 2048
    assert headline_k([512, 1024, 1024, 4096]) == 1024  # no 2048: the most common k
    assert headline_k([1024, 4096]) in (1024, 4096) and headline_k([]) is None
    for n in (1, 2, 3, 4, 5):
        got = pick_topks(ks, n)
        assert len(got) == n and 2048 in got and got == sorted(got)
    assert pick_keeping(list(range(10)), 3, lambda v: v == 4) == [0, 4, 9]


def test_headline_k_kept_when_more_k_than_panels_or_colours(tmp_path):
    ks = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
    run = make_run(tmp_path, sweep_rows("prefill", batches=(1, 2, 4), topks=ks))
    impl, shown, notes = stage_breakdown.stage_panels(run.results, n=4)
    assert impl == "dsa-triton" and len(shown) == 4
    assert [c for c in shown if c[2] == 2048] == [("prefill", 4, 2048), ("prefill", 2, 2048), ("prefill", 1, 2048)]
    assert notes and "k = 2048 kept" in notes[0]
    fig = stage_breakdown.build(run, [])
    assert sum("k = 2048" in t for t in _titles(fig)) == 3
    notes = []
    fig = latency_vs_context.build(run, notes)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    dsa = [lab for lab in labels if lab.startswith("dsa-triton k=")]
    assert len(dsa) == 5 and any(lab.startswith("dsa-triton k=2048:") for lab in dsa)
    assert any("k values shown" in n for n in notes)


# --- one crossover rule ----------------------------------------------------------------------------

def _cost_frame() -> pd.DataFrame:
    pos = np.arange(0, 65536 + 1, 4096)
    recs = []
    for ph, base in (("prefill", 0.02), ("decode", 0.5)):
        for model, fam, f in (("DeepSeek-V3.1-Terminus", "dense", lambda p: base * (1 + p / 8192)),
                              ("DeepSeek-V3.2-Exp", "dsa", lambda p: base * (1.3 + p / 65536))):
            recs += [{"phase": ph, "model": model, "family": fam, "position_tokens": p,
                      "usd_per_million_tokens": f(p)} for p in pos]
    return pd.DataFrame(recs)


def test_cost_panel_says_which_phase_was_timed():
    """A run that timed prefill only: its decode cost panel says roofline, the prefill one measured."""
    c = pd.DataFrame({"phase": ["prefill", "decode"], "timing_source": ["measured", "roofline-fallback"]})
    assert cost_vs_position.timing_text(c[c["phase"] == "prefill"]) == " (measured kernels)"
    assert cost_vs_position.timing_text(c[c["phase"] == "decode"]) == " (roofline: not timed in this run)"
    assert cost_vs_position.timing_text(pd.DataFrame({"timing_source": ["roofline"]})) == " (roofline model)"


def test_curve_crossing_delegates_to_the_cost_model():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    dense, dsa = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.5, 2.6, 2.7])
    assert crossover.curve_crossing(x, dense, dsa) == crossing_position(x, dense, dsa)
    assert crossover.curve_crossing(x[::-1], dense[::-1], dsa[::-1]) == crossing_position(x, dense, dsa)
    assert crossover.curve_crossing(x, dsa + 1.0, dsa) == 0.0  # DSA never above dense
    # cheaper first, dearer at the end: no crossover after which DSA stays cheaper (one rule, dsa_bench/crossover.py)
    assert crossover.curve_crossing(x, dsa, dense) is None
    assert crossover.curve_crossing(x, dense * 0, dsa) is None
    assert crossover.curve_crossing([], [], []) is None


def test_plots_use_the_single_crossover_helpers(tmp_path, monkeypatch):
    calls = {"curve": 0, "measured": 0}
    real_curve, real_find = crossover.curve_crossing, crossover.find_crossover

    def curve_spy(*a, **kw):
        calls["curve"] += 1
        return real_curve(*a, **kw)

    def find_spy(*a, **kw):
        calls["measured"] += 1
        return real_find(*a, **kw)

    monkeypatch.setattr(crossover, "curve_crossing", curve_spy)
    monkeypatch.setattr(crossover, "find_crossover", find_spy)
    cost = _cost_frame()
    run = make_run(tmp_path, sweep_rows("prefill", topks=(1024, 2048)), cost=cost)

    fig = cost_vs_position.build(run, [])
    assert calls["curve"] == 2  # one per phase
    d = cost[(cost["phase"] == "prefill") & (cost["family"] == "dense")]
    s = cost[(cost["phase"] == "prefill") & (cost["family"] == "dsa")]
    want = crossing_position(d["position_tokens"].to_numpy(float), d["usd_per_million_tokens"].to_numpy(),
                             s["usd_per_million_tokens"].to_numpy())
    assert cost_vs_position.phase_crossings(cost_vs_position.cost_frame(cost))["prefill"] == pytest.approx(want)
    ax = fig.axes[0]
    assert f"DSA cheaper from ≈ {fmt_context(want)} tokens" in ax.get_title(loc="left")
    assert not any("cheaper" in t.get_text() for t in ax.texts)  # nothing written over the curves

    fig = latency_vs_context.build(run, [])
    assert calls["measured"] >= 2  # one per (implementation, k) of the panel
    ax = fig.axes[0]
    ok = run.ok("total")
    from dsa_bench.report.load import best_dense

    for k in (1024, 2048):
        m = ok[ok["topk"] == k].merge(best_dense(ok), on=["phase", "batch", "context"])
        c = real_find(m["context"].astype(float), m["latency_ms"], m["dense_ms"])
        assert c.context is not None
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert (f"crossover: dsa-triton k={k} faster from L {fmt_bracket(c.bracket)} "
                f"(log-log interpolation: ~{fmt_context(c.context)})") in labels
    assert not any("faster from" in t.get_text() for t in ax.texts)  # in the legend, not on the data

    heat_calls = calls["measured"]
    speedup_heatmap.build(run, [])
    assert calls["measured"] > heat_calls

    import dsa_bench.report.plots as pkg

    src = "".join(p.read_text() for p in Path(pkg.__file__).parent.glob("*.py"))
    assert "_curve_crossing" not in src and "crossing_position" not in src  # no private copy of the rule


# --- no global matplotlib state --------------------------------------------------------------------

def test_import_changes_no_matplotlib_state():
    code = (
        "import sys, matplotlib\n"
        "rc = matplotlib.rcParams\n"
        "before = rc.copy(); backend = rc._get('backend')\n"
        "import dsa_bench.report.plots, dsa_bench.report\n"
        "after = rc.copy()\n"
        "diff = sorted(k for k in before if k != 'backend' and before[k] != after[k])\n"
        "assert not diff, diff\n"
        "assert rc._get('backend') is backend, rc._get('backend')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_drawing_leaves_rcparams_unchanged(tmp_path):
    run = make_run(tmp_path / "run", sweep_rows("prefill", topks=(1024, 2048)), cost=_cost_frame())
    before = matplotlib.rcParams.copy()
    for name, (fn, _title, _q) in PLOTS.items():
        notes: list[str] = []
        path = fn(run, tmp_path / "out", notes)
        assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", (name, notes)
    after = matplotlib.rcParams.copy()
    assert [k for k in before if k != "backend" and before[k] != after[k]] == []
