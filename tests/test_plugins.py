"""Plug-in implementations: a scenario's `implementations_from` files register implementations that
the engine then checks, times and reports like the built-in ones."""
import csv
from pathlib import Path

from typer.testing import CliRunner

from dsa_bench.cli import app

ROOT = Path(__file__).resolve().parent.parent
cli = CliRunner()


def test_example_plugin_runs_through_dsa_bench_run(tmp_path):
    r = cli.invoke(app, ["run", str(ROOT / "examples" / "plugin-scenario.yaml"), "--device", "cpu",
                         "--out", str(tmp_path), "--no-report"])
    assert r.exit_code == 0, r.output
    (results,) = tmp_path.glob("plugin-example/*/results.csv")
    rows = [x for x in csv.DictReader(results.open()) if x["implementation"] == "dense-torch-eager"]
    assert len(rows) == 2 and {x["status"] for x in rows} == {"ok"} and {x["check"] for x in rows} == {"passed"}


def test_a_broken_plugin_is_a_scenario_error(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("raise RuntimeError('plugin exploded')\n")
    s = tmp_path / "s.yaml"
    s.write_text("name: p\nmodel: tiny\nphase: decode\nimplementations_from: [bad_plugin.py, missing.py]\n"
                 "implementations: [dense-torch]\nsweep: {context: [64]}\n")
    r = cli.invoke(app, ["validate", str(s)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2
    assert "implementations_from[0]: cannot load 'bad_plugin.py': RuntimeError: plugin exploded" in text
    assert "implementations_from[1]: cannot load 'missing.py': FileNotFoundError" in text
