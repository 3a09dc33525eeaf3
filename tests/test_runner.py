"""The measurement engine on the CPU: statuses, metrics, stage rows and resume after a crash."""
import math

import pytest
import torch

from dsa_bench import runner
from dsa_bench.registry import REGISTRY, Implementation, Prepared
from dsa_bench.scenario import parse_scenario
from dsa_bench.store import row_key

DEV = torch.device("cpu")


def scenario(impls, **over):
    d = {
        "name": "t", "model": "tiny", "phase": "decode", "decode_tokens": 2, "implementations": impls,
        "sweep": {"context": [37, 70], "topk": [16, 128], "batch": [2]},
        "measure": {"warmup_ms": 0, "min_samples": 3, "max_samples": 4, "min_time_ms": 0, "max_time_ms": 100},
    }
    d.update(over)
    return parse_scenario(d)


# For tests about statuses, checks, modes and stages, not timings: one timed call per point and stage
# (test_ok_rows_have_uniform_metrics_and_stages covers the sample statistics). In the Triton
# interpreter every call of a DSA point costs seconds.
ONE_SAMPLE = {"warmup_ms": 0, "min_samples": 1, "max_samples": 1, "min_time_ms": 0, "max_time_ms": 100}


@pytest.fixture
def fake_impls():
    """Implementations that fail in known ways; removed from the registry afterwards."""
    import kernels.reference as ref

    def wrong(w):
        q, kv = w.mla_inputs()
        return Prepared(run=lambda: ref.dense_mla(q, kv, sm_scale=w.model.sm_scale, d_v=w.model.kv_lora_rank,
                                                  q_start=w.q_start)[0] * 1.5)

    def boom(w):
        raise RuntimeError("kernel exploded\nsecond line")

    def oom(w):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    both = frozenset({"prefill", "decode"})
    added = [
        Implementation("test-wrong", "dense", "torch", both, wrong),
        Implementation("test-boom", "dsa", "torch", both, boom),
        Implementation("test-oom", "dense", "torch", both, oom),
    ]
    for impl in added:
        REGISTRY[impl.name] = impl
    yield [i.name for i in added]
    for impl in added:
        REGISTRY.pop(impl.name)


def run(s, tmp_path, done=frozenset(), store=None, **kw):
    if store is None:
        store, done = runner.start_run(s, scenario_file=None, device=DEV, out_root=tmp_path, resume=False)
    return runner.Runner(s, DEV, store, **kw).run(done), store


def test_plan_measures_dense_once_per_context():
    tasks = runner.plan(scenario(["dense-torch", "dsa-torch"]))
    dense = [t for t in tasks if t.impl.name == "dense-torch"]
    dsa = [t for t in tasks if t.impl.name == "dsa-torch"]
    assert len(dense) == 2 and all(t.point.topk is None for t in dense)
    assert len(dsa) == 4


def test_statuses_are_recorded_and_sweep_goes_on(tmp_path, fake_impls):
    res, store = run(scenario(["dense-torch"] + fake_impls), tmp_path)
    rows = [r for r in store.rows() if r["stage"] == "total"]
    by = {}
    for r in rows:
        by.setdefault(r["implementation"], set()).add(r["status"])
    assert by["dense-torch"] == {"ok"}
    assert by["test-wrong"] == {"wrong"}
    assert by["test-boom"] == {"error"}
    assert by["test-oom"] == {"oom"}
    wrong = next(r for r in rows if r["implementation"] == "test-wrong")
    assert wrong["latency_ms"] == "" and float(wrong["rel_err"]) > 0.4 and "tolerance" in wrong["reason"]
    boom = next(r for r in rows if r["implementation"] == "test-boom")
    assert boom["reason"] == "RuntimeError: kernel exploded"


def test_ok_rows_have_uniform_metrics_and_stages(tmp_path):
    res, store = run(scenario(["dsa-torch", "dense-torch"]), tmp_path)
    rows = store.rows()
    total = [r for r in rows if r["stage"] == "total"]
    assert all(r["status"] == "ok" for r in rows)
    for r in total:
        lat = float(r["latency_ms"])
        assert float(r["latency_ms_q1"]) <= lat <= float(r["latency_ms_q3"])
        assert int(r["samples"]) >= 3
        assert math.isclose(float(r["tflops"]), float(r["flops"]) / (lat / 1e3) / 1e12, rel_tol=1e-3)
        assert math.isclose(float(r["gbps"]), float(r["bytes"]) / (lat / 1e3) / 1e9, rel_tol=1e-3)
        assert r["check"] == "reference"
    stages = {r["stage"] for r in rows if r["implementation"] == "dsa-torch"}
    assert stages == {"total", "indexer", "topk", "sparse_mla"}


def test_flops_count_only_valid_indices(tmp_path):
    # k = 128 > context 37: every visible token is selected, so sparse FLOPs equal dense MLA FLOPs.
    from dsa_bench.workload import Point, Workload

    s = scenario(["dsa-torch"])
    w = Workload(s.model, Point("decode", 2, 37, 128), DEV, decode_tokens=2)
    assert w.selected_pairs == w.visible_pairs == 2 * (36 + 37)
    assert w.work("sparse_mla")[0] == w.work("dense_mla")[0]
    w16 = Workload(s.model, Point("decode", 2, 37, 16), DEV, decode_tokens=2)
    assert w16.selected_pairs == 2 * 2 * 16


