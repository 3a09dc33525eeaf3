"""The HTML report: every plot and table, on a synthetic GPU-like run and on the real smoke run;
plots that lack data say so instead of crashing; the page opens in headless Chromium cleanly."""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dsa_bench.crossover import fmt_context
from dsa_bench.models import PRESETS
from dsa_bench.report import build_report
from dsa_bench.report.cli_commands import report_command
from dsa_bench.report.load import load_run
from dsa_bench.report.plots import PLOTS
from dsa_bench.scenario import parse_scenario
from dsa_bench.store import RunStore
from dsa_bench.workload import Point, Workload

from browser import check_static, find_chromium, image_sources, load_page

ROOT = Path(__file__).resolve().parent.parent

ALL_PLOTS = list(PLOTS)
CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
A_DENSE = 2e-7  # ms per token^2: dense prefill = A L^2
B_DSA = 2e-6  # ms per token per selected key: DSA = C + B k L
C_DSA = 2.0  # ms of fixed overhead
TOPKS = [1024, 2048]


def dsa_ms(L: float, k: int) -> float:
    return C_DSA + B_DSA * k * L


def dense_ms(L: float) -> float:
    return A_DENSE * L * L


def true_crossover(k: int) -> float:
    """A L^2 = C + B k L."""
    b = B_DSA * k
    return (b + math.sqrt(b * b + 4 * A_DENSE * C_DSA)) / (2 * A_DENSE)


# --- synthetic runs ------------------------------------------------------------------------------------

def _stats(median: float, rng: np.random.Generator, n: int = 15, spread: float = 0.01) -> list[float]:
    return list(median * np.exp(rng.normal(0, spread, n)))


def _row(impl: str, family: str, backend: str, baseline: bool, w: Workload, stage: str, samples: list[float],
         kind: str, peak: float | None) -> dict:
    med = float(np.median(samples))
    flops, nbytes = w.work(kind)
    return {
        "implementation": impl, "family": family, "backend": backend, "baseline": baseline, "phase": w.point.phase,
        "stage": stage, "batch": w.B, "context": w.T, "topk": w.point.topk, "query_tokens": w.S, "q_start": w.q_start,
        "status": "ok", "reason": None, "check": "passed", "rel_err": 3e-3, "latency_ms": med,
        "latency_ms_q1": float(np.percentile(samples, 25)), "latency_ms_q3": float(np.percentile(samples, 75)),
        "latency_ms_min": float(np.min(samples)), "samples": len(samples), "peak_mem_bytes": peak,
        "workspace_bytes": None, "kv_cache_bytes": w.kv_cache_bytes(family), "flops": flops, "bytes": nbytes,
        "tflops": flops / med / 1e9, "gbps": nbytes / med / 1e6, "dtype": "bf16",
        "indexer_dtype": "bf16" if family == "dsa" else None, "device": "cuda",
    }


