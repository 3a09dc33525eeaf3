"""The production peers on the CPU: locating and refusing libraries with the reason (fake vLLM
folders, fake packages, fake op schemas), the cache layouts, and every production implementation's
bridge run end to end through the engine's correctness check over fakes of the kernels."""
from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from dsa_bench import runner
from dsa_bench.peers import layouts, libraries, schemas
from dsa_bench.registry import REGISTRY
from dsa_bench.scenario import parse_scenario
from dsa_bench.ops import Point
from dsa_bench.runner import Task
from tests import peer_fakes

TORCH = torch.__version__.split("+")[0]


@pytest.fixture(autouse=True)
def fresh_libraries(monkeypatch):
    monkeypatch.delenv(libraries.ENV_DIR, raising=False)
    libraries.reset()
    yield
    libraries.reset()


def fake_vllm(tmp_path, torch_pin=TORCH, files=("_flashmla_C.abi3.so", "_C_stable_libtorch.abi3.so",
                                                "vllm_flash_attn/_vllm_fa3_C.abi3.so")):
    root = tmp_path / "vllm"
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"\x7fELF not really a library")
    dist = tmp_path / "vllm-9.9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: 9.9.9\n"
                                   f"Requires-Dist: torch=={torch_pin}\nRequires-Dist: numpy\n")
    return root


# --- locating and loading ------------------------------------------------------------------------

def test_nothing_installed_says_what_to_do():
    for key in libraries.NAMES:
        source, why = libraries.locate(key)
        assert source is None and libraries.ENV_DIR in why and "vLLM 0.26.0" in why
    lib = libraries.flashmla()
    assert not lib.ok and libraries.ENV_DIR in lib.reason
    with pytest.raises(libraries.PeerUnavailable, match="FlashMLA"):
        lib.require()


def test_env_dir_that_is_not_a_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(libraries.ENV_DIR, str(tmp_path / "nope"))
    assert f"{libraries.ENV_DIR}={tmp_path / 'nope'} is not a folder" in libraries.flashmla().reason


def test_unstable_abi_library_of_another_torch_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv(libraries.ENV_DIR, str(fake_vllm(tmp_path, torch_pin="2.11.0" if TORCH != "2.11.0" else "9.0.0")))
    files, _ = libraries.find_vllm()
    assert files.version == "9.9.9" and files.torch_pin != TORCH
    reason = libraries.fa3().reason
    assert "unstable C++ ABI" in reason and files.torch_pin in reason and TORCH in reason
    _, why = libraries.locate("fa3")
    assert "unstable C++ ABI" in why
    # stable-ABI FlashMLA is tried, and a file that is no library says so with its path
    assert "could not load" in libraries.flashmla().reason and "_flashmla_C.abi3.so" in libraries.flashmla().reason
    source, why = libraries.locate("flashmla")
    assert why is None and "vLLM 9.9.9" in source


def test_missing_file_in_a_vllm_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(libraries.ENV_DIR, str(fake_vllm(tmp_path, files=("_flashmla_C.abi3.so",))))
    assert "_C_stable_libtorch.abi3.so not found" in libraries.vllm_ops().reason
    assert "third_party/deep_gemm" in libraries.locate("deep_gemm")[1]


def test_installed_vllm_is_located_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "vllm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('vllm must not be imported')\n")
    (pkg / "_flashmla_C.abi3.so").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source, why = libraries.locate("flashmla")
    assert why is None and "installed vLLM" in source
    assert "vllm" not in sys.modules


def test_standalone_package_is_preferred_and_checked(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "deep_gemm").mkdir(parents=True)
    (site / "deep_gemm" / "__init__.py").write_text("def fp8_mqa_logits(*a): pass\n")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("deep_gemm", None)
    try:
        lib = libraries.deep_gemm()
        assert not lib.ok and "lacks fp8_paged_mqa_logits" in lib.reason
        (site / "deep_gemm" / "__init__.py").write_text(
            "__version__ = '2.5.0'\n" + "".join(f"def {n}(*a): pass\n" for n in libraries.DEEP_GEMM_NEEDS))
        sys.modules.pop("deep_gemm", None)
        libraries.reset()
        lib = libraries.deep_gemm()
        assert lib.ok and lib.source == "package deep_gemm 2.5.0"
        assert libraries.loaded()["deep_gemm"]["ok"] is True
    finally:  # the fake package must not outlive the test (later tests locate deep_gemm)
        sys.modules.pop("deep_gemm", None)


# --- op schemas ------------------------------------------------------------------------------------

_LIB = torch.library.Library("dsa_bench_schema_test", "DEF")
_LIB.define("same(Tensor logits, Tensor rowStarts, Tensor rowEnds, Tensor! indices, int numRows, int stride0, int stride1, int topK) -> ()")
_LIB.define("renamed(Tensor logits, Tensor starts, Tensor rowEnds, Tensor! indices, int numRows, int stride0, int stride1, int topK) -> ()")
_LIB.define("retyped(Tensor logits, Tensor rowStarts, Tensor rowEnds, Tensor! indices, int numRows, int stride0, float stride1, int topK) -> ()")


