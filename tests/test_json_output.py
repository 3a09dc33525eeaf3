"""`dsa-bench run --json`: stdout of real runs is exactly one JSON document, typed, valid against the
shipped schema, in every mode (with and without the report, a cost-model-only run, a quality run, and
the rows of a committed GPU run); everything else goes to stderr."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsa_bench.cli import app
from dsa_bench.jsonout import SCHEMA_PATH, document
from schema_check import problems

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads(SCHEMA_PATH.read_text())
TINY = ("name: j\nmodel: tiny\nphase: decode\nimplementations: [dense-torch, dsa-torch]\n"
        "sweep: {context: [64]}\nmeasure: {min_samples: 3, min_time_ms: 0, warmup_ms: 0, max_time_ms: 50}\n"
        "cpu: {sweep: {context: [32, 128], topk: [16], batch: [1]}}\n")


def _valid(doc: dict) -> dict:
    assert problems(doc, SCHEMA) == []
    return doc


def test_the_checker_catches_what_a_wrong_document_gets_wrong():
    good = {"schema": "dsa-bench/run-output/1", "scenario": "s", "phase": "decode", "device": "cpu", "run_dir": None,
            "report": None, "failed_rows": 0, "answer": [], "summary": None, "cost_files": [], "rows": []}
    assert problems(good, SCHEMA) == []
    row = {k: None for k in SCHEMA["$defs"]["row"]["properties"]}
    row.update(implementation="x", phase="decode", stage="total", batch="2", context=64, status="ok")
    bad = dict(good, failed_rows=-1, rows=[dict(row, new_column=[1])], extra=1)
    found = " ".join(problems(bad, SCHEMA))
    assert "failed_rows: -1 < 0" in found and "unexpected key 'extra'" in found
    assert "rows[0].new_column: list" in found
    assert "rows[0].batch: str '2' is not integer" in found


def test_schema_declares_every_results_column():
    from dsa_bench.store import RESULT_COLUMNS

    assert set(RESULT_COLUMNS) <= set(SCHEMA["$defs"]["row"]["properties"])


def test_cli_run_json_with_report_is_one_typed_document(tmp_path):
    """A real process with a real stdout pipe: rich, print() and fd-1 writes all go to stderr."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(TINY)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "dsa_bench", "run", str(scenario), "--out", str(tmp_path / "o"),
                        "--device", "cpu", "--json"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = _valid(json.loads(r.stdout))
    assert "report:" in r.stderr and "answer" in r.stderr and "NOT GPU timings" in r.stderr
    assert Path(doc["report"]).is_file() and Path(doc["report"]).parent == Path(doc["run_dir"]) / "report"
    total = [x for x in doc["rows"] if x["stage"] == "total" and x["implementation"] == "dsa-torch"]
    assert total and isinstance(total[0]["batch"], int) and isinstance(total[0]["latency_ms"], float)
    assert total[0]["usd_per_million_tokens"] is None and total[0]["topk"] == 16
    head = doc["summary"]["headlines"]
    assert head and isinstance(head[0]["speedup"], float)
    assert doc["answer"] and "dsa-torch" in doc["answer"][0]
    assert not (Path(doc["run_dir"]) / ".lock").exists()  # a finished run leaves no lock file


def test_cli_run_json_without_report_and_cost_only(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(TINY)
    r = CliRunner().invoke(app, ["run", str(scenario), "--out", str(tmp_path / "o"), "--device", "cpu", "--json",
                                 "--no-report", "--set", "cpu.sweep.context=[32]"])
    assert r.exit_code == 0, r.stderr
    doc = _valid(json.loads(r.stdout))
    assert doc["report"] is None and doc["rows"] and doc["failed_rows"] == 0
    # A cost-model-only scenario (Figure 3): no rows, the curves' answer.
    r = CliRunner().invoke(app, ["run", str(ROOT / "scenarios" / "paper-figure3.yaml"), "--out", str(tmp_path / "f"),
                                 "--json", "--set", "cost.position_step=8192"])
    assert r.exit_code == 0, r.stderr
    doc = _valid(json.loads(r.stdout))
    fc = doc["summary"]["full_model_cost"]
    assert doc["rows"] == [] and [p["phase"] for p in fc["phases"]] == ["prefill", "decode"]
    assert fc["gpu"] == "H800" and all(p["timing"] == "modelled" for p in fc["phases"])
    assert "cost per token of the full model" in doc["answer"][-1]


def test_cli_quality_run_json(tmp_path):
    r = CliRunner().invoke(app, ["run", str(ROOT / "scenarios" / "indexer-quality.yaml"), "--out", str(tmp_path),
                                 "--json", "--device", "cpu", "--set", "quality.warmup_steps=4",
                                 "--set", "quality.sparse_steps=2", "--set", "quality.eval_every=2",
                                 "--set", "quality.topk=[8,32]"])
    assert r.exit_code == 0, r.stderr
    doc = _valid(json.loads(r.stdout))
    assert doc["phase"] == "quality" and doc["rows"] == [] and Path(doc["report"]).is_file()
    assert doc["summary"]["at_sparse_topk"]["k"] == 32 and doc["answer"][0].startswith("at k = 32")


@pytest.mark.parametrize("run", ["prefill-deployed/20261201-055818-cuda-6f88", "decode-sweep/20261201-034746-cuda"])
def test_document_of_committed_gpu_runs_is_valid(run):
    """GPU mode: the document `run --json` would print for a committed H200 run (its rows and summary)."""
    from dsa_bench.report.headline import summary_json
    from dsa_bench.report.load import load_run
    from dsa_bench.store import RunStore

    d = ROOT / "results" / run
    rows = RunStore(d).rows()
    summary = summary_json(load_run(d))
    doc = _valid(json.loads(json.dumps(document(
        scenario=run.split("/")[0], phase=rows[0]["phase"], device="cuda", run_dir=d, report=None, answer=[],
        summary=summary, rows=rows), allow_nan=False)))
    ok = [x for x in doc["rows"] if x["status"] == "ok"]
    assert ok and all(isinstance(x["latency_ms"], float) and isinstance(x["samples"], int) for x in ok)
    assert all(isinstance(x["peak_mem_bytes"], int) for x in ok if x["stage"] == "total")
    assert summary["full_model_cost"]["run_gpu"] == "H200"