def test_triton_rows_are_checked_against_reference(tmp_path):
    res, store = run(scenario(["dense-triton", "dsa-triton"], sweep={"context": [37], "topk": [16], "batch": [2]},
                              measure=ONE_SAMPLE), tmp_path)
    total = [r for r in store.rows() if r["stage"] == "total"]
    assert {r["status"] for r in total} == {"ok"}, [(r["implementation"], r["reason"]) for r in total]
    assert {r["check"] for r in total} == {"passed"}
    assert all(float(r["rel_err"]) < runner.TOLERANCE["bf16"] for r in total)


def test_resume_after_crash_loses_nothing_and_redoes_nothing(tmp_path):
    s = scenario(["dense-torch", "dsa-torch"])
    n_tasks = len(runner.plan(s))

    def crash_after_three(task, i, total):
        if i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(s, tmp_path, on_progress=crash_after_three)
    store, done = runner.start_run(s, scenario_file=None, device=DEV, out_root=tmp_path, resume=True)
    assert len(done) == 3
    before = store.rows()
    res, store = run(s, tmp_path, done=done, store=store)
    assert res.skipped_done == 3
    rows = store.rows()
    assert rows[: len(before)] == before  # finished points kept untouched
    keys = [row_key(r) for r in rows if r["stage"] == "total"]
    assert len(keys) == len(set(keys)) == n_tasks


def test_resume_refuses_a_changed_scenario(tmp_path):
    run(scenario(["dense-torch"]), tmp_path)
    changed = scenario(["dense-torch"], sweep={"context": [40]})
    with pytest.raises(ValueError, match="different scenario"):
        runner.start_run(changed, scenario_file=None, device=DEV, out_root=tmp_path, resume=True)


@pytest.fixture
def dsa_bad_selection():
    """A DSA implementation whose attention is right for its own selection, but whose selection
    takes the lowest-scoring tokens; and one whose selection is right but whose output is off."""
    import kernels.reference as ref

    def make(worst: bool, scale: float):
        def prepare(w):
            q, kv = w.mla_inputs()
            iq, iw, ik, iks = w.indexer_inputs()

            def indices():
                sc = ref.lightning_indexer(iq, iw, ik, k_scale=iks, q_start=w.q_start)
                if worst:  # the k lowest visible scores instead of the k highest
                    sc = torch.where(torch.isfinite(sc), -sc, sc)
                return ref.topk_indices(sc, w.topk)

            def run():
                out, lse = ref.sparse_mla(q, kv, indices(), sm_scale=w.model.sm_scale, d_v=w.model.kv_lora_rank)
                return out * scale, lse

            return Prepared(run=run, indices=indices)
        return prepare

    both = frozenset({"prefill", "decode"})
    added = [Implementation("test-dsa-worst", "dsa", "torch", both, make(True, 1.0)),
             Implementation("test-dsa-scaled", "dsa", "torch", both, make(False, 1.2))]
    for impl in added:
        REGISTRY[impl.name] = impl
    yield [i.name for i in added]
    for impl in added:
        REGISTRY.pop(impl.name)


def test_dsa_check_judges_selection_and_attention_apart(tmp_path, dsa_bad_selection):
    s = scenario(dsa_bad_selection + ["dsa-triton"], sweep={"context": [70], "topk": [16], "batch": [2]},
                 measure=ONE_SAMPLE)
    res, store = run(s, tmp_path)
    by = {r["implementation"]: r for r in store.rows() if r["stage"] == "total"}
    assert by["test-dsa-worst"]["status"] == "wrong"
    assert by["test-dsa-worst"]["reason"].startswith("selection: a selected score")
    assert by["test-dsa-scaled"]["status"] == "wrong"
    assert by["test-dsa-scaled"]["reason"].startswith("rel_err")
    assert by["dsa-triton"]["status"] == "ok" and by["dsa-triton"]["check"] == "passed"


def test_prefill_tokens_time_one_chunked_prefill_step(tmp_path):
    s = scenario(["dsa-triton", "dense-triton"], phase="prefill", prefill_tokens=5,
                 sweep={"context": [70], "topk": [16], "batch": [2]}, measure=ONE_SAMPLE)
    res, store = run(s, tmp_path)
    total = [r for r in store.rows() if r["stage"] == "total"]
    assert {r["status"] for r in total} == {"ok"}, [(r["implementation"], r["reason"]) for r in total]
    assert {int(r["query_tokens"]) for r in total} == {5} and {int(r["q_start"]) for r in total} == {65}


