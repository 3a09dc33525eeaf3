"""The results store: appends survive crashes, torn lines are trimmed, resume knows what is done."""
import csv

from dsa_bench.store import RESULT_COLUMNS, SAMPLE_COLUMNS, RunStore, row_key


def row(impl="a", context=64, topk=16, status="ok", stage="total"):
    return {"implementation": impl, "phase": "decode", "batch": 1, "context": context, "topk": topk,
            "status": status, "stage": stage, "latency_ms": 1.25}


def sample(impl="a", context=64, topk=16, i=0):
    return {"implementation": impl, "phase": "decode", "stage": "total", "batch": 1, "context": context,
            "topk": topk, "chunk": 0, "sample": i, "ms": 1.0 + i}


def test_create_writes_headers_and_meta(tmp_path):
    s = RunStore.create(tmp_path, "scn", "r1", {"hello": 1})
    assert s.dir == tmp_path / "scn" / "r1"
    assert s.results_path.read_text().strip().split(",") == RESULT_COLUMNS
    assert s.samples_path.read_text().strip().split(",") == SAMPLE_COLUMNS
    assert s.meta() == {"hello": 1}


def test_append_and_read_back(tmp_path):
    s = RunStore.create(tmp_path, "scn", "r1", {})
    s.append([row(), row(context=128, topk=None)], [sample(), sample(i=1)])
    rows = s.rows()
    assert [r["context"] for r in rows] == ["64", "128"]
    assert rows[1]["topk"] == ""
    assert row_key(rows[1]) == ("a", "decode", 1, 128, None)
    assert rows[0]["latency_ms"] == "1.25"


def test_reopen_trims_torn_line_and_orphan_samples(tmp_path):
    s = RunStore.create(tmp_path, "scn", "r1", {})
    s.append([row(context=64)], [sample(context=64)])
    # Crash: samples of the next point written, its result row torn mid-line.
    s.append([], [sample(context=128), sample(context=128, i=1)])
    with s.results_path.open("a") as f:
        f.write("a,dense,triton,False,decode,total,1,12")
    done = RunStore(s.dir).reopen()
    assert done == {("a", "decode", 1, 64, 16)}
    assert len(s.rows()) == 1
    with s.samples_path.open() as f:
        kept = list(csv.DictReader(f))
    assert [r["context"] for r in kept] == ["64"]


def test_latest_picks_newest_run(tmp_path):
    RunStore.create(tmp_path, "scn", "20260101-000000-cpu", {})
    RunStore.create(tmp_path, "scn", "20260102-000000-cpu", {})
    assert RunStore.latest(tmp_path, "scn").dir.name == "20260102-000000-cpu"
    assert RunStore.latest(tmp_path, "other") is None
