"""Hostile input, round two (issue 25): strict types, relations, YAML tags and alias bombs, the error
boundary of every command, plug-ins that try to end the process, silent no-ops, and a full disk.

Each class has its own section; every case checks the exit code, that the message names the field,
file or option, and that no traceback is printed.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsa_bench import store as store_mod
from dsa_bench.cli import app
from dsa_bench.store import RESULT_COLUMNS, RunStore

cli = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
name: t
model: tiny
phase: decode
implementations: [dense-torch]
sweep: {context: [64], topk: [16], batch: [1]}
"""

# A sweep of cheap PyTorch references: three points x two implementations in about a second.
FAST = """\
name: fast
model: tiny
phase: decode
implementations: [dense-torch, dsa-torch]
sweep: {context: [64, 128, 256], topk: [16], batch: [1]}
measure: {min_samples: 3, max_samples: 3, min_time_ms: 0, max_time_ms: 50, warmup_ms: 0, stages: false}
cpu:
  sweep: {context: [64, 128, 256], topk: [16], batch: [1]}
"""


def _text(r) -> str:
    return " ".join(r.output.split())


def _no_traceback(r) -> None:
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output, r.output


def _invoke(*args, **kw):
    r = cli.invoke(app, [str(a) for a in args], **kw)
    _no_traceback(r)
    return r


