"""Scaling fits recover known exponents; the crossover is found where it is and reported absent plainly."""
import math

import numpy as np
import pandas as pd
import pytest

from dsa_bench.report.crossover import crossover_table, find_crossover
from dsa_bench.report.fit import OVERHEAD_FACTOR, fit_power_law, fit_table, overhead_mask

L = np.array([1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072], dtype=float)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0])
def test_fit_recovers_exponent_with_noise(p):
    rng = np.random.default_rng(1)
    y = 3e-6 * L ** p * np.exp(rng.normal(0, 0.03, len(L)))
    f = fit_power_law(L, y, exclude_overhead=False)
    assert f.n_used == len(L)
    assert abs(f.exponent - p) < 3 * f.stderr + 1e-9
    assert 0 < f.stderr < 0.03
    assert np.allclose(f.predict(L), y, rtol=0.15)


def test_fit_is_exact_without_noise():
    f = fit_power_law(L, 5e-7 * L ** 2)
    assert f.exponent == pytest.approx(2.0, abs=1e-9)
    assert f.prefactor == pytest.approx(5e-7, rel=1e-6)
    assert f.stderr == pytest.approx(0.0, abs=1e-9)


def test_launch_overhead_regime_is_excluded():
    """y = c + a L^2: the flat start (launch overhead) must not flatten the exponent."""
    c = 0.05
    y = c + 1e-9 * L ** 2  # 1K: 0.051 ms (overhead), 128K: 17 ms
    keep = overhead_mask(y)
    assert not keep[:4].any() and keep[4:].all()
    f = fit_power_law(L, y)
    naive = fit_power_law(L, y, exclude_overhead=False)
    assert f.n_used < f.n_total and f.x_min > L[0]
    assert abs(f.exponent - 2) < 0.1
    assert abs(naive.exponent - 2) > abs(f.exponent - 2)  # the rule helps
    assert np.all(y[np.isin(L, f.x_used)] >= OVERHEAD_FACTOR * y.min())


def test_flat_series_falls_back_to_largest_contexts_and_flags():
    y = 1.0 + 1e-7 * L  # within 2x of the minimum everywhere
    f = fit_power_law(L, y)
    assert f.n_used == 3 and f.x_min == L[-3]
    assert "fewer than 3" in f.flag
    assert 0 < f.exponent < 0.2


def test_two_points_have_unknown_uncertainty_and_one_point_no_fit():
    f = fit_power_law([100, 400], [1.0, 16.0])
    assert f.exponent == pytest.approx(2.0)
    assert math.isnan(f.stderr) and "2 contexts" in f.flag
    assert fit_power_law([100], [1.0]) is None
    assert fit_power_law([100, 100], [1.0, 2.0]) is None
    assert fit_power_law([100, 200, 400], [1.0, float("nan"), 16.0]).n_total == 2


def _ok_rows(impl, family, ctx, ms, topk=None, baseline=False):
    return pd.DataFrame({
        "implementation": impl, "family": family, "stage": "total", "phase": "prefill", "batch": 1,
        "context": pd.array(ctx, dtype="Int64"), "topk": pd.array([topk] * len(ctx), dtype="Int64"),
        "latency_ms": ms, "latency_ms_q1": ms, "latency_ms_q3": ms, "status": "ok", "baseline": baseline,
        "is_reference": False,
    })


def test_fit_table_one_row_per_series():
    df = pd.concat([
        _ok_rows("dense-triton", "dense", L, 1e-7 * L ** 2, baseline=True),
        _ok_rows("dsa-triton", "dsa", L, 1e-4 * L, topk=2048),
        _ok_rows("dsa-triton", "dsa", L, 2e-4 * L, topk=1024),
        _ok_rows("dsa-triton", "dsa", [4096], [1.0], topk=512),  # one context: not fitted
    ])
    t = fit_table(df)
    assert len(t) == 3
    assert t.loc[t["implementation"] == "dense-triton", "exponent"].iloc[0] == pytest.approx(2.0)
    assert np.allclose(t.loc[t["implementation"] == "dsa-triton", "exponent"], 1.0)


