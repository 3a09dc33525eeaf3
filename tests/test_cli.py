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
    for word in ("dense-triton", "dsa-triton", "dense-sdpa", "deepseek-v3.2", "quickstart.yaml", "--long"):
        assert word in r.output
    assert len(r.output.splitlines()) <= 16  # short by default: names, the production-peers line, the pointer to --long
    long = cli.invoke(app, ["list", "--long"])
    assert long.exit_code == 0 and "description" in long.output and len(long.output) > 3 * len(r.output)


def test_default_output_is_outside_the_committed_trees():
    from dsa_bench.cli import DEFAULT_OUT

    assert DEFAULT_OUT.parts[0] not in ("results", "reports")
    assert f"/{DEFAULT_OUT}/" in (ROOT / ".gitignore").read_text().splitlines()


def test_run_smoke_writes_three_files(smoke_cli_run):
    # `dsa-bench run scenarios/smoke.yaml --out OUT --device cpu` with COLUMNS=80 (tests/conftest.py)
    r, tmp_path = smoke_cli_run, smoke_cli_run.out
    assert r.exit_code == 0, r.output
    # Not a terminal: one progress line per finished point, and the 80-column table keeps full names.
    lines = [x for x in r.output.splitlines() if x.startswith("[") and "/12] " in x]
    assert len(lines) == 12 and lines[-1].startswith("[12/12] ")
    table = r.output[r.output.index("results (whole call"):]
    assert max(len(x) for x in table.splitlines()[:20]) <= 80
    for name in ("dense-triton", "dense-torch", "dsa-triton", "dsa-torch"):
        assert f"│ {name} " in table
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
    # The end-of-run report goes beside the run (not into the checkout's reports/); it opens with the answer,
    # and the terminal ends with the same answer.
    index = (d / "report" / "index.html").read_text()
    assert index.index('id="answer"') < index.index('id="findings"')
    tail = r.output[r.output.index("answer (token counts in K = 1024 tokens; CPU timings, not GPU ones):"):]
    joined = " ".join(tail.split())
    assert "dsa-triton" in joined and ("faster than" in joined or "as fast as" in joined)
    assert not (d / ".lock").exists()
    summary = json.loads((d / "summary.json").read_text())
    assert summary["headlines"] and {"speedup", "crossover", "shares"} <= set(summary["headlines"][0])
    # Resume of a finished run does nothing and still succeeds.
    r2 = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--out", str(tmp_path), "--device", "cpu", "--resume"])
    assert r2.exit_code == 0, r2.output
    assert len(list((tmp_path / "smoke").iterdir())) == 1


def test_version():
    r = cli.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("dsa-bench ")


def test_set_overrides_are_validated_like_the_file(tmp_path):
    from dsa_bench.scenario import load_scenario

    s = load_scenario(ROOT / "scenarios" / "decode-sweep.yaml", ["sweep.context=[8192, 65536]", "measure.min_samples=5"])
    assert s.sweep.context == [8192, 65536] and s.measure.min_samples == 5
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--set", "sweep.context=[-1]",
                         "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "sweep.context[0]: must be a positive integer, got -1" in r.output
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--set", "nonsense", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "expected FIELD.PATH=VALUE" in " ".join(r.output.split())
    assert not (tmp_path / "o").exists()


def test_only_and_dry_run_write_nothing(tmp_path):
    out = tmp_path / "o"
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--only", "no-such", "--out", str(out)])
    assert r.exit_code == 2 and "--only" in r.output
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--only", "dense-torch", "--dry-run",
                         "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "dense-torch" in r.output and "dsa-torch" not in r.output and "pairs" in r.output
    assert "expect ~" in r.output  # on the CPU the estimate counts the interpreter's compiles and checks
    assert not out.exists()


def test_quiet_prints_no_table(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: q\nmodel: tiny\nphase: decode\nimplementations: [dense-torch]\n"
                 "sweep: {context: [64]}\nmeasure: {min_samples: 3, min_time_ms: 0, warmup_ms: 0}\n"
                 "cpu: {sweep: {context: [64], topk: [16], batch: [1]}}\n")
    r = cli.invoke(app, ["run", str(p), "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet", "--no-report"])
    assert r.exit_code == 0, r.output
    assert "results (whole call" not in r.output and "[1/1]" not in r.output


def test_json_summary_on_stdout(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: j\nmodel: tiny\nphase: decode\nimplementations: [dense-torch]\n"
                 "sweep: {context: [64]}\nmeasure: {min_samples: 3, min_time_ms: 0, warmup_ms: 0}\n"
                 "cpu: {sweep: {context: [64], topk: [16], batch: [1]}}\n")
    r = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "o"), "--device", "cpu",
                                   "--json", "--no-report"])
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["scenario"] == "j" and summary["rows"][0]["status"] == "ok"


def test_filter_selects_points_and_rejects_bad_conditions(tmp_path):
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--dry-run", "--device", "cpu",
                         "--filter", "context>=100,topk<100"])
    assert r.exit_code == 0, r.output
    assert "4 (point, implementation) pairs" in r.output and "│ 37 " not in r.output
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--dry-run", "--device", "cpu",
                         "--filter", "topk<10"])  # no DSA point passes; dense points have no k and stay
    assert "4 (point, implementation) pairs" in r.output and "dsa-" not in r.output and "dense-torch" in r.output
    r = cli.invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--filter", "depth>3", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "'depth>3' is not FIELD OP NUMBER" in r.output
    assert not (tmp_path / "o").exists()


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in readme
    assert ci.startswith("python3 -m venv .venv && . .venv/bin/activate && ")


def test_cost_only_run_prints_its_curves_answer_not_an_empty_table(tmp_path):
    r = CliRunner().invoke(app, ["run", str(ROOT / "scenarios" / "paper-figure3.yaml"), "--out", str(tmp_path),
                                 "--set", "cost.position_step=8192"])
    assert r.exit_code == 0, r.output
    assert "results (whole call" not in r.output and "NOT GPU timings" not in r.output
    tail = " ".join(r.output[r.output.index("answer ("):].split())
    assert "cost per token of the full model" in tail and "priced on H800 at $2/GPU-hour" in tail
    assert "prefill (modelled: roofline): DSA cheaper from ≈" in tail and "at 128K" in tail


def test_cost_prices_a_gpu_run_on_its_own_gpu_unless_asked(tmp_path):
    import shutil

    run = tmp_path / "prefill-deployed" / "r"
    shutil.copytree(ROOT / "results" / "prefill-deployed" / "20261201-055818-cuda-6f88", run)
    r = CliRunner().invoke(app, ["cost", str(run)])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "cost_calibration.json").read_text())["gpu"] == "H200"
    tail = " ".join(r.output[r.output.index("answer ("):].split())
    assert "priced on H200 (this run's GPU) at $2/GPU-hour" in tail and "prefill (measured kernels)" in tail
    r = CliRunner().invoke(app, ["cost", str(run), "--gpu", "h800"])
    assert r.exit_code == 0, r.output
    assert "priced on H800 at $2/GPU-hour (the run's cost settings; it ran on H200)" in " ".join(r.output.split())
