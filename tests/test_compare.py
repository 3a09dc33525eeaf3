"""`compare`: per matching point, the ratio of medians and the right verdict; the regression gate."""
from pathlib import Path

import numpy as np
import pytest

from dsa_bench.report import compare_html, compare_runs
from dsa_bench.report.cli_commands import compare_command
from dsa_bench.report.compare import regressions, verdict
from dsa_bench.store import RunStore


def _meta(run_id):
    return {"run_id": run_id, "scenario_name": "cmp", "device": "cuda", "status": "complete",
            "scenario": {"name": "cmp", "model": {"name": "tiny"}},
            "environment": {"gpu_name": "NVIDIA H200", "torch": "2.13.0", "triton": "3.6.0",
                            "git": {"commit": run_id * 4, "dirty": False}}}


def _row(impl, context, med, spread, status="ok", stage="total", topk=None):
    fam = "dsa" if impl.startswith("dsa") else "dense"
    r = {"implementation": impl, "family": fam, "backend": "triton", "baseline": fam == "dense", "phase": "decode",
         "stage": stage, "batch": 4, "context": context, "topk": topk, "status": status, "device": "cuda"}
    if status == "ok":
        r.update(latency_ms=med, latency_ms_q1=med * (1 - spread), latency_ms_q3=med * (1 + spread),
                 latency_ms_min=med * (1 - 2 * spread), samples=50)
    else:
        r["reason"] = "OutOfMemoryError: CUDA out of memory"
    return r


def make_pair(root: Path, with_broken=True):
    """Run A and run B with one point per verdict (B relative to A)."""
    a = [
        _row("dense-triton", 1024, 1.00, 0.01),  # B 0.80 tight: faster
        _row("dense-triton", 2048, 1.00, 0.01),  # B 1.30 tight: slower (+30 %)
        _row("dense-triton", 4096, 1.00, 0.02),  # B 1.01 overlapping: same
        _row("dense-triton", 8192, 1.00, 0.30),  # B 1.20 wide, overlapping: unclear
        _row("dsa-triton", 1024, 2.00, 0.01, topk=256),  # B 1.04 but IQRs disjoint: slower (+4 %)
        _row("dsa-triton", 1024, 1.00, 0.01, stage="indexer", topk=256),  # B 0.5: faster
        _row("dsa-triton", 8192, 5.00, 0.01, topk=256),  # only in A
    ]
    b = [
        _row("dense-triton", 1024, 0.80, 0.01),
        _row("dense-triton", 2048, 1.30, 0.01),
        _row("dense-triton", 4096, 1.01, 0.02),
        _row("dense-triton", 8192, 1.20, 0.30),
        _row("dsa-triton", 1024, 2.08, 0.01, topk=256),
        _row("dsa-triton", 1024, 0.50, 0.01, stage="indexer", topk=256),
        _row("dsa-triton", 4096, 3.00, 0.01, topk=256),  # only in B
    ]
    if with_broken:
        a.append(_row("dsa-triton", 2048, 3.00, 0.01, topk=256))
        b.append(_row("dsa-triton", 2048, 0, 0, status="oom", topk=256))  # broken
    sa = RunStore.create(root, "cmp", "A", _meta("A"))
    sa.append(a)
    sb = RunStore.create(root, "cmp", "B", _meta("B"))
    sb.append(b)
    return sa.dir, sb.dir


def _v(df, impl, ctx, stage="total"):
    m = df[(df["implementation"] == impl) & (df["context"] == ctx) & (df["stage"] == stage)]
    assert len(m) == 1, m
    return m.iloc[0]


def test_verdict_rule():
    assert verdict(1.0, 0.99, 1.01, 0.8, 0.79, 0.81) == "faster"
    assert verdict(1.0, 0.99, 1.01, 1.3, 1.29, 1.31) == "slower"
    assert verdict(1.0, 0.98, 1.02, 1.01, 0.99, 1.03) == "same"
    assert verdict(1.0, 0.7, 1.3, 1.2, 0.84, 1.56) == "unclear"
    assert verdict(1.0, float("nan"), float("nan"), 1.0, float("nan"), float("nan")) == "same"


