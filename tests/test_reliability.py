"""Bad input gets a clear error and loses nothing; nothing is written outside the output directory.

The bad-scenario table: each case is a file's content, the fragment its error must contain (the
field's path where there is one), exit code 2 from `run`, and nothing written under --out.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsa_bench import store as store_mod
from dsa_bench.cli import app
from dsa_bench.store import RESULT_COLUMNS, RunLocked, RunStore, new_run_id

cli = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
name: t
model: tiny
phase: decode
implementations: [dense-torch]
sweep: {context: [64], topk: [16], batch: [1]}
"""


def _with(**lines: str) -> str:
    """GOOD with top-level keys replaced (values are YAML text)."""
    out = []
    for line in GOOD.splitlines():
        key = line.split(":", 1)[0]
        out.append(f"{key}: {lines.pop(key)}" if key in lines else line)
    out += [f"{k}: {v}" for k, v in lines.items()]
    return "\n".join(out) + "\n"


BAD = [
    # (id, file content (str or bytes), error fragment)
    ("empty", "", "<scenario>: must be a mapping"),
    ("list", "- a\n- b\n", "<scenario>: must be a mapping"),
    ("scalar", "42\n", "<scenario>: must be a mapping"),
    ("yaml-syntax", "name: [unclosed\n", "<yaml>: line"),
    ("tab-indent", "name: t\n\tmodel: tiny\n", "<yaml>:"),
    ("binary-nul", b"name: t\x00\x01\x02\n", "binary content"),
    ("not-utf8", b"name: \xff\xfe t\n", "not UTF-8"),
    ("deep-nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("duplicate-key", GOOD + "phase: prefill\n", "duplicate key 'phase'"),
    ("duplicate-nested-key", _with(sweep="{context: [64], context: [128]}"), "duplicate key 'context'"),
    ("missing-name", "\n".join(GOOD.splitlines()[1:]) + "\n", "name: required field is missing"),
    ("missing-sweep", "\n".join(GOOD.splitlines()[:-1]) + "\n", "sweep: required field is missing"),
    ("name-pattern", _with(name="'../../etc'"), "name: must start with a letter or digit"),
    ("name-too-long", _with(name="a" * 300), "name: must be at most 100 characters"),
    ("name-slash", _with(name="a/b"), "name: must start with a letter or digit"),
    ("unknown-top", GOOD + "colour: red\n", "colour: unknown field"),
    ("unknown-preset", _with(model="gpt-9"), "unknown model preset 'gpt-9'"),
    ("phase", _with(phase="train"), "phase: must be one of"),
    ("decode-tokens", GOOD + "decode_tokens: 3\n", "decode_tokens: must be one of"),
    ("prefill-tokens-decode", GOOD + "prefill_tokens: 16\n", "prefill_tokens: only for phase 'prefill'"),
    ("unknown-impl", _with(implementations="[no-such]"), "unknown implementation 'no-such'"),
    ("duplicate-impl", _with(implementations="[dense-torch, dense-torch]"), "each implementation may be listed once"),
    ("impl-phase", _with(phase="decode", implementations="[dense-sdpa]"), "does not support phase 'decode'"),
    ("context-negative", _with(sweep="{context: [-5]}"), "sweep.context[0]: must be a positive integer, got -5"),
    ("context-zero", _with(sweep="{context: [0]}"), "sweep.context[0]: must be a positive integer"),
    ("context-huge", _with(sweep="{context: [1000000000000]}"), "sweep.context[0]: must be at most 16777216"),
    ("context-float", _with(sweep="{context: [1.5]}"), "sweep.context[0]: must be an integer"),
    ("context-string", _with(sweep="{context: [abc]}"), "sweep.context[0]: must be an integer"),
    ("context-empty", _with(sweep="{context: []}"), "sweep.context: must have at least 1 item"),
    ("batch-huge", _with(sweep="{context: [64], batch: [1000000000000]}"), "sweep.batch[0]: must be at most 4096"),
    ("topk-zero", _with(sweep="{context: [64], topk: [0]}"), "sweep.topk[0]: must be a positive integer"),
    ("too-many-points", _with(sweep="{context: [" + ",".join(str(64 + i) for i in range(200)) + "], batch: ["
                              + ",".join(str(1 + i) for i in range(60)) + "]}"), "sweep: 12000 points"),
    ("zip-unequal", _with(sweep="{context: [64, 128], batch: [1], zip: [[context, batch]]}"), "zip: zipped axes must have equal lengths"),
    ("zip-single", _with(sweep="{context: [64], zip: [[context]]}"), "zip: a group needs at least two axes"),
    ("zip-unknown-axis", _with(sweep="{context: [64], zip: [[context, depth]]}"), "sweep.zip[0][1]: must be one of"),
    ("warmup-inf", GOOD + "measure: {warmup_ms: .inf}\n", "measure.warmup_ms: must be a finite number"),
    ("warmup-nan", GOOD + "measure: {warmup_ms: .nan}\n", "measure.warmup_ms: must be a finite number"),
    ("max-time-inf", GOOD + "measure: {max_time_ms: .inf}\n", "measure.max_time_ms: must be a finite number"),
    ("warmup-negative", GOOD + "measure: {warmup_ms: -1}\n", "measure.warmup_ms"),
    ("samples-order", GOOD + "measure: {min_samples: 10, max_samples: 5}\n", "max_samples (5) must be >= min_samples (10)"),
    ("dtype", GOOD + "measure: {dtype: int8}\n", "measure.dtype: must be one of"),
    ("unknown-measure", GOOD + "measure: {flush_l3: true}\n", "measure.flush_l3: unknown field"),
    ("cuda-graph-type", GOOD + "measure: {cuda_graph: maybe}\n", "measure.cuda_graph: must be true or false"),
    ("price-inf", GOOD + "cost: {gpu_hour_usd: .inf}\n", "cost.gpu_hour_usd: must be a finite number"),
    ("price-negative", GOOD + "cost: {gpu_hour_usd: -2}\n", "cost.gpu_hour_usd: must be positive"),
    ("paper-csv-missing", GOOD + "cost: {calibration: {paper_csv: /no/such/file.csv}}\n",
     "cost.calibration.paper_csv: no such file '/no/such/file.csv'"),
    ("cpu-section-unknown", GOOD + "cpu: {sweep: {context: [64]}, extra: 1}\n", "cpu.extra: unknown field"),
]


@pytest.mark.parametrize("content,fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_scenario_exits_2_names_the_problem_and_writes_nothing(tmp_path, content, fragment):
    path = tmp_path / "scenario.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    out = tmp_path / "out"
    r = cli.invoke(app, ["run", str(path), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert fragment in " ".join(r.output.split()), r.output
    assert not out.exists()


def test_bad_scenario_table_is_large():
    assert len(BAD) >= 40


@pytest.mark.parametrize("kind", ["fifo", "dir", "huge"])
def test_scenario_that_is_not_a_small_regular_file(tmp_path, kind):
    path = tmp_path / "s.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
        fragment = "not a regular file"
    elif kind == "dir":
        path.mkdir()
        fragment = "not a regular file"
    else:
        path.write_text(GOOD + "description: '" + "x" * (2 << 20) + "'\n")
        fragment = "more than the limit"
    r = cli.invoke(app, ["validate", str(path)])
    assert r.exit_code == 2 and fragment in " ".join(r.output.split())


def test_out_that_is_a_file_exits_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD + "cpu: {sweep: {context: [64], topk: [16], batch: [1]}}\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli.invoke(app, ["run", str(path), "--out", str(blocker), "--device", "cpu"])
    assert r.exit_code == 2 and "cannot create the run directory" in " ".join(r.output.split())


# --- the store: unique ids, locks, torn writes, atomic rewrites -----------------------------------

def test_run_ids_started_in_the_same_second_differ():
    assert len({new_run_id("cpu") for _ in range(50)}) == 50


def _store_with_points(tmp_path, points_rows: list[int], complete: list[bool]) -> RunStore:
    s = RunStore.create(tmp_path, "scn", "r1", {"scenario": {}})
    for i, (n, whole) in enumerate(zip(points_rows, complete)):
        rows = [dict(implementation="x", phase="decode", batch=1, context=64 + i, topk=16, stage=f"s{j}",
                     status="ok") for j in range(n)]
        samples = [dict(implementation="x", phase="decode", stage="total", batch=1, context=64 + i, topk=16,
                        chunk=0, sample=0, ms=1.0)]
        if whole:
            s.append(rows, samples)
        else:  # a crash between two rows of one point
            s._append(s.samples_path, store_mod.SAMPLE_COLUMNS, samples)
            s._append(s.results_path, RESULT_COLUMNS, [dict(r, point_rows=n) for r in rows[: n - 1]])
    return s


def test_a_point_is_done_only_when_all_its_rows_are(tmp_path):
    s = _store_with_points(tmp_path, [4, 4, 1], [True, False, True])
    done = s.reopen()
    assert {k[3] for k in done} == {64, 66}
    assert {int(r["context"]) for r in s.rows()} == {64, 66}  # the half point's rows are gone
    with s.samples_path.open() as f:
        assert {int(r["context"]) for r in csv.DictReader(f)} == {64, 66}


def test_a_kill_during_the_resume_rewrite_loses_nothing(tmp_path, monkeypatch):
    s = _store_with_points(tmp_path, [2, 2], [True, True])
    before = (s.results_path.read_bytes(), s.samples_path.read_bytes())

    def killed(*a, **k):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(store_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        s.reopen()
    assert (s.results_path.read_bytes(), s.samples_path.read_bytes()) == before
    monkeypatch.undo()
    assert len(s.reopen()) == 2


def test_a_run_being_written_by_another_process_is_refused(tmp_path):
    s = RunStore.create(tmp_path, "scn", "r1", {"scenario": {}})
    s.unlock()
    code = textwrap.dedent(f"""
        import sys, time
        from dsa_bench.store import RunStore
        held = RunStore({str(s.dir)!r}).lock()
        print("locked", flush=True)
        time.sleep(30)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match="another dsa-bench process"):
            RunStore(s.dir).reopen()
    finally:
        p.kill()
        p.wait()
    assert RunStore(s.dir).reopen() == set()  # the lock died with its process


# --- report and compare inputs ----------------------------------------------------------------------

def _fake_run(tmp_path, meta, results: bytes | None = None) -> Path:
    d = tmp_path / "runs" / "scn" / "r1"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps(meta))
    (d / "results.csv").write_bytes(results if results is not None else (",".join(RESULT_COLUMNS) + "\n").encode())
    return d


@pytest.mark.parametrize("meta,fragment", [
    ({"scenario_name": "../../../../tmp/x", "run_id": "r1"}, "scenario_name '../../../../tmp/x' is not a plain name"),
    ({"scenario_name": "scn", "run_id": "/tmp/abs"}, "run_id '/tmp/abs' is not a plain name"),
    ({"scenario_name": "scn", "run_id": ".."}, "run_id '..' is not a plain name"),
    ([1, 2, 3], "expected a JSON object, got list"),
])
def test_report_refuses_a_crafted_run_directory(tmp_path, meta, fragment):
    d = _fake_run(tmp_path, meta)
    out = tmp_path / "reports"
    r = cli.invoke(app, ["report", str(d), "--out", str(out)])
    assert r.exit_code == 2 and fragment in " ".join(r.output.split()), r.output
    assert not out.exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("content,fragment", [
    (b"", "empty file"), (b"\x00\x01\x02garbage", "binary content"), (b"a,b\n1,2\n", "not a dsa-bench results file"),
])
def test_report_and_compare_refuse_unreadable_results(tmp_path, content, fragment):
    d = _fake_run(tmp_path, {"scenario_name": "scn", "run_id": "r1"}, results=content)
    r = cli.invoke(app, ["report", str(d), "--out", str(tmp_path / "reports")])
    assert r.exit_code == 2 and fragment in " ".join(r.output.split()), r.output
    r = cli.invoke(app, ["compare", str(d), str(d)])
    assert r.exit_code == 2 and fragment in " ".join(r.output.split()), r.output


@pytest.mark.parametrize("args,fragment", [
    (["--fail-on-regression", "nan"], "must be a finite percentage"),
    (["--fail-on-regression", "-5"], "must be a finite percentage"),
    (["--fail-on-regression", "5"], "no point was measured in both runs"),
    (["--html", "."], "is a directory"),
])
def test_compare_gate_inputs(tmp_path, args, fragment, monkeypatch):
    a = _fake_run(tmp_path / "a", {"scenario_name": "scn", "run_id": "r1"})
    b = _fake_run(tmp_path / "b", {"scenario_name": "scn", "run_id": "r1"})
    monkeypatch.chdir(tmp_path)
    r = cli.invoke(app, ["compare", str(a), str(b), *args])
    assert r.exit_code == 2 and fragment in " ".join(r.output.split()), r.output


def test_gate_on_totals_ignores_a_noisy_stage():
    import pandas as pd

    from dsa_bench.report.compare import regressions

    df = pd.DataFrame({"stage": ["total", "topk"], "verdict": ["faster", "slower"], "change_pct": [-20.0, 40.0]})
    assert len(regressions(df, 5)) == 1
    assert regressions(df, 5, "total").empty


def test_cpu_out_of_memory_is_oom():
    from dsa_bench.runner import _is_oom

    assert _is_oom(MemoryError())
    assert _is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert not _is_oom(RuntimeError("shape mismatch"))


def test_sigterm_ends_a_run_like_ctrl_c(tmp_path):
    """SIGTERM mid-sweep: exit 130, run.json says interrupted, finished points are kept."""
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "dsa_bench", "run", str(ROOT / "scenarios" / "smoke.yaml"),
                          "--out", str(tmp_path), "--device", "cpu", "--no-report"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    results = None
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        found = list(tmp_path.glob("smoke/*/results.csv"))
        if found and len(found[0].read_text().splitlines()) >= 2:  # header + one finished point
            results = found[0]
            break
        time.sleep(0.2)
    if p.poll() is not None:
        pytest.skip("the smoke run finished before it could be interrupted")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 130
    meta = json.loads((results.parent / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert len(results.read_text().splitlines()) >= 2
