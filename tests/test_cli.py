"""The CLI as a user meets it: exit codes, messages, files written."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsa_bench.cli import app

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
cli = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["run"], ["validate"], ["list"]])
def test_help_everywhere(cmd):
    r = cli.invoke(app, cmd + ["--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_validate_good_files():
    r = cli.invoke(app, ["validate", str(ROOT / "scenarios" / "quickstart.yaml"), str(ROOT / "scenarios" / "smoke.yaml")])
    assert r.exit_code == 0, r.output


def test_validate_bad_file_prints_each_error_and_exits_2():
    r = cli.invoke(app, ["validate", str(DATA / "bad_many.yaml")])
    assert r.exit_code == 2
    assert "sweep.context[2]: must be a positive integer, got -5" in r.output
    assert "measure.flush_l3: unknown field" in r.output
    assert "no-such-impl" in r.output


def test_run_bad_scenario_exits_2_and_writes_nothing(tmp_path):
    r = cli.invoke(app, ["run", str(DATA / "bad_many.yaml"), "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_run_without_cpu_section_on_cpu_exits_2(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: nocpu\nmodel: tiny\nphase: decode\nimplementations: [dense-torch]\nsweep: {context: [8]}\n")
    r = cli.invoke(app, ["run", str(p), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 2 and "CPU-safe" in r.output
    assert not (tmp_path / "out").exists()


def test_list_shows_implementations_presets_scenarios():
    r = cli.invoke(app, ["list"])
    assert r.exit_code == 0
    for word in ("dense-triton", "dsa-triton", "dense-sdpa", "deepseek-v3.2", "quickstart.yaml"):
        assert word in r.output


def test_run_smoke_writes_three_files(tmp_path):
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--out", str(tmp_path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    runs = list((tmp_path / "smoke").iterdir())
    assert len(runs) == 1
    d = runs[0]
    for f in ("results.csv", "samples.csv", "run.json"):
        assert (d / f).stat().st_size > 0
    meta = json.loads((d / "run.json").read_text())
    assert meta["status"] == "complete" and meta["device"] == "cpu"
    assert "NOT GPU timings" in meta["timing_note"]
    for k in ("git", "torch", "triton", "python", "argv", "host"):
        assert k in meta["environment"]
    assert meta["start_time"] and meta["end_time"]
    assert "NOT GPU timings" in r.output
    # With --out, the end-of-run report goes under it too, not into ./reports.
    assert (tmp_path / "reports" / "smoke" / d.name / "index.html").exists()
    # Resume of a finished run does nothing and still succeeds.
    r2 = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--out", str(tmp_path), "--device", "cpu", "--resume"])
    assert r2.exit_code == 0, r2.output
    assert len(list((tmp_path / "smoke").iterdir())) == 1