@pytest.mark.parametrize("op, message", [
    ("same", None),
    ("renamed", "different schema: arguments (logits, starts,"),
    ("retyped", "argument type changed: stride1: float (expected int)"),
    ("absent", "is not registered"),
])
def test_schema_check_names_the_difference(monkeypatch, op, message):
    want = schemas.EXPECTED["_C"]["top_k_per_row_prefill"].replace("top_k_per_row_prefill", op)
    monkeypatch.setitem(schemas.EXPECTED, "dsa_bench_schema_test", {op: want})
    problem = schemas.check_ops("dsa_bench_schema_test", (op,))
    if message is None:
        assert problem is None
    else:
        assert message in problem and f"torch.ops.dsa_bench_schema_test.{op}" in problem


def test_every_expected_schema_parses():
    for ops in schemas.EXPECTED.values():
        for text in ops.values():
            schemas.signature(schemas.parse(text))


# --- layouts ---------------------------------------------------------------------------------------

def test_fp8_latent_cache_round_trip_is_within_e4m3_rounding():
    g = torch.Generator().manual_seed(1)
    kv = (torch.randn(37, 576, generator=g) * torch.logspace(-2, 1, 37)[:, None]).bfloat16()
    raw = layouts.quantize_latents_fp8(kv)
    assert raw.shape == (37, 656) and raw.dtype == torch.uint8
    back = layouts.dequantize_latents_fp8(raw)
    x = kv.float()
    scale = x[:, :512].view(37, 4, 128).abs().amax(-1, keepdim=True) / 448
    bound = torch.maximum(x[:, :512].view(37, 4, 128).abs() * 2 ** -4, scale * 2 ** -9).view(37, 512)
    assert ((back[:, :512] - x[:, :512]).abs() <= bound * 1.001).all()
    assert torch.equal(back[:, 512:], x[:, 512:])  # RoPE part kept in bf16


def test_paged_index_keys_and_indices():
    g = torch.Generator().manual_seed(2)
    k8 = torch.randn(2, 70, 32, generator=g).to(torch.float8_e4m3fn)
    ks = torch.rand(2, 70, generator=g)
    cache = layouts.paged_index_keys(k8, ks)
    assert cache.shape == (4, 64, 1, 36)
    back, bs = layouts.unpage_index_keys(cache, 70)
    assert torch.equal(back.view(torch.uint8), k8.view(torch.uint8)) and torch.equal(bs, ks)
    idx = torch.tensor([[[5, -1]], [[69, 0]]], dtype=torch.int32)
    assert layouts.to_cache_indices(idx, 70).tolist() == [[[5, -1]], [[128 + 69, 128]]]
    kv = torch.randn(2, 128, 8)
    assert layouts.paged(kv).data_ptr() == kv.data_ptr()  # a view when T is whole pages
    padded = layouts.paged(kv[:, :70])
    assert padded.shape == (4, 64, 1, 8) and torch.equal(padded.view(2, 128, 8)[:, :70], kv[:, :70])
    assert (padded.view(2, 128, 8)[:, 70:] == 0).all()


# --- the bridges, end to end through the engine's check, over fakes ---------------------------------

MODEL = {"preset": "deepseek-v3.2", "heads": 4, "index_heads": 4, "index_head_dim": 32,
         "qk_nope_head_dim": 32, "v_head_dim": 32}


def _measure(name, phase, monkeypatch, *, context, topk=16, batch=2, indexer_dtype="fp8", **extra):
    fakes = peer_fakes.libraries()
    for key, lib in fakes.items():
        monkeypatch.setattr(libraries, key, lambda lib=lib: lib)
    impl = dataclasses.replace(REGISTRY[name], cuda_only=False, unavailable=None)
    d = {"name": "peers", "model": MODEL, "phase": phase, "implementations": [name],
         "sweep": {"context": [context], "topk": [topk], "batch": [batch]},
         "measure": {"warmup_ms": 0, "min_samples": 1, "max_samples": 1, "min_time_ms": 0, "max_time_ms": 50,
                     "indexer_dtype": indexer_dtype, "check_rows": 64, "stages": True}}
    d.update(extra)
    s = parse_scenario(d)
    r = runner.Runner(s, torch.device("cpu"), store=None)
    p = Point(phase=phase, batch=batch, context=context, topk=topk if REGISTRY[name].family == "dsa" else None)
    rows, _ = r.measure(Task(point=p, impl=impl))
    return rows


