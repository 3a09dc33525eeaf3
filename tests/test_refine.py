"""Crossover brackets and their adaptive refinement, on the CPU, with fake implementations whose
latency curves are known (tests/plugins/known_curves.py: they sleep)."""
import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsa_bench import api
from dsa_bench.cli import app, with_optional_values
from dsa_bench.refine import next_context
from dsa_bench.scenario import load_scenario

PLUGIN = Path(__file__).resolve().parent / "plugins" / "known_curves.py"
TRUTH = 6144.0  # where the B = 1 and B = 3 curves cross for good
SCENARIO = f"""\
name: known-curves
model: tiny
phase: decode
implementations_from: [{PLUGIN}]
implementations: [fake-dsa, fake-dense]
sweep: {{context: [1024, 4096, 16384], topk: [32], batch: [1, 2, 3]}}
measure: {{min_samples: 5, max_samples: 9, min_time_ms: 0, max_time_ms: 200, warmup_ms: 0, flush_l2: false,
          check: false, stages: false}}
cpu:
  sweep: {{context: [1024, 4096, 16384], topk: [32], batch: [1, 2, 3]}}
"""


def _plugin_module():
    """The plug-in as the scenario's implementations_from imports it (one module per file)."""
    import sys

    from dsa_bench.registry import load_plugin_file

    load_plugin_file(PLUGIN)
    return next(m for n, m in sys.modules.items() if n.startswith("dsa_bench_plugin_")
                and getattr(m, "__file__", "") == str(PLUGIN))


def _scenario(tmp: Path, extra: str = "") -> Path:
    path = tmp / "known.yaml"
    path.write_text(SCENARIO + extra)
    return path


def _headlines(run_dir: Path) -> dict[int, dict]:
    return {h["batch"]: h["crossover"] for h in json.loads((run_dir / "summary.json").read_text())["headlines"]}


def _rows(run_dir: Path) -> list[dict]:
    return [r for r in csv.DictReader((run_dir / "results.csv").open()) if r["stage"] == "total"]


@pytest.fixture(scope="module", autouse=True)
def _virtual_time():
    """Samples are the fakes' curves exactly (their virtual clock); and no garbage collection after
    every point (~0.5 s with torch loaded, there to free GPU memory): the fakes allocate nothing."""
    with pytest.MonkeyPatch.context() as mp:
        _plugin_module().virtual_timer(mp)
        mp.setattr("dsa_bench.runner.gc.collect", lambda *a: 0)
        yield


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    """The plain sweep, no refinement: the tests refine copies of it with --resume."""
    root = tmp_path_factory.mktemp("known")
    out = api.run_scenario(load_scenario(_scenario(root)), out=root / "results", device="cpu")
    return root, out.run_dir


def _copy(sweep_run, tmp_path) -> tuple[Path, Path]:
    root, run_dir = sweep_run
    shutil.copytree(root / "results", tmp_path / "results")
    return _scenario(tmp_path), tmp_path / "results" / "known-curves" / run_dir.name


def test_far_apart_points_report_the_bracket(sweep_run):
    """4K and 16K measured: the crossover is stated as 'between 4K and 16K' with the interpolation
    beside it, and the interval is the bracket (not the far narrower bootstrap)."""
    _, run_dir = sweep_run
    c = _headlines(run_dir)[1]
    assert c["status"] == "crosses" and c["bracket"] == [4096, 16384]
    assert (c["low"], c["high"]) == (4096, 16384) and c["interval_from"] == "bracket"
    assert c["message"].startswith("DSA is faster from a context between 4K and 16K (log-log interpolation: ~")
    assert c["refinement_points"] == 0
    assert 4096 < c["context"] < 16384


def test_non_crossing_and_multiply_crossing_series_are_said_plainly(sweep_run):
    _, run_dir = sweep_run
    h = _headlines(run_dir)
    assert h[2]["status"] == "never_faster" and h[2]["bracket"] is None and h[2]["low"] is None
    assert "no crossover within 1K-16K" in h[2]["message"]
    assert h[3]["status"] == "crosses" and h[3]["crossings"] == 2 and h[3]["bracket"] == [4096, 16384]
    assert "the curves cross 2 times, this is the last crossing" in h[3]["message"]