# --- crossover ---------------------------------------------------------------------------------------

def test_crossover_of_power_laws_is_exact():
    """dense = a L^2, DSA = b L: the curves cross at L* = b / a, and log-log interpolation is exact."""
    a, b = 1e-7, 1.3e-3  # L* = 13000, between 8K and 16K
    c = find_crossover(L, b * L, a * L ** 2)
    assert c.status == "crosses"
    assert c.context == pytest.approx(b / a, rel=1e-9)
    assert c.bracket == (8192, 16384)
    assert "12.7K" in c.message  # 13000 tokens, 3 significant digits of K = 1024


def test_crossover_with_overhead_lies_in_bracket():
    a, b, c0 = 2e-7, 2e-3, 2.0
    truth = (b + math.sqrt(b * b + 4 * a * c0)) / (2 * a)
    c = find_crossover(L, c0 + b * L, a * L ** 2)
    assert c.bracket[0] <= truth <= c.bracket[1]
    assert c.context == pytest.approx(truth, rel=0.15)


def test_no_crossover_is_said_plainly():
    never = find_crossover(L, 10 * L, L)
    assert never.context is None and never.status == "never_faster"
    assert "no crossover within 1K-128K" in never.message
    always = find_crossover(L, 0.5 * L, L)
    assert always.context is None and always.status == "always_faster"
    assert "below 1K" in always.message
    assert find_crossover([], [], []).status == "insufficient"


def test_last_crossing_is_reported_when_curves_cross_twice():
    ratio = np.array([2, 0.5, 0.5, 2, 2, 0.5, 0.5, 0.5])  # wins, loses, then wins for good
    c = find_crossover(L, ratio, np.ones(len(L)))
    assert c.status == "crosses" and c.bracket == (16384, 32768)
    assert "cross 3 times" in c.message


def test_crossover_table_against_best_dense_baseline():
    df = pd.concat([
        _ok_rows("dense-a", "dense", L, 1e-7 * L ** 2, baseline=True),
        _ok_rows("dense-b", "dense", L, 2e-7 * L ** 2, baseline=True),  # slower: not the best
        _ok_rows("dsa-triton", "dsa", L, 1.3e-3 * L, topk=2048),
    ])
    t = crossover_table(df)
    assert len(t) == 1
    assert t["crossover_context"].iloc[0] == pytest.approx(13000, rel=1e-9)
    assert t["dense_impls"].iloc[0] == "dense-a"


def test_one_crossover_rule_for_latencies_and_cost_curves():
    """The measured-latency and cost-curve crossovers are one rule (dsa_bench/crossover.py): the x after
    which DSA stays at or below dense, the last crossing when the curves cross several times."""
    from dsa_bench.crossover import crossing, crossing_position
    from dsa_bench.report.crossover import find_crossover

    x = [1024, 2048, 4096, 8192, 16384]
    dense = [1.0, 2.0, 4.0, 8.0, 16.0]
    dsa = [0.5, 2.5, 3.0, 9.0, 10.0]  # wins, loses, wins, loses, wins: crosses 4 times
    c = crossing(x, dense, dsa, scale="log")
    assert c.status == "crosses" and c.bracket == (8192, 16384) and c.crossings == 4
    assert find_crossover(x, dsa, dense).context == c.x
    lin = crossing(x, dense, dsa, scale="linear")
    assert lin.bracket == (8192, 16384) and crossing_position(x, dense, dsa) == lin.x
    assert 8192 < lin.x < 16384 and 8192 < c.x < 16384
    assert crossing(x, dense, [d * 0.5 for d in dense]).status == "always"
    assert crossing(x, dense, [d * 2 for d in dense]).status == "never"