def _write(tmp_path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _with(**lines: str) -> str:
    """GOOD with top-level keys replaced or added (values are YAML text)."""
    out = []
    for line in GOOD.splitlines():
        key = line.split(":", 1)[0]
        out.append(f"{key}: {lines.pop(key)}" if key in lines else line)
    out += [f"{k}: {v}" for k, v in lines.items()]
    return "\n".join(out) + "\n"


def _bomb(levels: int = 9, width: int = 9) -> str:
    """A YAML flow list whose aliases expand to width**levels values (a few hundred bytes)."""
    parts = ["&a0 [" + ",".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        parts.append(f"&a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


def _fast_run(tmp_path, *extra, scenario: str = FAST):
    s = _write(tmp_path, scenario, "fast.yaml")
    out = tmp_path / "out"
    r = _invoke("run", s, "--out", out, "--device", "cpu", "--no-report", *extra)
    runs = sorted((out / "fast").iterdir()) if (out / "fast").is_dir() else []
    return r, s, out, runs


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open() as f:
        return list(csv.DictReader(f))


# --- 1. strict types, tags, relations ---------------------------------------------------------------

STRICT = [
    # (id, scenario text, fragment of the error)
    ("context-bool", _with(sweep="{context: [true]}"), "sweep.context[0]: must be an integer"),
    ("context-float-integral", _with(sweep="{context: [2048.0]}"), "sweep.context[0]: must be an integer"),
    ("context-string-digits", _with(sweep='{context: ["2048"]}'), "sweep.context[0]: must be an integer"),
    ("context-exponent", _with(sweep="{context: [1e3]}"), "sweep.context[0]: must be an integer"),
    ("batch-bool", _with(sweep="{context: [64], batch: [false]}"), "sweep.batch[0]: must be an integer"),
    ("topk-float", _with(sweep="{context: [64], topk: [16.0]}"), "sweep.topk[0]: must be an integer"),
    ("min-samples-bool", GOOD + "measure: {min_samples: true}\n", "measure.min_samples: must be an integer"),
    ("seed-float", GOOD + "measure: {seed: 1.5}\n", "measure.seed: must be an integer"),
    ("flush-l2-int", GOOD + "measure: {flush_l2: 1}\n", "measure.flush_l2: must be true or false"),
    ("flush-l2-string", GOOD + 'measure: {flush_l2: "yes"}\n', "measure.flush_l2: must be true or false"),
    ("warmup-bool", GOOD + "measure: {warmup_ms: true}\n", "measure.warmup_ms: must be a number"),
    ("decode-tokens-bool", GOOD + "decode_tokens: true\n", "decode_tokens: must be an integer"),
    ("name-int", _with(name="123"), "name: must be a string"),
    ("description-list", GOOD + "description: [a]\n", "description: must be a string"),
    ("impl-int", _with(implementations="[5]"), "implementations[0]: must be a string"),
    ("model-heads-bool", _with(model="{preset: tiny, heads: true}"), "model.heads: must be an integer"),
    ("model-heads-huge", _with(model="{preset: tiny, heads: 1000000000000}"), "model.heads: must be at most 1024"),
    ("model-latent-huge", _with(model="{preset: tiny, kv_lora_rank: 1099511627776}"),
     "model.kv_lora_rank: must be at most 65536"),
    ("model-head-dim-huge", _with(model="{preset: tiny, qk_rope_head_dim: 100000}"),
     "model.qk_rope_head_dim: must be at most 4096"),
    ("model-index-heads-huge", _with(model="{preset: tiny, index_heads: 5000}"), "model.index_heads: must be at most 1024"),
    ("cpu-model-huge", GOOD + "cpu: {model: {preset: tiny, heads: 99999}, sweep: {context: [64]}}\n",
     "cpu.model.heads: must be at most 1024"),
    ("price-bool", GOOD + "cost: {gpu_hour_usd: true}\n", "cost.gpu_hour_usd: must be a number"),
    ("price-huge", GOOD + "cost: {gpu_hour_usd: 1.0e+308}\n", "cost.gpu_hour_usd: must be at most"),
    ("cost-decode-tokens-bool", GOOD + "cost: {decode_tokens: true}\n", "cost.decode_tokens: must be an integer"),
    ("cost-topk-string", GOOD + 'cost: {topk: "2048"}\n', "cost.topk: must be an integer"),
    ("quality-steps-float", "name: q\nmodel: tiny\nphase: quality\nquality: {warmup_steps: 3.0}\n",
     "quality.warmup_steps: must be an integer"),
    # tags other than the standard scalar ones
    ("tag-set", _with(implementations="!!set {dense-torch: null}"), "the tag !!set is not allowed"),
    ("tag-binary", _with(implementations="[!!binary ZGVuc2UtdG9yY2g=]"), "the tag !!binary is not allowed"),
    ("tag-timestamp", GOOD + "description: !!timestamp 2026-12-01\n", "the tag !!timestamp is not allowed"),
    ("tag-omap", GOOD + "measure: !!omap [{seed: 1}]\n", "the tag !!omap is not allowed"),
    ("tag-application", GOOD + "description: !mine hello\n", "the tag !mine is not allowed"),
    ("tag-python", _with(name="!!python/object/apply:os.system ['true']"), "is not allowed"),
    # relations
    ("zip-same-axis", _with(sweep="{context: [64, 128], zip: [[context, context]]}"), "zip: a group names an axis twice"),
    ("decode-tokens-over-context", _with(sweep="{context: [1, 64]}") + "decode_tokens: 2\n",
     "decode_tokens: 2 query tokens do not fit in the smallest context of sweep.context (1 tokens)"),
    ("prefill-tokens-over-context", _with(phase="prefill", sweep="{context: [64, 128]}") + "prefill_tokens: 100\n",
     "prefill_tokens: 100 query tokens do not fit in the smallest context of sweep.context (64 tokens)"),
    ("prefill-tokens-over-cpu-context", _with(phase="prefill", sweep="{context: [4096]}")
     + "prefill_tokens: 1024\ncpu: {sweep: {context: [256]}}\n",
     "prefill_tokens: 1024 query tokens do not fit in the smallest context of cpu.sweep.context"),
    ("cpu-prefill-tokens-over-cpu-context", _with(phase="prefill", sweep="{context: [4096]}")
     + "prefill_tokens: 1024\ncpu: {prefill_tokens: 512, sweep: {context: [256]}}\n",
     "cpu.prefill_tokens: 512 query tokens do not fit"),
    ("cpu-prefill-tokens-alone", _with(phase="prefill") + "cpu: {prefill_tokens: 8, sweep: {context: [64]}}\n",
     "cpu.prefill_tokens: only with prefill_tokens"),
    # the plug-in list is checked before any file is imported
    ("plugins-not-strings", GOOD + "implementations_from: [1, 2]\n", "implementations_from: must be a list of file paths"),
    ("plugins-too-many", GOOD + "implementations_from: [" + ",".join(f"p{i}.py" for i in range(101)) + "]\n",
     "implementations_from: at most 100 plug-in files"),
    # alias bombs and self-containing aliases, under any key
    ("bomb-implementations-from", GOOD + f"implementations_from: {_bomb()}\n", "expands to more than 100,000 values"),
    ("bomb-description", GOOD + f"description: {_bomb()}\n", "expands to more than 100,000 values"),
    ("bomb-sweep", _with(sweep="{context: " + _bomb() + "}"), "expands to more than 100,000 values"),
    ("recursive-alias", GOOD + "description: &a [*a]\n", "a recursive alias"),
]


@pytest.mark.parametrize("content,fragment", [c[1:] for c in STRICT], ids=[c[0] for c in STRICT])
def test_hostile_scenario_is_refused_by_field(tmp_path, content, fragment):
    path = _write(tmp_path, content)
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = _invoke("run", path, "--out", out, "--device", "cpu")
    assert time.monotonic() - t0 < 20  # an alias bomb is refused at once, not expanded
    assert r.exit_code == 2, r.output
    assert fragment in _text(r), r.output
    assert not out.exists()
    assert _invoke("validate", path).exit_code == 2


def test_plain_yaml_forms_stay_accepted(tmp_path):
    """Merge keys (and an override beside them), explicit standard scalar tags, an unquoted date."""
    from dsa_bench.scenario import load_scenario

    p = _write(tmp_path, "name: t\nmodel: tiny\nphase: decode\nimplementations: [dense-torch]\n"
                         "description: 2026-12-01\n"
                         "cpu: {sweep: &s {context: [64], topk: [16], batch: [1]}}\n"
                         "sweep: {<<: *s, batch: [2]}\n"
                         "measure: {min_samples: !!int 3, flush_l2: !!bool true, warmup_ms: !!float 1}\n")
    s = load_scenario(p)
    assert s.description == "2026-12-01"
    assert (s.sweep.context, s.sweep.batch, s.measure.min_samples) == ([64], [2], 3)


def test_duplicate_key_beside_a_merge_is_still_refused(tmp_path):
    p = _write(tmp_path, GOOD.replace("sweep: {context: [64], topk: [16], batch: [1]}",
                                      "sweep: {<<: {topk: [16]}, context: [64], context: [128]}"))
    r = _invoke("validate", p)
    assert r.exit_code == 2 and "duplicate key 'context'" in _text(r)


@pytest.mark.parametrize("value,fragment", [
    ("!!set {dense-torch: null}", "the tag !!set is not allowed"),
    (_bomb(), "expands to more than"),
    ("[true]", "sweep.context[0]: must be an integer"),
    ('["64"]', "sweep.context[0]: must be an integer"),
])
def test_set_values_go_through_the_same_yaml_path(tmp_path, value, fragment):
    p = _write(tmp_path, GOOD)
    r = _invoke("run", p, "--set", f"sweep.context={value}", "--dry-run", "--device", "cpu")
    assert r.exit_code == 2 and fragment in _text(r), r.output


def test_yaml_loader_unit():
    from dsa_bench.yaml_strict import YamlError, load_yaml

    assert load_yaml("a: {<<: {b: 1}, b: 2}") == {"a": {"b": 2}}
    assert load_yaml("") is None
    for text in ("!!set {a, b}", "a: !!binary aGk=", "a: &x [*x]", f"a: {_bomb(levels=7, width=6)}"):
        with pytest.raises(YamlError):
            load_yaml(text)


# --- 2. one error boundary: clear message, right exit code, nothing half-written ------------------------

def _all_commands(typer_app):
    """Every command and group callback of a Typer app, sub-apps (`peers ...`) included."""
    yield from typer_app.registered_commands
    if typer_app.registered_callback is not None:
        yield typer_app.registered_callback
    for group in typer_app.registered_groups:
        yield from _all_commands(group.typer_instance)


def test_every_command_runs_inside_the_error_boundary():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"run", "report", "compare", "cost", "validate", "list"} <= names
    commands = list(_all_commands(app))
    assert len(commands) > len(app.registered_commands)  # the sub-apps are walked too
    for c in commands:
        assert hasattr(c.callback, "__wrapped__"), f"{c.callback.__name__} is not guarded"


def test_an_internal_error_is_one_paragraph_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    import dsa_bench.report.cli_commands as cc

    def broken(*a, **k):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(cc, "compare_command", broken)
    r = _invoke("compare", tmp_path, tmp_path)
    assert r.exit_code == 1
    assert "internal error: RuntimeError: something inside broke" in _text(r) and "--debug" in _text(r)
    r = cli.invoke(app, ["--debug", "compare", str(tmp_path), str(tmp_path)])
    assert r.exit_code == 1 and "Traceback" in r.output and "something inside broke" in r.output


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """One finished FAST run (three points, two implementations) that tests copy and damage."""
    tmp = tmp_path_factory.mktemp("fast-run")
    r, s, out, runs = _fast_run(tmp)
    assert r.exit_code == 0, r.output
    return runs[0]


def _copy_run(src: Path, dest_root: Path) -> Path:
    import shutil

    dest = dest_root / "runs" / "fast" / src.name
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize("damage,fragment", [
    (lambda d: (d / "run.json").write_text("{not json"), "run.json: not valid JSON"),
    (lambda d: (d / "run.json").write_bytes(b"\xff\xfe\x00"), "run.json: not valid JSON"),
    (lambda d: _edit_meta(d, scenario="a string"), "run.json: field scenario must be an object"),
    (lambda d: _edit_meta(d, environment=[1, 2]), "run.json: field environment must be an object"),
    (lambda d: _edit_meta(d, run_id=5), "run.json: field run_id must be a string"),
    (lambda d: _edit_meta(d, scenario={"cost": {"gpu_hour_usd": "cheap"}}),
     "run.json: field scenario.cost.gpu_hour_usd must be a number"),
    (lambda d: _edit_meta(d, scenario={"sweep": {"context": "64"}}), "field scenario.sweep.context must be a list"),
    (lambda d: _symlink(d / "results.csv", ROOT / "README.md"), "results.csv is a symbolic link"),
    (lambda d: _symlink(d / "run.json", ROOT / "pyproject.toml"), "run.json is a symbolic link"),
])
def test_damaged_run_directories_are_refused_by_report_compare_cost(tmp_path, fast_run, damage, fragment):
    d = _copy_run(fast_run, tmp_path)
    damage(d)
    for args in (["report", d, "--out", tmp_path / "reports"], ["compare", d, fast_run], ["cost", d]):
        r = _invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert fragment in _text(r), (args, r.output)
    assert not (tmp_path / "reports").exists()


def _edit_meta(d: Path, **fields) -> None:
    meta = json.loads((d / "run.json").read_text())
    meta.update(fields)
    (d / "run.json").write_text(json.dumps(meta))


def _symlink(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("damage,fragment", [
    (lambda d: (d / "run.json").write_text("{not json"), "run.json: not valid JSON"),
    (lambda d: _symlink(d / "results.csv", d.parent.parent / "unrelated.csv"), "results.csv is a symbolic link"),
])
def test_resume_refuses_a_damaged_run_and_touches_nothing(tmp_path, fast_run, damage, fragment):
    d = _copy_run(fast_run, tmp_path)
    unrelated = tmp_path / "runs" / "unrelated.csv"
    unrelated.write_text("implementation,phase\nkeep,me\n")
    damage(d)
    s = _write(tmp_path, FAST, "fast.yaml")
    r = _invoke("run", s, "--out", tmp_path / "runs", "--device", "cpu", "--no-report", "--resume")
    assert r.exit_code == 2 and fragment in _text(r), r.output
    assert unrelated.read_text() == "implementation,phase\nkeep,me\n"


def test_report_out_that_is_a_file_or_under_a_file(tmp_path, fast_run):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        r = _invoke("report", fast_run, "--out", out)
        assert r.exit_code == 2, r.output
        assert "cannot write the report under" in _text(r) and str(blocker) in _text(r), r.output
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_report_out_that_is_not_writable(tmp_path, fast_run):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = _invoke("report", fast_run, "--out", ro)
        assert r.exit_code == 2 and "Permission denied" in _text(r), r.output
    finally:
        ro.chmod(0o755)


def test_run_with_a_report_out_that_is_a_file_keeps_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    s = _write(tmp_path, FAST, "fast.yaml")
    r = _invoke("run", s, "--out", tmp_path / "out", "--device", "cpu", "--report-out", blocker,
                "--set", "cpu.sweep.context=[64]")
    assert r.exit_code == 1, r.output
    assert "cannot write the report under" in _text(r) and "the report failed" in _text(r)
    (run,) = (tmp_path / "out" / "fast").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_a_failing_report_leaves_the_previous_report_whole_and_no_temporary_folder(tmp_path, fast_run, monkeypatch):
    from dsa_bench import report as report_mod

    reports = tmp_path / "reports"
    assert _invoke("report", fast_run, "--out", reports).exit_code == 0
    (index,) = reports.glob("fast/*/index.html")
    before = sorted(p.name for p in index.parent.iterdir())

    def broken_template(*a, **k):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(report_mod, "_env", broken_template)
    r = _invoke("report", fast_run, "--out", reports)
    assert r.exit_code == 1 and "template exploded" in _text(r) and "could not be written" in _text(r)
    assert sorted(p.name for p in index.parent.iterdir()) == before
    assert [p.name for p in index.parent.parent.iterdir()] == [index.parent.name]  # no .tmp folder left


@pytest.mark.parametrize("price,fragment", [
    ("inf", "--price: must be a positive, finite number"), ("nan", "--price: must be a positive, finite number"),
    ("-1", "--price: must be a positive, finite number"), ("0", "--price: must be a positive"),
    ("1e308", "at most 1e+06"),
])
def test_cost_price_is_checked_and_named(tmp_path, fast_run, price, fragment):
    r = _invoke("cost", fast_run, "--price", price)
    assert r.exit_code == 2 and fragment in _text(r), r.output
    s = _write(tmp_path, FAST)
    r = _invoke("run", s, "--price", price, "--dry-run", "--device", "cpu")
    assert r.exit_code == 2 and fragment in _text(r), r.output


def test_cost_unknown_gpu_is_named(fast_run):
    r = _invoke("cost", fast_run, "--gpu", "tpu-v9")
    assert r.exit_code == 2 and "tpu-v9" in _text(r), r.output


def test_a_missing_measured_run_says_so(tmp_path):
    s = _write(tmp_path, FAST.replace("cpu:\n", "cost: {curves: true, source: measured, measured_run: "
                                               f"{tmp_path / 'nowhere'}}}\ncpu:\n"), "fast.yaml")
    r = _invoke("run", s, "--out", tmp_path / "out", "--device", "cpu", "--no-report")
    assert r.exit_code == 2, r.output
    assert "cost.measured_run: no results.csv at" in _text(r) and "cannot create the run directory" not in _text(r)


def test_strict_json_everywhere():
    from dsa_bench.safe_io import dumps

    text = dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}, "p": Path("x")})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}")) == \
        {"a": None, "b": [None, 1.5], "c": {"d": None}, "p": "x"}
    import numpy as np

    assert json.loads(dumps({"n": np.float64("nan"), "m": np.array([1.0, np.inf])})) == {"n": None, "m": [1.0, None]}