def make_gpu_run(root: Path, *, batches=(1, 4), contexts=CONTEXTS, topks=TOPKS, cost=True, oom_at=None,
                 phase="prefill", dense=("dense-triton", "dense-sdpa")) -> Path:
    """A run shaped like an H200 prefill sweep: dense = A L^2, DSA = C + B k L, with stages and cost curves."""
    rng = np.random.default_rng(0)
    sc = parse_scenario({
        "name": "synthetic", "description": "synthetic H200-like prefill sweep", "model": "deepseek-v3.2",
        "phase": phase, "implementations": [*dense, "dsa-triton"],
        "sweep": {"context": list(contexts), "topk": list(topks), "batch": list(batches)},
    })
    meta = {
        "run_id": "20260101-000000-cuda", "scenario_name": "synthetic", "scenario": sc.model_dump(mode="json"),
        "device": "cuda", "status": "complete", "start_time": "2026-01-01T00:00:00+00:00",
        "end_time": "2026-01-01T01:00:00+00:00", "timing_note": "GPU timings with CUDA events",
        "environment": {"gpu_name": "NVIDIA H200", "sm_count": 132, "compute_capability": "9.0",
                        "gpu_memory_bytes": 150 << 30, "l2_cache_bytes": 60 << 20, "cuda_version": "12.8",
                        "clocks": {"sm_mhz": 1980, "sm_max_mhz": 1980, "mem_mhz": 3201, "mem_max_mhz": 3201},
                        "driver_version": "570.1", "power_limit_w": 700, "temperature_c": 35, "torch": "2.13.0",
                        "triton": "3.6.0", "python": "3.11.7", "git": {"commit": "abc123def4567890", "dirty": False},
                        "host": "gpu-box", "device": "cuda:0"},
        "clocks_start": {"sm_mhz": 1980, "mem_mhz": 3201}, "clocks_end": {"sm_mhz": 1965, "mem_mhz": 3201},
    }
    store = RunStore.create(root, "synthetic", meta["run_id"], meta)
    model = PRESETS["deepseek-v3.2"]
    dev = torch.device("cpu")  # only the analytic work is used: no tensors are made
    rows, samples = [], []
    for B in batches:
        for L in contexts:
            w = Workload(model, Point(phase, B, L, None), dev)
            for impl, backend, factor in (("dense-triton", "triton", 1.0), ("dense-sdpa", "vendor", 1.15)):
                if impl not in dense:
                    continue
                if oom_at is not None and L >= oom_at and impl == "dense-sdpa":
                    rows.append({**_row(impl, "dense", backend, True, w, "total", [1.0], "dense_mha", None),
                                 "status": "oom", "reason": "OutOfMemoryError: CUDA out of memory",
                                 "latency_ms": None, "latency_ms_q1": None, "latency_ms_q3": None,
                                 "latency_ms_min": None, "samples": None, "tflops": None, "gbps": None})
                    continue
                s = _stats(B * factor * dense_ms(L), rng)
                rows.append(_row(impl, "dense", backend, True, w, "total", s, "dense_mha",
                                 w.kv_cache_bytes("dense") * 1.5 + B * L * 4096))
                samples += [{"implementation": impl, "phase": phase, "stage": "total", "batch": B, "context": L,
                             "topk": None, "chunk": 0, "sample": i, "ms": v} for i, v in enumerate(s)]
            for k in topks:
                w = Workload(model, Point(phase, B, L, k), dev)
                tot = B * dsa_ms(L, k)
                s = _stats(tot, rng)
                rows.append(_row("dsa-triton", "dsa", "triton", False, w, "total", s, "dsa",
                                 w.kv_cache_bytes("dsa") * 1.5 + B * L * 8192))
                scaled = tot - C_DSA * B
                for stage, share in (("indexer", 0.35), ("topk", 0.15), ("sparse_mla", 0.5)):
                    rows.append(_row("dsa-triton", "dsa", "triton", False, w, stage,
                                     _stats(share * scaled + C_DSA * B / 3, rng), stage, None))
    store.append(rows, samples)
    if cost:
        pos = np.arange(0, 131072 + 1, 4096)  # as the cost model writes it: 0, step, ..., max
        recs = []
        for ph, base in (("prefill", 0.02), ("decode", 0.5)):
            for m, fam, f in (("DeepSeek-V3.1-Terminus", "dense", lambda p: base * (1 + p / 8192)),
                              ("DeepSeek-V3.2", "dsa", lambda p: base * (1.3 + p / 65536))):
                recs += [{"phase": ph, "model": m, "position_tokens": p, "usd_per_million_tokens": f(p),
                          "usd_rest": f(p) * 0.4, "usd_dense_mla": f(p) * 0.6, "family": fam, "gpu": "H800",
                          "gpu_hour_usd": 2.0} for p in pos]
        pd.DataFrame(recs).to_csv(store.dir / "cost_curves.csv", index=False)
    return store.dir


@pytest.fixture(scope="module")
def gpu_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    run_dir = make_gpu_run(root / "results", oom_at=131072)
    return run_dir, build_report(run_dir, root / "reports")


@pytest.fixture(scope="module")
def smoke_run(smoke_cli_run):
    """The shipped smoke scenario's run directory, run on the CPU by `dsa-bench run --device cpu`
    (once per session, shared: tests/conftest.py)."""
    assert smoke_cli_run.exit_code == 0 and smoke_cli_run.run_dir is not None, smoke_cli_run.output
    return smoke_cli_run.run_dir


def _section(html: str, name: str) -> str:
    m = re.search(rf'<h2 id="{name}">.*?(?=<h2 |</body>)', html, re.S)
    assert m, f"section {name} missing"
    return m.group(0)


# --- tests ---------------------------------------------------------------------------------------------

