"""Indexer quality package: training on a tiny synthetic source, metrics on hand-made cases, config, plot.

One tiny run (module fixture, a few seconds on a CPU) backs the training tests; its generator parameters
give sinks and needles enough attention mass that "most recent k" misses much of it, so a trained indexer
beats both baselines by a wide margin (measured: recall at k=8 0.73 trained vs 0.33 for both baselines;
warm-up KL 1.86 -> 1.11 over its first / last 5 steps).
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from dsa_bench.quality import metrics
from dsa_bench.quality.config import QualityConfig, SyntheticSource
from dsa_bench.quality.indexer_module import LightningIndexer
from dsa_bench.quality.plot import plot_quality
from dsa_bench.quality.synthetic import SyntheticGenerator, make_source
from dsa_bench.quality.train import run_quality

TINY = {
    "source": {"seq_len": 64, "heads": 4, "head_dim": 32, "index_heads": 4, "index_dim": 16, "hidden_dim": 32,
               "local_window": 6, "needles": 2, "needle_queries": 8, "seed": 0},
    "warmup_steps": 50, "sparse_steps": 10, "batch": 4, "topk": [8, 16, 32], "sparse_topk": 8,
    "eval_every": 100, "eval_sequences": 6,
    "lr_warmup": 3e-3,  # 50 steps at the report's 1e-3 rank tokens well but move the KL only ~6%
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation, which costs ~6x on a
    loaded 2-core machine (measured 1.1 s vs 6.8 s for the tiny run)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_run(one_thread):
    return run_quality(QualityConfig(**TINY))


def test_run_tables(tiny_run):
    steps, evals = tiny_run["steps"], tiny_run["evals"]
    assert list(steps.columns) == ["step", "stage", "kl_loss"]
    assert steps["step"].tolist() == list(range(1, 61))
    assert (steps["stage"] == "warmup").sum() == 50 and (steps["stage"] == "sparse").sum() == 10
    assert sorted(evals["step"].unique()) == [0, 50, 60]  # start, end of warm-up, end
    assert set(evals["method"]) == {"trained", "untrained", "recent"}
    assert len(tiny_run["summary"]) == 3 * 3
    assert evals[["recall", "overlap", "output_rel_err"]].notna().all().all()


def test_warmup_loss_falls(tiny_run):
    warm = tiny_run["steps"].query("stage == 'warmup'")["kl_loss"]
    assert warm.tail(5).mean() < 0.75 * warm.head(5).mean()


def test_trained_recall_beats_baselines(tiny_run):
    final = tiny_run["summary"].set_index(["method", "k"])["recall"]
    k = TINY["sparse_topk"]
    assert final["trained", k] > final["untrained", k] + 0.15
    assert final["trained", k] > final["recent", k] + 0.15
    init = tiny_run["evals"].query("step == 0").set_index(["method", "k"])["recall"]
    assert init["trained", k] == init["untrained", k]  # the baseline is the trained indexer's start


def test_run_is_deterministic():
    cfg = QualityConfig(**{**TINY, "warmup_steps": 3, "sparse_steps": 2, "eval_sequences": 2, "topk": [8]})
    a, b = run_quality(cfg), run_quality(cfg)
    pd.testing.assert_frame_equal(a["steps"], b["steps"])
    pd.testing.assert_frame_equal(a["evals"], b["evals"])


def test_generator_deterministic_and_causal_structure():
    src = SyntheticSource(**TINY["source"])
    x = SyntheticGenerator(src).batch(2, torch.Generator().manual_seed(1))
    y = SyntheticGenerator(src).batch(2, torch.Generator().manual_seed(1))
    z = SyntheticGenerator(src).batch(2, torch.Generator().manual_seed(2))
    assert torch.equal(x.attn_q, y.attn_q) and torch.equal(x.hidden, y.hidden)
    assert not torch.equal(x.attn_q, z.attn_q)
    assert x.attn_q.shape == (2, 64, 4, 32) and x.attn_k.shape == (2, 64, 32) and x.hidden.shape == (2, 64, 32)
    # Sinks: every late query puts more attention on token 0 than on a mid-sequence token on average.
    p = metrics.head_probs(x.attn_q, x.attn_k, sm_scale=x.sm_scale, q_start=0).mean(1)
    assert p[:, 40:, 0].mean() > 5 * p[:, 40:, 20].mean()


def test_file_source_missing_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="quality source file not found"):
        make_source(SyntheticSource(path=str(tmp_path / "none.pt")))


def test_indexer_module_is_causal():
    idx = LightningIndexer(hidden_dim=8, heads=3, dim=4)
    s = idx(torch.randn(2, 5, 8))
    assert s.shape == (2, 5, 5)
    upper = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    assert torch.isneginf(s[:, upper]).all() and torch.isfinite(s[:, ~upper]).all()


# Hand-made target: 1 sequence, S = T = 4, q_start = 0; row t spreads its mass over tokens 0..t.
P = torch.tensor([[[1.0, 0.0, 0.0, 0.0],
                   [0.3, 0.7, 0.0, 0.0],
                   [0.5, 0.1, 0.4, 0.0],
                   [0.6, 0.1, 0.1, 0.2]]])


def test_recent_baseline_by_hand():
    sel = metrics.select_recent(1, 4, 4, 2, q_start=0)
    want = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(sel[0], want)
    # rows: 1, 0.3 + 0.7, 0.1 + 0.4, 0.1 + 0.2
    assert metrics.recall(P, sel) == pytest.approx((1 + 1 + 0.5 + 0.3) / 4)
    # true top-2 per row: {0}, {0,1}, {0,2}, {0,3}; min(k, visible) = 1, 2, 2, 2
    assert metrics.overlap(P, sel, 2, q_start=0) == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)


def test_topk_selection_metrics_by_hand():
    sel = metrics.select_topk(torch.log(P + 1e-9), 2, q_start=0)  # scores ordered like P
    assert metrics.recall(P, sel) == pytest.approx((1 + 1 + 0.9 + 0.8) / 4)
    assert metrics.overlap(P, sel, 2, q_start=0) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 4, 2, 8, generator=g), torch.randn(1, 4, 8, generator=g), torch.randn(1, 4, 3, generator=g)
    assert metrics.output_rel_err(q, k, v, sel, sm_scale=0.3, q_start=0) > 0


def test_k_at_least_visible_is_exact():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 6, 3, 8, generator=g), torch.randn(2, 9, 8, generator=g), torch.randn(2, 9, 5, generator=g)
    p = metrics.head_probs(q, k, sm_scale=0.3).mean(1)  # query i at position 3 + i sees <= 9 tokens
    for sel in (metrics.select_topk(torch.randn(2, 6, 9, generator=g), 9),
                metrics.select_recent(2, 6, 9, 12)):
        assert metrics.recall(p, sel) == pytest.approx(1.0)
        assert metrics.overlap(p, sel, 9) == pytest.approx(1.0)
        assert metrics.output_rel_err(q, k, v, sel, sm_scale=0.3) == pytest.approx(0.0, abs=1e-6)


def test_config_validation():
    with pytest.raises(ValidationError, match="extra"):
        QualityConfig(warmup_step=10)
    with pytest.raises(ValidationError, match="extra"):
        QualityConfig(source={"seqlen": 10})
    with pytest.raises(ValidationError, match="hidden_dim must be >= "):
        QualityConfig(source={"head_dim": 64, "hidden_dim": 16})
    with pytest.raises(ValidationError, match="duplicate"):
        QualityConfig(topk=[8, 8])
    assert QualityConfig(topk=[64, 16]).topk == [16, 64]


def test_config_module_does_not_import_torch():
    code = "import sys, dsa_bench.quality.config as c; c.QualityConfig(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("cost", [None, {8: 0.12, 16: 0.13, 32: 0.15}])
def test_plot_writes_png(tiny_run, tmp_path, cost):
    out = plot_quality(tiny_run["evals"], cost, tmp_path / "sub" / "quality.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_quality_scenario_runs_through_the_cli(tmp_path):
    """`dsa-bench run` of a phase: quality scenario writes the run directory (steps, evals, summary with
    each k priced by the cost model, plot, summary.json) and its report; a quality scenario with
    implementations or without its section is refused before any work."""
    import json

    import yaml
    from typer.testing import CliRunner

    from dsa_bench.cli import app
    from dsa_bench.scenario import ScenarioError, parse_scenario

    spec = {"name": "q", "model": "deepseek-v3.2", "phase": "quality",
            "quality": {"source": {"seq_len": 64, "heads": 2, "head_dim": 32, "index_heads": 2, "index_dim": 16,
                                   "hidden_dim": 32, "needles": 2, "needle_queries": 4, "local_window": 4.0},
                        "warmup_steps": 6, "sparse_steps": 3, "batch": 2, "sparse_topk": 8, "topk": [4, 8],
                        "eval_every": 3, "eval_sequences": 2}}
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "res"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    run_dir = next((tmp_path / "res" / "q").iterdir())
    summary = pd.read_csv(run_dir / "quality_summary.csv")
    assert set(summary["method"]) == {"trained", "untrained", "recent"} and set(summary["k"]) == {4, 8}
    assert (summary["usd_per_million_tokens"] > 0).all()
    # k scaled to the same share of the cost model's 128K context; more k costs more
    assert dict(zip(summary["k"], summary["model_topk"])) == {4: 8192, 8: 16384}
    cost = summary.groupby("k")["usd_per_million_tokens"].first()
    assert cost[8] > cost[4]
    head = json.loads((run_dir / "summary.json").read_text())
    assert head["at_sparse_topk"]["k"] == 8 and set(head["kl_loss"]) == {"warmup", "sparse"}
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert (run_dir / "report" / "index.html").exists() and "report:" in r.output  # the report beside the run
    for bad in ({**spec, "implementations": ["dense-torch"]}, {k: v for k, v in spec.items() if k != "quality"}):
        with pytest.raises(ScenarioError):
            parse_scenario(bad)


def test_report_command_on_a_quality_run(tmp_path):
    """`dsa-bench report` of a committed quality run writes the quality report (not the timing one)."""
    from pathlib import Path

    from typer.testing import CliRunner

    from dsa_bench.cli import app

    run = next((Path(__file__).resolve().parent.parent / "results" / "indexer-quality").iterdir())
    r = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    html = next(tmp_path.rglob("index.html")).read_text()
    assert "indexer quality" in html and "quality.png" in html


def test_quality_scenario_refuses_sweep_options(tmp_path):
    """--resume / --ray / --filter / --json make no sense for one training run: exit 2 before any work."""
    from pathlib import Path

    from typer.testing import CliRunner

    from dsa_bench.cli import app

    scen = Path(__file__).resolve().parent.parent / "scenarios" / "indexer-quality.yaml"
    for extra in (["--resume"], ["--ray", "local"], ["--filter", "context>=1"]):
        r = CliRunner().invoke(app, ["run", str(scen), "--out", str(tmp_path), *extra])
        assert r.exit_code == 2 and "not for a phase: quality scenario" in r.output, (extra, r.output)
    assert not any(tmp_path.iterdir())