def test_run_json_with_a_non_finite_value_is_strict_json(tmp_path):
    s = RunStore.create(tmp_path, "scn", "r1", {"scenario": {}, "x": float("nan"), "y": float("inf")})
    s.unlock()
    text = s.meta_path.read_text()
    assert "NaN" not in text and "Infinity" not in text and json.loads(text)["x"] is None


# --- 3. plug-ins run inside the boundary --------------------------------------------------------------

PLUGIN_HEAD = """\
import sys
from dsa_bench.registry import Implementation, Prepared, register
"""


def _plugin_scenario(tmp_path, name: str, body: str, impls: str) -> Path:
    (tmp_path / f"{name}.py").write_text(PLUGIN_HEAD + body)
    return _write(tmp_path, FAST.replace("implementations: [dense-torch, dsa-torch]",
                                         f"implementations_from: [{name}.py]\nimplementations: [{impls}]"), "fast.yaml")


def _register(name: str, run_body: str) -> str:
    """Plug-in code registering `name`, a dense implementation whose call runs `run_body`."""
    return (f"def _prepare(w):\n    def run():\n        {run_body}\n    return Prepared(run=run)\n"
            f"register(Implementation(name={name!r}, family='dense', backend='plugin', "
            "phases=frozenset({'decode'}), prepare=_prepare))\n")