def test_compare_gives_right_verdicts(tmp_path):
    a, b = make_pair(tmp_path)
    df = compare_runs(a, b)
    assert _v(df, "dense-triton", 1024)["verdict"] == "faster"
    assert _v(df, "dense-triton", 1024)["ratio"] == pytest.approx(0.8)
    assert _v(df, "dense-triton", 2048)["verdict"] == "slower"
    assert _v(df, "dense-triton", 2048)["change_pct"] == pytest.approx(30.0)
    assert _v(df, "dense-triton", 4096)["verdict"] == "same"
    assert _v(df, "dense-triton", 8192)["verdict"] == "unclear"
    assert _v(df, "dsa-triton", 1024)["verdict"] == "slower"
    assert _v(df, "dsa-triton", 1024, "indexer")["verdict"] == "faster"
    assert _v(df, "dsa-triton", 2048)["verdict"] == "broken"
    assert _v(df, "dsa-triton", 8192)["verdict"] == "only in A"
    assert _v(df, "dsa-triton", 4096)["verdict"] == "only in B"
    assert len(df) == 9


def test_regression_gate(tmp_path):
    a, b = make_pair(tmp_path, with_broken=False)
    df = compare_runs(a, b)
    assert set(regressions(df, 10)["context"]) == {2048}  # +30 % fails, +4 % does not, unclear never
    assert set(regressions(df, 3)["context"]) == {2048, 1024}
    assert regressions(df, 50).empty
    assert compare_command(a, b, fail_on_regression=10) == 1
    assert compare_command(a, b, fail_on_regression=50) == 0
    assert compare_command(a, b) == 0
    assert compare_command(a, tmp_path / "missing") == 2


def test_broken_point_fails_the_gate(tmp_path):
    a, b = make_pair(tmp_path)
    assert compare_command(a, b, fail_on_regression=50) == 1


def test_compare_html(tmp_path):
    a, b = make_pair(tmp_path)
    df = compare_runs(a, b)
    page = compare_html(df, tmp_path / "out" / "compare.html", fail_on_regression=10)
    html = page.read_text()
    for word in ("faster", "slower", "same", "unclear", "broken", "only in A", "NVIDIA H200", "0.800", "+30.0%"):
        assert word in html, word
    assert "<script" not in html
    assert html.count('class="v-') == len(df)
    assert compare_command(a, b, html=tmp_path / "c2.html") == 0 and (tmp_path / "c2.html").exists()


def test_compare_against_itself_is_all_same(tmp_path):
    a, _ = make_pair(tmp_path)
    df = compare_runs(a, a)
    ok = df[df["verdict"] != "not measured"]
    assert (ok["verdict"] == "same").all() and np.allclose(ok["ratio"], 1.0)


def test_compare_states_each_runs_crossover_with_its_bracket(tmp_path, capsys):
    """A crosses between 1K and 4K; B, refined, between 2K and 2.5K: both brackets are shown."""
    def run(name, points):
        rows = []
        for ctx, dense, dsa in points:
            rows += [_row("dense-triton", ctx, dense, 0.01), _row("dsa-triton", ctx, dsa, 0.01, topk=256)]
        store = RunStore.create(tmp_path, "cmp", name, _meta(name))
        store.append(rows)
        return store.dir

    a = run("A", [(1024, 1.0, 2.0), (4096, 16.0, 4.0)])
    b = run("B", [(1024, 1.0, 2.0), (2048, 4.0, 4.1), (2560, 6.3, 4.2), (4096, 16.0, 4.0)])
    df = compare_runs(a, b)
    (c,) = df.attrs["crossovers"]
    assert (c["dsa_impl"], c["batch"], c["topk"]) == ("dsa-triton", "4", "256")
    assert c["a"].startswith("between 1K and 4K (~") and c["b"].startswith("between 2K and 2.5K (~")
    assert compare_command(a, b) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "between 1K and 4K" in out and "between 2K and 2.5K" in out
    page = compare_html(df, tmp_path / "c.html").read_text()
    assert "between 2K and 2.5K" in page
