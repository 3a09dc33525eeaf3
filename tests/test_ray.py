"""Sweeps on Ray (a local cluster on the CPU): same points as a plain run, a lost worker costs its
point only, and resume works across Ray and plain runs. Skipped where Ray is not installed."""
import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsa_bench.cli import app

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "scenarios" / "smoke.yaml")
cli = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TRITON_INTERPRET": "1"}})
    yield
    ray.shutdown()


def _rows(out: Path, name: str = "smoke") -> list[dict]:
    (results,) = out.glob(f"{name}/*/results.csv")
    return list(csv.DictReader(results.open()))


def _points(rows) -> set:
    return {(r["implementation"], r["context"], r["topk"], r["stage"], r["status"]) for r in rows}


def test_ray_run_measures_the_same_points_as_a_plain_run(tmp_path, smoke_cli_run):
    args = ["run", SMOKE, "--device", "cpu", "--no-report", "--filter", "context=37"]
    r = cli.invoke(app, args + ["--out", str(tmp_path / "ray"), "--ray", "local"])
    assert r.exit_code == 0, r.output
    assert smoke_cli_run.exit_code == 0, smoke_cli_run.output  # the plain run: the session's smoke run
    plain = [x for x in _rows(smoke_cli_run.out) if x["context"] == "37"]
    on_ray = _rows(tmp_path / "ray")
    assert _points(on_ray) == _points(plain) and {x["status"] for x in on_ray} == {"ok"}
    assert all(x["worker"] for x in on_ray if x["stage"] == "total")


def test_a_lost_worker_costs_only_its_point(tmp_path):
    plugin = tmp_path / "crash.py"
    plugin.write_text(
        "import os\n"
        "from dsa_bench.registry import Implementation, register\n"
        "def prepare(w):\n"
        "    os._exit(3)  # the worker process dies mid-point\n"
        "register(Implementation('test-crash', 'dense', 'plugin', frozenset({'decode'}), prepare))\n")
    s = tmp_path / "s.yaml"
    s.write_text("name: crash\nmodel: tiny\nphase: decode\nimplementations_from: [crash.py]\n"
                 "implementations: [dense-torch, test-crash]\nsweep: {context: [64]}\n"
                 "measure: {min_samples: 3, min_time_ms: 0, warmup_ms: 0}\n"
                 "cpu: {sweep: {context: [37, 64], topk: [16], batch: [1]}}\n")
    r = cli.invoke(app, ["run", str(s), "--device", "cpu", "--no-report", "--out", str(tmp_path / "o"), "--ray", "local"])
    assert r.exit_code == 1, r.output  # error rows, sweep finished
    rows = _rows(tmp_path / "o", "crash")
    crashed = [x for x in rows if x["implementation"] == "test-crash"]
    assert len(crashed) == 2 and all(x["status"] == "error" and x["reason"].startswith("ray: ") for x in crashed)
    assert {x["status"] for x in rows if x["implementation"] == "dense-torch"} == {"ok"}


def test_resume_after_a_partial_ray_run_loses_and_repeats_nothing(tmp_path):
    out = str(tmp_path / "o")
    base = ["run", SMOKE, "--device", "cpu", "--no-report", "--out", out]
    assert cli.invoke(app, base + ["--ray", "local", "--filter", "context=37,topk=16"]).exit_code == 0
    first = _rows(tmp_path / "o")  # as if the driver had been killed after these points
    r = cli.invoke(app, base + ["--ray", "local", "--resume", "--filter", "topk=16"])
    assert r.exit_code == 0 and f"resuming, {len({(x['implementation'], x['context']) for x in first})} done" in r.output
    rows = _rows(tmp_path / "o")
    keys = [(x["implementation"], x["context"], x["topk"], x["stage"]) for x in rows]
    assert len(keys) == len(set(keys))  # nothing measured twice
    assert {x["context"] for x in rows} == {"37", "100"}


def test_report_groups_rows_by_gpu_kind_when_they_differ(tmp_path):
    """A run whose rows came from two GPU kinds says so and labels each row with its GPU."""
    import shutil

    r = cli.invoke(app, ["run", SMOKE, "--device", "cpu", "--no-report", "--filter", "context=37,topk=16",
                         "--out", str(tmp_path / "o"), "--ray", "local"])
    assert r.exit_code == 0
    (results,) = (tmp_path / "o").glob("smoke/*/results.csv")
    rows = list(csv.DictReader(results.open()))
    for i, x in enumerate(rows):
        x["worker"] = "host-a/NVIDIA H200" if i % 2 else "host-b/NVIDIA H100"
    with results.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = cli.invoke(app, ["report", str(results.parent), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    html = next((tmp_path / "rep").glob("smoke/*/index.html")).read_text()
    assert "measured on 2 GPU kinds (NVIDIA H100, NVIDIA H200)" in html and "[NVIDIA H200]" in html
    shutil.rmtree(tmp_path / "rep")


def test_crossover_refinement_runs_its_points_on_ray(tmp_path, monkeypatch):
    """A finished sweep whose curves cross between 4K and 16K, refined on Ray: the round's points (the
    bracket's midpoint, DSA and dense only) are measured by workers and marked as refinement rows."""
    from dsa_bench import api
    from dsa_bench.registry import load_plugin_file
    from dsa_bench.scenario import load_scenario
    from test_refine import PLUGIN, _plugin_module, _scenario

    load_plugin_file(PLUGIN)
    with monkeypatch.context() as mp:  # the sweep on this process's virtual clock: an exact crossing
        _plugin_module().virtual_timer(mp)
        api.run_scenario(load_scenario(_scenario(tmp_path)), out=tmp_path / "o", device="cpu")
    r = cli.invoke(app, ["run", str(_scenario(tmp_path)), "--device", "cpu", "--no-report", "--out",
                         str(tmp_path / "o"), "--resume", "--ray", "local", "--set",
                         "refine_crossover={tolerance: 0.05, max_points: 1}"])
    assert r.exit_code == 0, r.output
    new = [x for x in _rows(tmp_path / "o", "known-curves") if x["refinement"]]
    assert {(x["implementation"], x["batch"], x["context"], x["refinement"]) for x in new} == {
        (impl, b, "8192", "1") for impl in ("fake-dsa", "fake-dense") for b in ("1", "3")}
    assert all(x["worker"] for x in new)


def test_worker_label_tells_two_gpus_of_one_model_apart():
    """Both GPUs of a two-H200 machine have the same name: the label carries the GPU Ray assigned."""
    import torch

    from dsa_bench.distributed import gpu_label

    dev = torch.device("cuda", 0)
    a = gpu_label(dev, visible="0", name="NVIDIA H200", uuid="GPU-1111aaaa-rest")
    b = gpu_label(dev, visible="1", name="NVIDIA H200", uuid="GPU-2222bbbb-rest")
    assert a != b and a.startswith("gpu0 NVIDIA H200") and b.startswith("gpu1 NVIDIA H200")
    assert gpu_label(torch.device("cuda", 1), visible="2,3", name="NVIDIA H200", uuid="") == "gpu3 NVIDIA H200"