def test_synthetic_report_has_every_plot_and_table(gpu_report):
    run_dir, index = gpu_report
    assert index == run_dir.parent.parent.parent / "reports" / "synthetic" / run_dir.name / "index.html"
    html = index.read_text()
    srcs = image_sources(index)
    for name in ALL_PLOTS:
        assert f"{name}.png" in srcs, name
        assert "Not available" not in _section(html, name)
    assert check_static(index) == []
    for section in ("findings", "environment", "crossover", "scaling", "results"):
        _section(html, section)
    for text in ("NVIDIA H200", "1980 MHz", "abc123def4567890", "2.13.0", "3.6.0", "570.1"):
        assert text in html, text
    assert "oom" in _section(html, "results")  # the failed point is listed with its reason
    assert "CUDA out of memory" in html


def test_synthetic_fit_and_crossover_are_right(gpu_report):
    run_dir, index = gpu_report
    fits = pd.read_csv(index.parent / "scaling_fits.csv")
    dense = fits[(fits["implementation"] == "dense-triton") & (fits["stage"] == "total")]
    assert len(dense) == 2 and np.allclose(dense["exponent"], 2.0, atol=0.02)
    dsa = fits[(fits["implementation"] == "dsa-triton") & (fits["stage"] == "total")]
    # C + B k L with C excluded by the overhead rule: between 0.9 and 1 (1 in the limit)
    assert len(dsa) == 4 and ((dsa["exponent"] > 0.85) & (dsa["exponent"] < 1.02)).all()
    assert (dsa["stderr"] > 0).all() and (dsa["n_used"] < dsa["n_total"]).any()
    cross = pd.read_csv(index.parent / "crossover.csv")
    assert len(cross) == 4 and (cross["status"] == "crosses").all()
    for _, c in cross.iterrows():
        lo, hi = map(int, c["bracket"].split("-"))
        truth = true_crossover(int(c["topk"]))
        assert lo <= truth <= hi
        assert abs(c["crossover_context"] / truth - 1) < 0.15  # log-log interpolation of a curved ratio
    html = index.read_text()
    c = cross.iloc[0]
    section = _section(html, "crossover")
    assert f"~{fmt_context(c['crossover_context'])} (log-log interpolation)" in section
    assert f"{fmt_context(c['bracket_low'])}-{fmt_context(c['bracket_high'])}" in section
    # One notation for token counts (K = 1024) everywhere on the page: no "11,204" beside "~10.9K".
    assert TOKEN_COUNT_WITH_COMMAS.search(html) is None and "K = 1024" in html


def test_report_on_smoke_run(smoke_run, tmp_path):
    assert load_run(smoke_run).ok("total").shape[0] > 0, "the smoke run measured nothing"
    index = build_report(smoke_run, tmp_path / "reports")
    html = index.read_text()
    assert index.parent == tmp_path / "reports" / "smoke" / smoke_run.name
    srcs = image_sources(index)
    for name in ALL_PLOTS:
        if name == "cost_vs_position" and not (smoke_run / "cost_curves.csv").exists():
            assert "Not available" in _section(html, name) and "cost" in _section(html, name)
            continue
        assert f"{name}.png" in srcs, f"{name}: {_section(html, name)[:400]}"
    assert check_static(index) == []
    assert "Not GPU timings" in html
    for section in ("findings", "environment", "crossover", "scaling", "results"):
        _section(html, section)
    assert len(pd.read_csv(index.parent / "scaling_fits.csv")) > 0


def test_report_command_on_smoke_run(smoke_run, tmp_path, capsys):
    assert report_command(smoke_run, tmp_path) == 0
    assert (tmp_path / "smoke" / smoke_run.name / "index.html").exists()
    assert report_command(tmp_path / "nope", tmp_path) == 2
    # Without --out, the report goes beside the run, wherever the run is; the command ends with the answer.
    copy = tmp_path / "elsewhere" / smoke_run.name
    shutil.copytree(smoke_run, copy, ignore=shutil.ignore_patterns("report"))
    capsys.readouterr()
    assert report_command(copy) == 0
    out = capsys.readouterr().out
    assert (copy / "report" / "index.html").exists() and f"report: {copy / 'report' / 'index.html'}" in out
    assert "answer (token counts in K = 1024 tokens; CPU timings, not GPU ones):" in out and "faster" in out


# "47,497" where the page says "46.4K" (the ceilings' datasheet quote "1,979 TFLOPS" is no token count)
TOKEN_COUNT_WITH_COMMAS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b(?! TFLOPS)")
COMMITTED_GPU_RUN = ROOT / "results" / "prefill-deployed" / "20261201-055818-cuda-6f88"