@pytest.mark.parametrize("stmt,reason", [
    ("sys.exit(0)", "SystemExit"), ("sys.exit(3)", "SystemExit: 3"), ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("raise GeneratorExit", "GeneratorExit"), ("raise BaseException('odd')", "BaseException: odd"),
])
def test_a_plugin_ending_the_process_at_import_becomes_error_rows(tmp_path, stmt, reason):
    name = f"imp-{abs(hash((stmt, str(tmp_path)))) % 10**8}"
    s = _plugin_scenario(tmp_path, "p", f"{stmt}\n" + _register(name, "return None"), f"{name}, dense-torch")
    out = tmp_path / "out"
    r = _invoke("run", s, "--out", out, "--device", "cpu", "--no-report")
    assert r.exit_code == 1, r.output
    assert "implementations_from[0]: cannot load 'p.py'" in _text(r) and reason in _text(r)
    (run,) = (out / "fast").iterdir()
    rows = _rows(run)
    mine = [x for x in rows if x["implementation"] == name]
    assert len(mine) == 3 and {x["status"] for x in mine} == {"error"} and all(reason in x["reason"] for x in mine)
    assert {x["status"] for x in rows if x["implementation"] == "dense-torch"} == {"ok"}
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    r = _invoke("validate", s)  # a check reports the failing plug-in
    assert r.exit_code == 2 and reason in _text(r)


