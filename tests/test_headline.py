"""The headline crossover interval: resolved only when resampled timings agree (module docstring)."""
import numpy as np

from dsa_bench.report.headline import crossover_interval


def _samples(medians, spread, seed):
    rng = np.random.default_rng(seed)
    return [m * (1 + spread * rng.standard_normal(21)) for m in medians]


def test_overlapping_series_give_no_crossover_resolved():
    ctx = [1024.0, 4096.0, 16384.0]
    dsa = _samples([1.00, 1.00, 1.00], 0.2, 1)     # the same speed within noise at every context
    dense = _samples([1.02, 0.99, 1.01], 0.2, 2)
    got = crossover_interval(ctx, dsa, dense)
    assert got["status"] == "unresolved" and got["context"] is None
    assert got["message"].startswith("no crossover resolved")


def test_separated_series_give_an_interval_around_the_point_estimate():
    ctx = [1024.0, 4096.0, 16384.0]
    dsa = _samples([2.0, 2.0, 2.0], 0.01, 3)       # dense grows past DSA between 1K and 4K
    dense = _samples([1.0, 4.0, 16.0], 0.01, 4)
    got = crossover_interval(ctx, dsa, dense)
    assert got["status"] == "crosses"
    assert got["low"] <= got["context"] <= got["high"] and 1024 < got["low"] and got["high"] < 4096
    assert "90% interval" in got["message"]


def test_always_faster_stays_always_faster():
    ctx = [1024.0, 4096.0]
    got = crossover_interval(ctx, _samples([1.0, 1.0], 0.01, 5), _samples([3.0, 9.0], 0.01, 6))
    assert got["status"] == "always_faster" and got["low"] is None


def test_crossover_stated_to_three_digits():
    """An interpolated crossover is written to 3 significant digits (K = 1024), never to five."""
    from dsa_bench.crossover import fmt_context
    from dsa_bench.report.crossover import find_crossover

    assert [fmt_context(x) for x in (47497, 686, 1500, 131072)] == ["46.4K", "686", "1.46K", "128K"]
    c = find_crossover([1024, 2048, 4096], [2.0, 2.0, 2.0], [1.0, 1.9, 4.0])
    assert "≈ 2.13K" in c.message or "≈ 2.1" in c.message
    assert "," not in c.message.split("≈")[1].split(" on")[0]
