"""The headline crossover interval: resolved only when resampled timings agree, and never narrower than
the measured contexts it lies between (module docstring)."""
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


def test_far_apart_points_report_the_bracket_as_the_interval():
    """Timing noise of 1% says nothing about where between 16K and 64K the curves cross: the bracket is
    the interval, the interpolation is named as such, and the tight bootstrap is only beside it."""
    ctx = [4096.0, 16384.0, 65536.0]
    dsa = _samples([8.0, 20.0, 100.0], 0.01, 3)  # dense = L^2 / 2^25, DSA ~ L^1.16: cross near 26K
    dense = _samples([0.5, 8.0, 128.0], 0.01, 4)
    got = crossover_interval(ctx, dsa, dense)
    assert got["status"] == "crosses" and got["interval_from"] == "bracket"
    assert (got["low"], got["high"]) == (16384, 65536) and got["bracket"] == [16384, 65536]
    b_lo, b_hi = got["bootstrap"]
    assert 16384 < b_lo <= got["context"] <= b_hi < 65536 and b_hi / b_lo < 1.2  # noise alone: narrow
    assert got["message"].startswith("DSA is faster from a context between 16K and 64K (log-log interpolation: ~")
    assert "90% interval" not in got["message"]


def test_a_narrow_bracket_reports_the_wider_bootstrap_interval():
    """Refined points 1.6% apart with 5% timing noise: the noise is the larger uncertainty."""
    ctx = [5000.0, 6050.0, 6150.0, 8000.0]
    dense = _samples([(x / 6100) ** 2 for x in ctx], 0.05, 7)  # cross at 6100
    dsa = _samples([(x / 6100) ** 0.5 for x in ctx], 0.05, 8)
    got = crossover_interval(ctx, dsa, dense)
    assert got["status"] == "crosses" and got["bracket"] == [6050, 6150]
    assert got["interval_from"] in ("bootstrap", "bracket and bootstrap")
    assert got["low"] < 6050 and got["high"] > 6150 and got["low"] < 6100 < got["high"]
    assert got["message"].startswith("DSA is faster from context ≈ ")
    assert "90% interval" in got["message"] and "measured between 5.91K and 6.01K" in got["message"]


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
    assert c.message.endswith("between 2K and 4K (log-log interpolation: ~2.1K)")  # 2148 tokens
    assert "," not in c.message


def test_unresolved_crossing_names_its_bracket_in_one_clause():
    """Medians that cross between 1K and 4K by 2%, samples spread by 30%: not resolved, and the message
    says what the medians alone would have said."""
    z = np.random.default_rng(11).permutation(np.linspace(-1, 1, 21))  # median exactly 0

    def around(m):
        return m * (1 + 0.3 * z)

    got = crossover_interval([1024.0, 4096.0], [around(1.0), around(1.0)], [around(0.98), around(1.02)])
    assert got["status"] == "unresolved" and got["low"] is None and got["bracket"] == [1024, 4096]
    assert "agree (the medians put the crossover between 1K and 4K); the medians are too close" in got["message"]