@pytest.mark.parametrize("stmt,reason", [
    ("sys.exit(0)", "SystemExit: 0"), ("raise SystemExit('bye')", "SystemExit: bye"),
    ("raise KeyboardInterrupt('fake')", "KeyboardInterrupt: fake"),
])
def test_a_plugin_ending_the_process_in_run_is_an_error_row_and_the_sweep_goes_on(tmp_path, stmt, reason):
    name = f"run-{abs(hash((stmt, str(tmp_path)))) % 10**8}"
    s = _plugin_scenario(tmp_path, "q", _register(name, stmt), f"{name}, dense-torch, dsa-torch")
    out = tmp_path / "out"
    r = _invoke("run", s, "--out", out, "--device", "cpu", "--no-report")
    assert r.exit_code == 1, r.output
    (run,) = (out / "fast").iterdir()
    rows = _rows(run)
    mine = [x for x in rows if x["implementation"] == name]
    assert len(mine) == 3 and all(x["status"] == "error" and reason in x["reason"] for x in mine), mine
    assert len([x for x in rows if x["status"] == "ok"]) == 6  # dense-torch and dsa-torch at 3 points
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_a_real_ctrl_c_inside_a_plugin_still_interrupts_the_run(tmp_path):
    """The user's SIGINT arrives while the plug-in runs: the run stops (130, interrupted), it is not an
    error row of the plug-in."""
    name = f"slow-{abs(hash(str(tmp_path))) % 10**8}"
    body = "import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(5)"
    s = _plugin_scenario(tmp_path, "c", _register(name, body), f"dense-torch, {name}")
    out = tmp_path / "out"
    r = _invoke("run", s, "--out", out, "--device", "cpu", "--no-report")
    assert r.exit_code == 130, r.output
    (run,) = (out / "fast").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not [x for x in _rows(run) if x["implementation"] == name]