def test_committed_gpu_report_tells_one_story(tmp_path):
    """Re-rendered from the committed H200 run (into tmp_path, never into the checkout)."""
    index = build_report(COMMITTED_GPU_RUN, tmp_path)
    html = index.read_text()
    answer = html[html.index('id="answer"'):html.index("</section>", html.index('id="answer"'))]
    # dsa-deployed ran the same sparse form as dsa-triton at 64K: one bullet, not two identical ones
    assert answer.count("<li>") == 2 and "dsa-deployed and dsa-triton (the same here) are 1.30x faster" in answer
    assert "latency of this attention call (measured)" in answer and "cost per token of the full model" in answer
    # re-priced with `dsa-bench cost RUN`: on the GPU the run ran on, and it says so
    assert "priced on H200 (this run&#39;s GPU) at $2/GPU-hour" in answer
    assert "prefill (measured kernels)" in answer and "decode (modelled: roofline)" in answer
    lead = html[html.index('class="lead"'):html.index("</p>", html.index('class="lead"'))]
    assert "context 2K-64K, k = 2048, batch 1" in lead and "NVIDIA H200" in lead
    assert TOKEN_COUNT_WITH_COMMAS.search(html) is None


def test_cpu_report_subtitle_describes_the_cpu_sweep(smoke_run, tmp_path):
    html = build_report(smoke_run, tmp_path).read_text()
    lead = html[html.index('class="lead"'):html.index("</p>", html.index('class="lead"'))]
    sw = load_run(smoke_run).meta["scenario"]["sweep"]
    want = f"context {fmt_context(min(sw['context']))}-{fmt_context(max(sw['context']))}"
    assert want in lead and "on the CPU" in lead


@pytest.mark.skipif(find_chromium() is None,
                    reason="chromium is not installed (apt-get install -y chromium); CI installs it")
def test_report_opens_in_chromium(smoke_run, gpu_report, tmp_path):
    committed = build_report(COMMITTED_GPU_RUN, tmp_path / "committed")
    for index in (build_report(smoke_run, tmp_path / "reports"), gpu_report[1], committed):
        rep = load_page(index, tmp_path / f"{index.parent.name}.png", width=1280)
        assert rep.problems == [], rep.problems
        assert rep.content_width <= 1280, f"{index}: the page is {rep.content_width} px wide at a 1280-px window"
        assert rep.images == len(image_sources(index)) >= 5
        shot = rep.screenshot.read_bytes()
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000
        assert rep.title.startswith("dsa-bench report")


def test_plots_degrade_gracefully(tmp_path):
    """One context, one batch, no DSA, a CPU-like run without peak memory: no crash, reasons given."""
    run_dir = make_gpu_run(tmp_path / "a", batches=(1,), contexts=[4096], topks=[2048], cost=False)
    index = build_report(run_dir, tmp_path / "ra")
    html = index.read_text()
    assert "Not available" in _section(html, "latency_vs_context")
    assert "2 or more context" in _section(html, "latency_vs_context")
    assert "Not available" in _section(html, "cost_vs_position")
    assert "speedup_heatmap.png" in image_sources(index)  # a 1x1 heatmap is still an answer
    assert check_static(index) == []

    # dense only: no stages, no DSA -> stage plot and heatmap say why
    run_dir = make_gpu_run(tmp_path / "b", batches=(2,), contexts=[1024, 4096], topks=[64], cost=False)
    res = run_dir / "results.csv"
    df = pd.read_csv(res, dtype=str, keep_default_na=False)
    df[df["family"] == "dense"].to_csv(res, index=False)
    index = build_report(run_dir, tmp_path / "rb")
    html = index.read_text()
    for name in ("stage_breakdown", "speedup_heatmap"):
        assert "Not available" in _section(html, name), name
    assert "latency_vs_context.png" in image_sources(index)
    assert check_static(index) == []

    # every point failed: the report still renders, with the reasons
    df["status"] = "error"
    df["reason"] = "RuntimeError: boom"
    df[df["family"] == "dense"].to_csv(res, index=False)
    index = build_report(run_dir, tmp_path / "rc")
    html = index.read_text()
    assert "RuntimeError: boom" in html and "failed" in _section(html, "findings")
    assert check_static(index) == []
