"""The Gluon kernels for Hopper (MLA: kernels/mla/gluon_sm90.py; MHA: kernels/mha/gluon_sm90.py; the
lightning indexer: kernels/indexer_gluon_sm90.py), on a
machine without a GPU: each compiles for sm_90 at every shape the dispatch sends it, fits the shared
memory a block may take, does not spill, and its PTX keeps what it is designed around: async wgmma,
producer and consumer register budgets (setmaxnreg), 16-byte cp.async loads that arrive on mbarriers.
A silent fallback to a plain loop would fail these. Correctness is checked on an sm_90 GPU (the
tests at the end, `dsa-bench check-kernels`); Gluon does not run in the interpreter."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("triton.experimental.gluon")

from kernels import mla  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

SM90_MAX_SHARED = 232448  # bytes a block may opt in to on sm_90 (227 KB)


def _compile_module(module: str, out: Path) -> Path:
    """Every variant `module` launches, compiled for sm_90 in a fresh process (see kernels/_gluon.py)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(out / "cache")  # a real compile, not a cached one
    r = subprocess.run([sys.executable, "-m", module, str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return _compile_module("kernels.mla.gluon_sm90", tmp_path_factory.mktemp("gluon_mla"))


@pytest.fixture(scope="module")
def compiled_mha(tmp_path_factory):
    return _compile_module("kernels.mha.gluon_sm90", tmp_path_factory.mktemp("gluon_mha"))


def load(out: Path, name: str):
    meta = json.loads((out / f"{name}.json").read_text())
    ptx = (out / f"{name}.ptx").read_text()
    return SimpleNamespace(ptx=ptx, ttgir=(out / f"{name}.ttgir").read_text(), shared_bytes=meta["shared_bytes"],
                           count=lambda pat: len(re.findall(pat, ptx)),
                           setmaxnreg=[(m.group(1), int(m.group(2))) for m in
                                       re.finditer(r"setmaxnreg\.(inc|dec)\.sync\.aligned\.u32\s+(\d+)", ptx)])


def ptxas_report(ptx: str, tmp_path: Path) -> str:
    import triton

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.is_file():
        pytest.skip("triton's bundled ptxas is not here")
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    r = subprocess.run([str(ptxas), "-arch=sm_90a", "-v", str(src), "-o", str(tmp_path / "k.cubin")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stderr + r.stdout


@pytest.mark.parametrize("name", ["sparse-prefill", "sparse-decode-split", "dense-decode-split"])
def test_gluon_mla_compiles_for_sm90_as_designed(compiled, name, tmp_path):
    c = load(compiled, name)
    assert_warp_specialized(c)
    # per warpgroup and key block: QK^T 512 + 64 deep (32 + 4 k-steps), PV 64 keys (4)
    assert c.count(r"wgmma\.mma_async\.sync\.aligned") >= 40
    # 64 latents x 576 bf16 per block over 128 producer threads, 16 bytes each
    assert c.count(r"cp\.async\.cg\.shared\.global \[[^]]+\], \[[^]]+\], 0x10") == 36
    assert_no_spills(c.ptx, tmp_path)


def assert_no_spills(ptx: str, tmp_path: Path) -> None:
    report = ptxas_report(ptx, tmp_path)
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", report)]
    assert spills and max(spills) == 0, report


def assert_warp_specialized(c) -> None:
    assert c.shared_bytes <= SM90_MAX_SHARED, f"{c.shared_bytes} B of shared memory"
    assert "ttg.warp_specialize" in c.ttgir
    regs = c.setmaxnreg
    assert ("dec", 24) in regs and ("inc", 56) in regs, regs  # the producer gives its registers away
    consumer = [n for kind, n in regs if n > 56]
    assert consumer and min(consumer) >= 200, regs  # and the consumers get them
    assert c.count(r"cp\.async\.mbarrier\.arrive\.noinc") >= 1 and c.count(r"mbarrier\.try_wait") >= 2


def test_gluon_mha_compiles_for_sm90_as_designed(compiled_mha, tmp_path):
    c = load(compiled_mha, "mha-causal")
    assert_warp_specialized(c)
    # per warpgroup and key block: QK^T 128 + 64 deep (8 + 4 k-steps), PV 128 keys (8)
    assert c.count(r"wgmma\.mma_async\.sync\.aligned") >= 20
    # K 128 x 192 and V 128 x 128 bf16 per block over 128 producer threads, 16 bytes each
    assert c.count(r"cp\.async\.cg\.shared\.global \[[^]]+\], \[[^]]+\], 0x10") == 40
    assert_no_spills(c.ptx, tmp_path)


@pytest.fixture(scope="module")
def compiled_indexer(tmp_path_factory):
    return _compile_module("kernels.indexer_gluon_sm90", tmp_path_factory.mktemp("gluon_indexer"))


@pytest.mark.parametrize("name, k_steps", [("indexer-fp8", 4), ("indexer-bf16", 8)])
def test_gluon_indexer_compiles_for_sm90_as_designed(compiled_indexer, name, k_steps, tmp_path):
    c = load(compiled_indexer, name)
    assert c.shared_bytes <= SM90_MAX_SHARED and "ttg.warp_specialize" in c.ttgir
    regs = c.setmaxnreg
    assert ("dec", 48) in regs or ("inc", 48) in regs, regs  # the producer's small budget
    assert sum(1 for _, n in regs if n >= 224) >= 2, regs  # two consumer warpgroups with most registers
    # 256 keys (4 x m64) x Di = 128 (k-steps of 32 fp8 / 16 bf16) per query, in each consumer partition
    assert c.count(r"wgmma\.mma_async\.sync\.aligned") == 2 * 4 * k_steps
    assert c.count(r"cp\.async\.cg\.shared\.global \[[^]]+\], \[[^]]+\], 0x10") == 64 * 128 * (2 if "bf16" in name else 1) // 128 // 16
    assert c.count(r"cp\.async\.mbarrier\.arrive\.noinc") >= 1
    assert_no_spills(c.ptx, tmp_path)


def test_dispatch_keeps_the_tl_kernel_unless_asked_and_supported(monkeypatch):
    from kernels import mha
    from kernels.mha import gluon_sm90 as mha_gluon
    from kernels.mla import gluon_sm90

    cpu = SimpleNamespace(is_cuda=False)
    gpu = SimpleNamespace(is_cuda=True)
    monkeypatch.setattr(gluon_sm90, "supports", lambda q, d_v: True)
    monkeypatch.delenv(gluon_sm90.ENV_SWITCH, raising=False)
    assert mla.variant(cpu, 512) == mla.TL and mla.variant(gpu, 512) == mla.TL
    monkeypatch.setenv(gluon_sm90.ENV_SWITCH, "1")
    assert mla.variant(gpu, 512) == mla.GLUON_SM90 and mla.variant(cpu, 512) == mla.TL
    monkeypatch.setattr(gluon_sm90, "supports", lambda q, d_v: False)
    assert mla.variant(gpu, 512) == mla.TL
    monkeypatch.setattr(mha_gluon, "supports", lambda q, k, v: True)
    monkeypatch.delenv(mha_gluon.ENV_SWITCH, raising=False)
    assert mha.variant(gpu, gpu, gpu) == mha.TL
    monkeypatch.setenv(mha_gluon.ENV_SWITCH, "1")
    assert mha.variant(gpu, gpu, gpu) == mha.GLUON_SM90
    assert mha.variant(gpu, gpu, gpu, masked=True) == mha.TL and mha.variant(cpu, cpu, cpu) == mha.TL


# --- on an sm_90 GPU: the Gluon kernel against the reference (skipped elsewhere) ---------------------

def _on_hopper() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


@pytest.mark.skipif(not _on_hopper(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("B, S, T, K, splits", [
    (2, 3, 300, 2048, None),     # k > context: -1 padding; B > 1
    (1, 2, 4097, 2048, 8),       # decode with split-K, odd T
    (1, 257, 70000, 2048, 1),    # prefill rows, one split
])
def test_gluon_sparse_mla_matches_the_reference_on_hopper(monkeypatch, B, S, T, K, splits):
    import torch

    import kernels.reference as ref
    from kernels.mla import gluon_sm90
    from kernels.sparse_mla import sparse_mla

    monkeypatch.setenv(gluon_sm90.ENV_SWITCH, "1")
    g = torch.Generator(device="cuda").manual_seed(T)
    q = torch.randn(B, S, 128, 576, device="cuda", generator=g).bfloat16()
    kv = torch.randn(B, T, 576, device="cuda", generator=g).bfloat16()
    idx = torch.randint(0, T, (B, S, K), device="cuda", generator=g, dtype=torch.int32)
    idx[..., ::3] = -1                       # empty slots
    idx[..., 1::7] = T + 5                    # out of range: ignored
    idx[0, 0] = -1                            # a row with nothing selected: out 0, lse -inf
    assert mla.variant(q, 512) == mla.GLUON_SM90
    out = torch.full((B, S, 128, 512), float("nan"), dtype=q.dtype, device="cuda")
    lse = torch.full((B, S, 128), float("nan"), device="cuda")
    sparse_mla(q, kv, idx, sm_scale=192 ** -0.5, num_splits=splits, out=out, lse=lse)
    want, want_lse = ref.sparse_mla(q, kv, idx, sm_scale=192 ** -0.5, d_v=512)
    assert torch.isfinite(out).all()
    rel = ((out.float() - want.float()).norm() / want.float().norm()).item()
    assert rel < 2e-2, rel  # bf16 output and P rounding (~2^-9 each); indexing bugs give O(1)
    assert (out[0, 0] == 0).all() and torch.isneginf(lse[0, 0]).all()
    ok = torch.isfinite(want_lse)
    assert torch.allclose(lse[ok], want_lse[ok], atol=5e-2)


@pytest.mark.skipif(not _on_hopper(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("B, S, T", [(1, 1000, 1000), (2, 300, 5000), (1, 4096, 20000)])
def test_gluon_mha_matches_the_reference_on_hopper(monkeypatch, B, S, T):
    """Causal prefill (S = T, odd) and chunked-prefill steps (S < T: q_start = T - S), B > 1."""
    import torch

    import kernels.reference as ref
    from kernels.dense_mha import dense_mha
    from kernels.mha import gluon_sm90 as mha_gluon

    monkeypatch.setenv(mha_gluon.ENV_SWITCH, "1")
    g = torch.Generator(device="cuda").manual_seed(S)
    q = torch.randn(B, S, 16, 192, device="cuda", generator=g).bfloat16()
    k = torch.randn(B, T, 16, 192, device="cuda", generator=g).bfloat16()
    v = torch.randn(B, T, 16, 128, device="cuda", generator=g).bfloat16()
    from kernels import mha

    assert mha.variant(q, k, v) == mha.GLUON_SM90
    out = torch.full((B, S, 16, 128), float("nan"), dtype=q.dtype, device="cuda")
    dense_mha(q, k, v, sm_scale=192 ** -0.5, out=out)
    want = ref.dense_mha(q, k, v, sm_scale=192 ** -0.5)
    assert torch.isfinite(out).all()
    rel = ((out.float() - want.float()).norm() / want.float().norm()).item()
    assert rel < 2e-2, rel


@pytest.mark.skipif(not _on_hopper(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("B, S, T, fp8", [(1, 100, 1000, True), (2, 33, 5000, True), (1, 257, 70000, False)])
def test_gluon_indexer_matches_the_reference_on_hopper(monkeypatch, B, S, T, fp8):
    """Prefill rows at the end of the context (q_start = T - S), odd sizes, -inf pattern exact."""
    import torch

    import kernels.reference as ref
    from kernels import indexer_gluon_sm90
    from kernels.indexer import GLUON_SM90, lightning_indexer, variant

    monkeypatch.setenv(indexer_gluon_sm90.ENV_SWITCH, "1")
    g = torch.Generator(device="cuda").manual_seed(T)
    q = torch.randn(B, S, 64, 128, device="cuda", generator=g)
    k = torch.randn(B, T, 128, device="cuda", generator=g)
    w = torch.randn(B, S, 64, device="cuda", generator=g) / 64
    ks = None
    if fp8:
        ks = k.abs().amax(-1) / 448
        q, k = q.clamp(-448, 448).to(torch.float8_e4m3fn), (k / ks[..., None]).to(torch.float8_e4m3fn)
    else:
        q, k = q.bfloat16(), k.bfloat16()
    assert variant(q, k) == GLUON_SM90
    out = torch.full((B, S, T), float("nan"), device="cuda")
    lightning_indexer(q, w, k, k_scale=ks, out=out)
    want = ref.lightning_indexer(q, w, k, k_scale=ks)
    fin = torch.isfinite(want)
    assert torch.equal(fin, torch.isfinite(out))
    rel = ((out[fin] - want[fin]).norm() / want[fin].norm()).item()
    # the self-check's tolerances (dsa_bench/selfcheck/indexer.py): bf16 products are exact in fp32,
    # fp8 tensor cores accumulate with fewer bits
    assert rel < (5e-2 if fp8 else 1e-2), rel