def test_interrupt_tracking_unit():
    from dsa_bench import interrupts

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):  # outside tracking it cannot be told apart: the user's
        interrupts.reraise_if_user_interrupt(KeyboardInterrupt())
    with interrupts.tracking():
        interrupts.reraise_if_user_interrupt(KeyboardInterrupt())  # code's own: returns
        interrupts.reraise_if_user_interrupt(SystemExit(0))
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        with pytest.raises(KeyboardInterrupt):
            interrupts.reraise_if_user_interrupt(KeyboardInterrupt())
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("make,fragment", [
    (lambda d: (d / "p.txt").write_text("x = 1\n"), "is not a Python file"),
    (lambda d: (d / "p.txt").mkdir(), "is not a regular file"),
])
def test_a_plugin_that_is_not_a_python_file_says_why(tmp_path, make, fragment):
    make(tmp_path)
    s = _write(tmp_path, GOOD + "implementations_from: [p.txt]\n")
    r = _invoke("validate", s)
    assert r.exit_code == 2 and "implementations_from[0]: cannot load 'p.txt'" in _text(r) and fragment in _text(r)
    assert "AttributeError" not in _text(r)


# --- 4. say what did not happen ---------------------------------------------------------------------------

def test_a_filter_matching_nothing_is_an_error_and_writes_nothing(tmp_path):
    r, _, out, runs = _fast_run(tmp_path, "--filter", "context>=100000")
    assert r.exit_code == 2 and "--filter: no (point, implementation) of the scenario matches" in _text(r), r.output
    assert "[64, 128, 256]" in _text(r) and not runs


def test_resume_with_nothing_to_resume_is_an_error(tmp_path):
    r, _, out, runs = _fast_run(tmp_path, "--resume")
    assert r.exit_code == 2 and "--resume: there is no earlier run of scenario 'fast'" in _text(r), r.output
    assert not runs


def test_resume_of_a_finished_run_says_nothing_was_left(tmp_path, fast_run):
    d = _copy_run(fast_run, tmp_path)
    s = _write(tmp_path, FAST, "fast.yaml")
    r = _invoke("run", s, "--out", d.parent.parent, "--device", "cpu", "--no-report", "--resume")
    assert r.exit_code == 0 and "nothing new was measured" in _text(r), r.output


@pytest.mark.parametrize("override,cpu_measure,refused", [
    ("sweep.context=[128]", None, True),
    ("sweep.batch=[2]", None, True),
    ("model={preset: tiny, heads: 4}", None, False),  # the cpu: section has no model: the top-level one runs
    ("measure.seed=4", "{seed: 3}", True),
    ("measure.seed=4", "{warmup_ms: 0}", False),
    ("cpu.sweep.context=[128]", None, False),
])
def test_set_that_the_cpu_section_would_replace_is_refused(tmp_path, override, cpu_measure, refused):
    text = FAST + (f"  measure: {cpu_measure}\n" if cpu_measure else "")
    s = _write(tmp_path, text)
    r = _invoke("run", s, "--set", override, "--device", "cpu", "--dry-run")
    if refused:
        field = override.split("=")[0]
        assert r.exit_code == 2, r.output
        assert f"--set {field}: this run is on the CPU" in _text(r) and f"--set cpu.{field}" in _text(r)
    else:
        assert r.exit_code == 0, r.output


def test_set_on_a_gpu_sized_field_is_applied_where_it_runs():
    from dsa_bench.scenario import load_scenario

    s = load_scenario(ROOT / "scenarios" / "smoke.yaml", ["cpu.sweep.context=[32]"])
    assert s.for_device("cpu").sweep.context == [32]


def _fake_meta_run(tmp_path, name: str, scenario: dict) -> Path:
    d = tmp_path / name / "r1"
    d.mkdir(parents=True)
    header = ",".join(RESULT_COLUMNS)
    row = {c: "" for c in RESULT_COLUMNS}
    row.update(implementation="dense-torch", family="dense", phase="decode", stage="total", batch="1",
               context="64", status="ok", latency_ms="1.0", latency_ms_q1="0.9", latency_ms_q3="1.1")
    (d / "results.csv").write_text(header + "\n" + ",".join(row[c] for c in RESULT_COLUMNS) + "\n")
    (d / "run.json").write_text(json.dumps({"scenario_name": scenario["name"], "run_id": "r1", "scenario": scenario}))
    return d