def test_refinement_converges_to_the_known_crossover_in_few_points(sweep_run, tmp_path):
    scenario, run_dir = _copy(sweep_run, tmp_path)
    before = len(_rows(run_dir))
    s = load_scenario(scenario, ["refine_crossover.tolerance=0.05"])
    out = api.run_scenario(s, out=tmp_path / "results", device="cpu", resume=True)
    assert out.run_dir == run_dir  # the same run directory, resumed
    h = _headlines(run_dir)
    for batch in (1, 3):
        lo, hi = h[batch]["bracket"]
        assert hi / lo - 1 <= 0.05
        assert lo <= TRUTH <= hi  # the known crossover, inside a bracket within the tolerance
        assert 1 <= h[batch]["refinement_points"] <= 5  # 4x down to 5%: ceil(log2(ln 4 / ln 1.05)) = 5 bisections
        assert h[batch]["message"].count("between") == 1
    assert h[2]["refinement_points"] == 0  # nothing to refine where the curves never cross
    rows = _rows(run_dir)
    new = [r for r in rows if r["refinement"]]
    assert len(rows) == before + len(new) and new
    assert {r["implementation"] for r in new} == {"fake-dsa", "fake-dense"}
    assert {int(r["batch"]) for r in new} == {1, 3} and {r["status"] for r in new} == {"ok"}
    assert all(4096 < int(r["context"]) < 16384 for r in new)
    assert not [r for r in rows if not r["refinement"] and int(r["context"]) not in (1024, 4096, 16384)]
    assert any("within 5%" in n for n in out.notes)
    # The latency plot draws the refinement points but ticks only the sweep's contexts.
    from dsa_bench.report.load import load_run
    from dsa_bench.report.plots import latency_vs_context

    fig = latency_vs_context.build(load_run(run_dir), [])
    assert list(fig.axes[0].get_xticks()) == [1024, 4096, 16384]
    assert len(fig.axes[0].get_lines()[0].get_xdata()) > 3
    # Resuming again has nothing left to do: the rows on disk say every bracket is narrow enough.
    again = api.run_scenario(s, out=tmp_path / "results", device="cpu", resume=True)
    assert len(_rows(again.run_dir)) == len(rows)


def test_the_point_budget_stops_refinement(sweep_run, tmp_path):
    scenario, run_dir = _copy(sweep_run, tmp_path)
    s = load_scenario(scenario, ["refine_crossover={tolerance: 0.01, max_points: 2}"])
    out = api.run_scenario(s, out=tmp_path / "results", device="cpu", resume=True)
    h = _headlines(run_dir)
    assert h[1]["refinement_points"] == 2 and h[1]["bracket"][1] / h[1]["bracket"][0] > 1.01
    assert any("point budget spent" in n for n in out.notes)


def test_cli_refines_and_names_a_bad_tolerance(sweep_run, tmp_path):
    scenario, run_dir = _copy(sweep_run, tmp_path)
    cli = CliRunner()
    bad = cli.invoke(app, ["run", str(scenario), "--device", "cpu", "--out", str(tmp_path / "results"),
                           "--refine-crossover", "-0.5", "--no-report"])
    assert bad.exit_code == 2 and "refine_crossover.tolerance: must be positive, got -0.5" in " ".join(bad.output.split())
    assert "Traceback" not in bad.output
    ok = cli.invoke(app, ["run", str(scenario), "--device", "cpu", "--out", str(tmp_path / "results"), "--resume",
                          "--report-out", str(tmp_path / "reports"), "--quiet",
                          *with_optional_values(["--refine-crossover"])])
    assert ok.exit_code == 0, ok.output
    c = _headlines(run_dir)[1]
    assert c["bracket"][1] / c["bracket"][0] <= 1.1 and c["refinement_points"] >= 1
    html = (tmp_path / "reports" / "known-curves" / run_dir.name / "index.html").read_text()
    assert "refinement point" in html and "log-log interpolation" in html


def test_optional_value_of_refine_crossover():
    assert with_optional_values(["run", "s.yaml", "--refine-crossover"]) == ["run", "s.yaml", "--refine-crossover", "0.1"]
    assert with_optional_values(["run", "--refine-crossover", "--resume"])[1:3] == ["--refine-crossover", "0.1"]
    assert with_optional_values(["run", "--refine-crossover", "0.05"]) == ["run", "--refine-crossover", "0.05"]


def test_next_context_bisects_geometrically_on_block_multiples():
    assert next_context(4096, 16384) == 8192
    assert next_context(16384, 65536) == 32768
    t = next_context(16384, 32768)
    assert t % 256 == 0 and abs(t / (16384 * 2 ** 0.5) - 1) < 0.01
    assert next_context(64, 80) == 72  # small contexts: whole tokens
    assert next_context(100, 101) is None


def test_refine_crossover_fields_are_validated(tmp_path):
    from dsa_bench.scenario import ScenarioError

    for extra, want in (("refine_crossover: {tolerance: 0}\n", "refine_crossover.tolerance: must be positive, got 0"),
                        ("refine_crossover: {max_points: 0}\n", "refine_crossover.max_points: must be a positive integer, got 0"),
                        ("refine_crossover: {budget: 3}\n", "refine_crossover.budget: unknown field")):
        with pytest.raises(ScenarioError) as e:
            load_scenario(_scenario(tmp_path, extra))
        assert want in e.value.errors, e.value.errors
    s = load_scenario(_scenario(tmp_path, "refine_crossover: {tolerance: 0.05}\n"))
    assert (s.refine_crossover.tolerance, s.refine_crossover.max_points) == (0.05, 8)