def test_timing_mode_is_recorded(tmp_path):
    """On the CPU every call is eager; a scenario asking for graphs there says why it did not get them."""
    s = scenario(["dense-torch"], sweep={"context": [37], "topk": [16], "batch": [2]})
    res, store = run(s, tmp_path)
    assert {r["timing"] for r in store.rows()} == {"eager"}
    s2 = scenario(["dense-torch"], sweep={"context": [37], "topk": [16], "batch": [2]},
                  measure={**s.measure.model_dump(), "cuda_graph": True})
    res, store2 = run(s2, tmp_path / "g")
    assert {r["timing"] for r in store2.rows()} == {"eager (no CUDA device)"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_matches_eager_output():
    from dsa_bench.timing import Timer

    t = Timer(torch.device("cuda"), flush_l2=False, warmup_ms=0, min_samples=3, max_samples=3,
              min_time_ms=0, max_time_ms=10)
    x = torch.randn(1000, device="cuda")
    replay = t.graphed(lambda: x * 2)
    x.copy_(torch.randn(1000, device="cuda"))  # replays read the captured input's memory
    assert torch.equal(replay(), x * 2)


def test_usd_per_million_tokens_only_on_gpu_rows(tmp_path):
    """CPU rows carry no cost (a CPU timing priced as a GPU hour means nothing); the formula on a GPU
    row is latency x price / (B x S) tokens."""
    s = scenario(["dense-torch"], sweep={"context": [37], "topk": [16], "batch": [2]})
    res, store = run(s, tmp_path)
    assert {r["usd_per_million_tokens"] for r in store.rows()} == {""}
    from dsa_bench.workload import Point, Workload

    r = runner.Runner(s, DEV, store)
    r.device = torch.device("cuda")  # only the pricing branch runs; nothing touches a GPU
    w = Workload(s.model, Point("decode", 2, 37, None), DEV, decode_tokens=2)
    row = r._with_cost({"latency_ms": 3.6}, w)  # 3.6 ms at $2/h over 4 tokens
    assert math.isclose(row["usd_per_million_tokens"], 3.6e-3 / 3600 * 2.0 / 4 * 1e6)


def test_clock_sampler_flags_a_throttled_point(monkeypatch):
    """NVML replaced by a fake reporting 1200 of 1980 MHz: the point is flagged throttled."""
    import sys
    import time
    import types

    from dsa_bench.telemetry import ClockSampler

    fake = types.SimpleNamespace(
        NVML_CLOCK_SM=0, NVML_TEMPERATURE_GPU=0, nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: object(), nvmlDeviceGetMaxClockInfo=lambda h, c: 1980,
        nvmlDeviceGetClockInfo=lambda h, c: 1200, nvmlDeviceGetTemperature=lambda h, t: 71)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with ClockSampler("cuda", 0, period_s=0.001) as s:
        time.sleep(0.02)
    got = s.summary()
    assert got["sm_clock_mhz"] == 1200 and got["sm_clock_max_mhz"] == 1980 and got["gpu_temp_c"] == 71
    assert got["throttled"] is True
    fake.nvmlDeviceGetClockInfo = lambda h, c: 1965
    with ClockSampler("cuda", 0) as s:
        pass
    assert s.summary()["throttled"] is False
    with ClockSampler("cpu") as s:  # CPU runs record nothing
        pass
    assert s.summary() == {}


def test_deployed_dsa_switches_to_masked_mha_below_threshold(tmp_path):
    """dsa-deployed: prefill at context <= masked_mha_below runs masked MHA (checked against the masked
    MHA reference on its own selection, stages indexer / topk / masked_mha, dense MHA work counted);
    above it, the sparse form with sparse_mla's stages and work. Short prefills (every query row is a
    top-k row in the interpreter); k = 8 leaves most rows more visible tokens than k."""
    low, high, k = 17, 33, 8
    s = scenario(["dsa-deployed"], phase="prefill", decode_tokens=1, masked_mha_below=24,
                 sweep={"context": [low, high], "topk": [k], "batch": [1]}, measure=ONE_SAMPLE)
    assert s.masked_mha_threshold() == 24
    res, store = run(s, tmp_path)
    rows = store.rows()
    assert all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    by_ctx = {int(r["context"]): r for r in rows if r["stage"] == "total"}
    assert by_ctx[low]["attention_mode"] == "masked_mha" and by_ctx[high]["attention_mode"] == "sparse_mla"
    assert all(by_ctx[c]["check"] == "passed" for c in (low, high))
    stages = {c: {r["stage"] for r in rows if int(r["context"]) == c} for c in (low, high)}
    assert stages[low] == {"total", "indexer", "topk", "masked_mha"}
    assert stages[high] == {"total", "indexer", "topk", "sparse_mla"}
    from dsa_bench.workload import Workload
    w = Workload(s.model, runner.Point("prefill", 1, low, k), DEV)
    assert int(by_ctx[low]["flops"]) == w.work("dsa_masked_mha")[0] != w.work("dsa")[0]


def test_masked_mha_threshold_defaults_to_cost_model_crossover():
    from dsa_bench.costmodel.model import masked_mha_crossover

    s = scenario(["dsa-deployed"], phase="prefill", decode_tokens=1)
    assert s.masked_mha_below is None
    t = s.masked_mha_threshold()
    assert t == masked_mha_crossover(s.model, s.cost) and 0 < t