def test_compare_refuses_runs_of_different_work_and_notes_different_scenarios(tmp_path):
    base = {"name": "a", "phase": "decode", "decode_tokens": 1, "model": {"name": "tiny", "heads": 8}}
    a = _fake_meta_run(tmp_path / "A", "a", base)
    b = _fake_meta_run(tmp_path / "B", "a", {**base, "model": {"name": "big", "heads": 128}})
    c = _fake_meta_run(tmp_path / "C", "a", {**base, "decode_tokens": 2})
    renamed = _fake_meta_run(tmp_path / "D", "b", {**base, "name": "b"})
    r = _invoke("compare", a, b)
    assert r.exit_code == 2 and "not comparable" in _text(r)
    assert "model dimensions differ (A: tiny, B: big: heads 8 vs 128)" in _text(r), r.output
    r = _invoke("compare", a, c)
    assert r.exit_code == 2 and "decode_tokens differs (A: 1, B: 2)" in _text(r)
    r = _invoke("compare", a, b, "--allow-different")
    assert r.exit_code == 0 and "model dimensions differ" in _text(r), r.output
    r = _invoke("compare", a, renamed)
    assert r.exit_code == 0 and "different scenarios (a vs b)" in _text(r), r.output
    older = _fake_meta_run(tmp_path / "E", "a", {"name": "a", "phase": "decode", "model": {"name": "tiny"}})
    r = _invoke("compare", a, older)  # fields an older run.json lacks are not differences
    assert r.exit_code == 0, r.output


# --- 5. a full disk ---------------------------------------------------------------------------------------