@pytest.mark.parametrize("name, phase, extra", [
    ("dsa-production", "prefill", {}),
    ("dsa-production", "prefill", {"prefill_tokens": 9}),      # a chunked-prefill step: q_start > 0
    ("dsa-production", "decode", {"decode_tokens": 2}),        # FP8 latent cache, paged indexer keys
    ("dsa-triton-vllmtopk", "decode", {"decode_tokens": 2}),
    ("dense-flashmla", "decode", {"decode_tokens": 2}),
    ("dense-fa3", "prefill", {"prefill_tokens": 9}),
    ("dense-fa3", "prefill", {}),
])
def test_production_bridge_passes_the_check_over_fakes(monkeypatch, name, phase, extra):
    # context 70: not whole 64-token pages; k = 16 > the first rows' visible tokens (-1 padding)
    rows = _measure(name, phase, monkeypatch, context=70, **extra)
    total = rows[0]
    assert total["status"] == "ok", total.get("reason")
    assert total["check"] == "passed" and total["rel_err"] < 2e-2
    if REGISTRY[name].family == "dsa":
        assert {r["stage"] for r in rows} == {"total", "indexer", "topk", "sparse_mla"}


def test_production_indexer_needs_fp8_keys(monkeypatch):
    rows = _measure("dsa-production", "prefill", monkeypatch, context=40, indexer_dtype="bf16")
    assert rows[0]["status"] == "skipped" and "indexer_dtype: fp8" in rows[0]["reason"]


def test_production_rows_on_a_cpu_run_are_skipped_with_the_reason():
    s = parse_scenario({"name": "p", "model": "tiny", "phase": "decode", "implementations": ["dense-flashmla"],
                        "sweep": {"context": [64], "batch": [1]}})
    rows, _ = runner.Runner(s, torch.device("cpu"), store=None).measure(
        Task(point=Point(phase="decode", batch=1, context=64, topk=None), impl=REGISTRY["dense-flashmla"]))
    assert rows[0]["status"] == "skipped" and "CUDA" in rows[0]["reason"]


# --- taking the kernels out of a wheel ---------------------------------------------------------------

def _wheel(path, extra=()):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name in ("vllm/_flashmla_C.abi3.so", "vllm/_C_stable_libtorch.abi3.so", "vllm/__init__.py",
                     "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so", "vllm/third_party/deep_gemm/__init__.py",
                     "vllm/third_party/deep_gemm/_C.cpython-312-x86_64-linux-gnu.so",
                     "vllm/third_party/deep_gemm/_C.cpython-311-x86_64-linux-gnu.so",
                     "vllm/third_party/deep_gemm/include/deep_gemm/a.cuh", "vllm-0.26.0.dist-info/METADATA", *extra):
            z.writestr(name, f"contents of {name}")
    return path


def test_extract_takes_only_the_kernels_and_pack_round_trips(tmp_path):
    from dsa_bench.peers.extract import extract, pack, unpack

    written = extract(_wheel(tmp_path / "v.whl"), tmp_path / "out", pythons=["3.12"])
    names = sorted(str(p.relative_to(tmp_path / "out")) for p in written)
    assert "vllm/__init__.py" not in names and "vllm/third_party/deep_gemm/_C.cpython-311-x86_64-linux-gnu.so" not in names
    assert "vllm/third_party/deep_gemm/include/deep_gemm/a.cuh" in names and "vllm-0.26.0.dist-info/METADATA" in names
    parts = pack(tmp_path / "out", tmp_path / "p.tar.xz", part_bytes=300, preset=0)
    assert len(parts) > 1 and all(p.stat().st_size <= 300 for p in parts)
    unpack(parts, tmp_path / "back")
    for n in names:
        assert (tmp_path / "back" / "out" / n).read_bytes() == (tmp_path / "out" / n).read_bytes()


def test_extract_refuses_a_member_escaping_the_folder_and_a_non_vllm_wheel(tmp_path):
    import zipfile

    from dsa_bench.peers.extract import extract

    with pytest.raises(ValueError, match="outside"):
        extract(_wheel(tmp_path / "v.whl", extra=("vllm/third_party/deep_gemm/../../../../evil",)), tmp_path / "o")
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as z:
        z.writestr("other/__init__.py", "")
    with pytest.raises(ValueError, match="not a vLLM wheel"):
        extract(tmp_path / "other.whl", tmp_path / "o2")


def test_peers_command_reports_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from dsa_bench.cli import app

    r = CliRunner().invoke(app, ["peers"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "dsa-production" in r.output and "DSA_BENCH_VLLM_DIR" in r.output
    r = CliRunner().invoke(app, ["peers", "extract", str(tmp_path / "missing.whl"), str(tmp_path / "o")])
    assert r.exit_code == 2 and "no such wheel" in r.output
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    r = CliRunner().invoke(app, ["peers", "extract", str(tmp_path / "bad.whl"), str(tmp_path / "o")])
    assert r.exit_code == 2 and "error" in r.output


def test_list_says_which_production_peers_are_available(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dsa_bench.cli import app

    r = CliRunner().invoke(app, ["list"], env={"COLUMNS": "300"})
    assert r.exit_code == 0
    assert "production peers: none found here (why not: dsa-bench peers)" in " ".join(r.output.split())
    monkeypatch.setenv(libraries.ENV_DIR, str(fake_vllm(tmp_path, torch_pin="0.0.1")))
    r = CliRunner().invoke(app, ["list"], env={"COLUMNS": "300"})
    assert "found for dense-flashmla, dsa-triton-vllmtopk, dsa-triton-flashmla" in " ".join(r.output.split())