def _disk_fills_after(monkeypatch, n_appends: int) -> list[int]:
    """os.write in the store succeeds for n_appends appends, then writes half of the next one and
    raises ENOSPC (a real full disk can cut a write anywhere)."""
    real_write = os.write
    calls = [0]

    def write(fd, data):
        calls[0] += 1
        if calls[0] <= n_appends:
            return real_write(fd, data)
        real_write(fd, bytes(data[: max(1, len(data) // 2)]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod.os, "write", write)
    return calls


def test_disk_full_mid_run_fails_cleanly_and_resume_completes(tmp_path, monkeypatch):
    _disk_fills_after(monkeypatch, 4)  # samples + results of two points; the third point's samples hit a full disk
    r, s, out, runs = _fast_run(tmp_path)
    assert r.exit_code == 1, r.output
    text = _text(r)
    assert "No space left on device" in text and "samples.csv" in text and "--resume" in text
    assert "cannot create the run directory" not in text
    (run,) = runs
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed" and "No space left" in meta["failure"]
    for name, cols in (("results.csv", RESULT_COLUMNS), ("samples.csv", store_mod.SAMPLE_COLUMNS)):
        data = (run / name).read_bytes()
        assert data.endswith(b"\n"), f"{name} ends in a torn line"
        assert all(len(row) == len(cols) for row in csv.reader(data.decode().splitlines())), name
    assert len(_rows(run)) == 2  # the two finished points are intact
    monkeypatch.undo()
    r = _invoke("run", s, "--out", out, "--device", "cpu", "--no-report", "--resume")
    assert r.exit_code == 0, r.output
    rows = _rows(run)
    keys = [(x["implementation"], x["context"]) for x in rows]
    assert len(keys) == 6 == len(set(keys))
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_a_failed_append_is_cut_back_to_whole_rows(tmp_path, monkeypatch):
    st = RunStore.create(tmp_path, "scn", "r1", {"scenario": {}})
    row = dict(implementation="x", phase="decode", batch=1, context=64, topk=16, stage="total", status="ok")
    st.append([row])
    before = st.results_path.read_bytes()
    _disk_fills_after(monkeypatch, 0)
    with pytest.raises(OSError):
        st.append([dict(row, context=128)], [dict(implementation="x", phase="decode", stage="total", batch=1,
                                                  context=128, topk=16, chunk=0, sample=0, ms=1.0)])
    assert st.results_path.read_bytes() == before
    assert st.samples_path.read_text().count("\n") == 1  # the header only


def test_run_json_is_still_marked_when_the_disk_is_too_full_for_a_copy(tmp_path, monkeypatch):
    from dsa_bench import safe_io

    st = RunStore.create(tmp_path, "scn", "r1", {"scenario": {}, "status": "running"})

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safe_io, "write_text", no_space)
    st.write_meta({"scenario": {}, "status": "failed"})
    assert json.loads(st.meta_path.read_text())["status"] == "failed"
    st.unlock()


# --- more of the boundary: a report never replaces results, damaged CSV cells, run.json after a crash ----

def test_a_report_aimed_at_the_results_directory_is_refused_and_the_run_kept(tmp_path, fast_run):
    d = _copy_run(fast_run, tmp_path)
    before = sorted(p.name for p in d.iterdir())
    r = _invoke("report", d, "--out", d.parent.parent)  # results root as reports root: the same folder
    assert r.exit_code == 2 and "holds a run's results" in _text(r), r.output
    assert sorted(p.name for p in d.iterdir()) == before


@pytest.mark.parametrize("column,value", [("batch", "1.5"), ("context", "1e30"), ("topk", "99999999999999999999")])
def test_a_results_cell_that_is_not_an_integer_is_named(tmp_path, fast_run, column, value):
    d = _copy_run(fast_run, tmp_path)
    rows = _rows(d)
    rows[1][column] = value
    with (d / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for args in (["report", d, "--out", tmp_path / "reports"], ["compare", d, fast_run]):
        r = _invoke(*args)
        assert r.exit_code == 2, r.output
        assert f"results.csv: column {column}, row 3: '{value}' is not an integer" in _text(r), r.output


def test_a_plugin_path_the_os_refuses_is_named(tmp_path):
    s = _write(tmp_path, GOOD + 'implementations_from: ["a\\0b.py"]\n')
    r = _invoke("validate", s)
    assert r.exit_code == 2 and "implementations_from[0]: cannot load" in _text(r), r.output


@pytest.mark.parametrize("where", ["on_start", "measure"])
def test_a_crash_anywhere_in_the_sweep_leaves_run_json_failed(tmp_path, monkeypatch, where):
    from dsa_bench import api, runner
    from dsa_bench.scenario import load_scenario

    def crash(*a, **k):
        raise RuntimeError("boom")

    if where == "measure":
        monkeypatch.setattr(runner.Runner, "measure", crash)
    s = load_scenario(_write(tmp_path, FAST))
    with pytest.raises(RuntimeError, match="boom"):
        api.run_scenario(s, out=tmp_path / "out", device="cpu", on_start=crash if where == "on_start" else None)
    (run,) = (tmp_path / "out" / "fast").iterdir()
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed" and meta["failure"] == "RuntimeError: boom"


def test_committed_runs_still_parse_for_the_cost_command():
    """Strict types and the new relations must not lock `dsa-bench cost` out of the committed runs (their
    cpu: sections play no part in pricing, so the command leaves them out)."""
    from dsa_bench.scenario import parse_scenario

    metas = [json.loads(p.read_text()) for p in sorted(ROOT.glob("results/*/*/run.json"))]
    scenarios = [m["scenario"] for m in metas if isinstance(m.get("scenario"), dict)]
    assert scenarios
    for sc in scenarios:
        parse_scenario({k: v for k, v in sc.items() if k != "cpu"}, sc.get("name", "?"))


def test_an_installed_plugin_failing_at_import_does_not_end_commands(monkeypatch):
    """An entry point whose code exits is recorded, not fatal; a scenario naming an unknown
    implementation then gets it as an error row's reason."""
    from dsa_bench import registry

    class EP:
        name, value = "broken", "broken_pkg:register"

        def load(self):
            raise SystemExit(4)

    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group: [EP()])
    monkeypatch.setattr(registry, "ENTRY_POINT_FAILURES", [])
    registry._load_entry_points()
    assert registry.ENTRY_POINT_FAILURES == ["entry point 'broken' (broken_pkg:register): SystemExit: 4"]


@pytest.mark.parametrize("args,fragment", [
    (["--no-report", "--report-out", "elsewhere"], "--report-out has no effect here"),
    (["--gpus-per-point", "2"], "--gpus-per-point has no effect here"),
    (["--price", "3"], "--gpu / --price price nothing in this run"),
])
def test_options_that_would_do_nothing_are_named(tmp_path, args, fragment):
    s = _write(tmp_path, FAST)
    r = _invoke("run", s, "--device", "cpu", "--dry-run", *args)
    assert r.exit_code == 0 and fragment in _text(r), r.output


def test_a_full_disk_during_the_resume_rewrite_leaves_no_stray_copy(tmp_path, monkeypatch):
    st = RunStore.create(tmp_path, "scn", "r1", {"scenario": {}})
    st.append([dict(implementation="x", phase="decode", batch=1, context=64, topk=16, stage="total", status="ok")])
    st.unlock()
    before = st.results_path.read_bytes()

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod.os, "fsync", no_space)
    with pytest.raises(OSError):
        RunStore(st.dir).reopen()
    assert st.results_path.read_bytes() == before
    assert not list(st.dir.glob("*.tmp"))


def test_peers_unpack_of_something_else_is_bad_input(tmp_path):
    junk = _write(tmp_path, "not an archive", "junk.tar.xz")
    r = _invoke("peers", "unpack", junk, "--out", tmp_path / "u")
    assert r.exit_code == 2 and "not an archive written by `dsa-bench peers pack`" in _text(r), r.output
