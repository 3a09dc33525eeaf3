"""Kernel tuning harness (GPU): times configuration variants of the DSA kernels at DeepSeek shapes.

    python -m dsa_bench.tune OUT_DIR [--only topk,sparse,indexer,step]

Writes OUT_DIR/tune.json (one record per variant: shape, config, median ms, achieved TFLOP/s or
GB/s, error against the reference where checked). This is where kernel defaults come from; the
numbers the README quotes come from scenario runs, not from here. Timing: triton.testing.do_bench
(CUDA events, L2 cleared before every rep, median).
"""
from __future__ import annotations

import contextlib
import copy
import json
import sys
import time
from pathlib import Path

import torch
import triton

import kernels
import kernels.mla.tl_kernel as mla
import kernels.indexer as ix
import kernels.topk as tk
from kernels.reference import sparse_mla as ref_sparse
from kernels.topk import topk_indices, topk_indices_torch

H, D, DV, HI, DI = 128, 576, 512, 64, 128
RECORDS: list[dict] = []


@contextlib.contextmanager
def gpu_config(module, *path: str, **changes):
    """Edit module.CONFIG["gpu"][*path] (the kernel's GPU launch table) for the block; restored after."""
    entry = module.CONFIG["gpu"]
    for key in path:
        entry = entry[key]
    saved = copy.deepcopy(entry)
    entry.update(changes)
    try:
        yield
    finally:
        entry.clear()
        entry.update(saved)


def bench(fn, warmup=25, rep=200) -> float:
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def record(**kw):
    RECORDS.append(kw)
    print(json.dumps(kw), flush=True)


def _try(name, fn, **kw):
    try:
        fn()
        torch.cuda.synchronize()
        ms = bench(fn)
        return ms
    except Exception as exc:  # noqa: BLE001 (out of resources for one config must not end the sweep)
        record(kind=name, error=f"{type(exc).__name__}: {str(exc)[:200]}", **kw)
        torch.cuda.synchronize()
        return None


def indexer_scores(S, T, B=1, dtype=torch.float8_e4m3fn, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, S, HI, DI, device="cuda", generator=g).to(dtype)
    k = torch.randn(B, T, DI, device="cuda", generator=g).to(dtype)
    w = torch.randn(B, S, HI, device="cuda", generator=g) * 0.1
    ks = torch.rand(B, T, device="cuda", generator=g) + 0.5
    return q, w, k, ks


# --- top-k -------------------------------------------------------------------------------------

def tune_topk():
    cases = [("prefill", 1, 4096, 131072, True), ("decode", 64, 2, 131072, False),
             ("decode", 1, 2, 131072, False)]
    for phase, B, S, T, causal in cases:
        q, w, k, ks = indexer_scores(S, T, B)
        scores = kernels.lightning_indexer(q, w, k, k_scale=ks)  # causal: queries at the end of T
        del q, w, k
        K = 2048
        base = dict(phase=phase, B=B, S=S, T=T, topk=K)
        ms = _try("topk", lambda: topk_indices_torch(scores, K), impl="torch.topk", **base)
        record(kind="topk", impl="torch.topk", ms=ms, **base)
        ref = topk_indices_torch(scores, K)
        want = scores.gather(-1, ref.long()).sort(-1).values
        variants = []
        for block, pps in ((1024, 4), (512, 5), (4096, 2)):
            for nw in ((4,) if phase == "prefill" else (4, 8, 16)):
                for splits in ((1,) if phase == "prefill" else ((1,) if B > 1 else (None, 8))):
                    for qs in ((None, T - S) if causal else (None,)):
                        variants.append(dict(BLOCK=block, PROGRAMS_PER_SM=pps, nw=nw, splits=splits, q_start=qs))
        for v in variants:
            with gpu_config(tk, BLOCK_MANY=v["BLOCK"], BLOCK_FEW=v["BLOCK"], PROGRAMS_PER_SM_MANY=v["PROGRAMS_PER_SM"],
                            NUM_WARPS_MANY=v["nw"], NUM_WARPS_FEW=v["nw"]):
                fb = torch.zeros(1, dtype=torch.int32, device="cuda")
                out = topk_indices(scores, K, splits=v["splits"], q_start=v["q_start"], fallbacks=fb)
                got = scores.gather(-1, out.clamp_min(0).long()).sort(-1).values
                exact = bool(torch.equal(got, want))
                ms = _try("topk", lambda: topk_indices(scores, K, splits=v["splits"], q_start=v["q_start"]),
                          impl="triton", **base, **v)
            record(kind="topk", impl="triton", ms=ms, exact=exact, fallbacks=int(fb.item()),
                   gbps=(scores.numel() * 4 / ms / 1e6) if ms else None, **base, **v)
        del scores
        torch.cuda.empty_cache()


# --- sparse MLA ---------------------------------------------------------------------------------

SPARSE_VARIANTS = [
    dict(BLOCK_H=64, BLOCK_N=64, num_warps=8, num_stages=2, LAZY_RESCALE=False),
    dict(BLOCK_H=64, BLOCK_N=64, num_warps=8, num_stages=3, LAZY_RESCALE=False),
    dict(BLOCK_H=64, BLOCK_N=32, num_warps=8, num_stages=3, LAZY_RESCALE=False),
    dict(BLOCK_H=64, BLOCK_N=32, num_warps=8, num_stages=4, LAZY_RESCALE=False),
    dict(BLOCK_H=32, BLOCK_N=64, num_warps=4, num_stages=2, LAZY_RESCALE=False),
]


def _uniform_indices(B, S, T, K, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = torch.rand(B, S, T, device="cuda", generator=g)
    idx = r.topk(K, dim=-1).indices.int()  # distinct, uniform over the context
    return idx


def tune_sparse():
    cases = [("prefill", 1, 4096, 131072), ("decode", 128, 2, 32768), ("decode", 8, 2, 131072)]
    for phase, B, S, T in cases:
        K = 2048
        g = torch.Generator(device="cuda").manual_seed(1)
        q = torch.randn(B, S, H, D, device="cuda", generator=g, dtype=torch.bfloat16)
        kv = torch.randn(B, T, D, device="cuda", generator=g, dtype=torch.bfloat16)
        idx = torch.cat([_uniform_indices(B, min(S, 512), T, K, seed=i) for i in range(triton.cdiv(S, 512))], 1)[:, :S]
        idx = idx.contiguous()
        flops = B * S * H * K * 2 * (D + DV)
        rows = slice(0, S, max(1, S // 8))
        ref_o, _ = ref_sparse(q[:, rows], kv, idx[:, rows], sm_scale=D ** -0.5, d_v=DV)
        base = dict(phase=phase, B=B, S=S, T=T, topk=K)
        for v in SPARSE_VARIANTS:
            with gpu_config(mla, "tiles", **v):  # the bf16 tiles
                try:
                    o, _ = kernels.sparse_mla(q, kv, idx, sm_scale=D ** -0.5, d_v=DV)
                    err = ((o[:, rows].float() - ref_o.float()).norm() / ref_o.float().norm()).item()
                except Exception as exc:  # noqa: BLE001
                    record(kind="sparse_mla", error=f"{type(exc).__name__}: {str(exc)[:200]}", **base, **v)
                    continue
                ms = _try("sparse_mla", lambda: kernels.sparse_mla(q, kv, idx, sm_scale=D ** -0.5, d_v=DV), **base, **v)
            record(kind="sparse_mla", ms=ms, tflops=flops / ms / 1e9 if ms else None, rel_err=err, **base, **v)
        # dense MLA decode (the baseline of issue 9) with the same variants
        if phase == "decode":
            fl = B * S * H * T * 2 * (D + DV)
            for v in SPARSE_VARIANTS[:3]:
                with gpu_config(mla, "tiles", **v):
                    ms = _try("dense_mla", lambda: kernels.dense_mla(q, kv, sm_scale=D ** -0.5, d_v=DV), **base, **v)
                record(kind="dense_mla", ms=ms, tflops=fl / ms / 1e9 if ms else None,
                       gbps=B * T * D * 2 / ms / 1e6 if ms else None, **base, **v)
        del q, kv, idx
        torch.cuda.empty_cache()


# --- indexer ------------------------------------------------------------------------------------

INDEXER_VARIANTS = [(256, 32, 8, 2), (256, 32, 8, 3), (256, 64, 8, 2), (256, 16, 8, 2),
                    (128, 32, 4, 2), (128, 64, 4, 3), (128, 32, 8, 2), (256, 32, 4, 2), (128, 16, 4, 2)]


def tune_indexer():
    for dtype in (torch.float8_e4m3fn, torch.bfloat16):
        B, S, T = 1, 4096, 131072
        q, w, k, ks = indexer_scores(S, T, B, dtype=dtype)
        ks_arg = ks if dtype == torch.float8_e4m3fn else None
        pairs = sum(T - S + 1 + i for i in range(S))
        flops = B * pairs * HI * DI * 2
        base = dict(B=B, S=S, T=T, dtype=str(dtype).replace("torch.", ""))
        for bt, spp, nw, ns in INDEXER_VARIANTS:
            v = dict(BLOCK_T=bt, MAX_S_PER_PROG=spp, num_warps=nw, num_stages=ns)
            with gpu_config(ix, **v):
                ms = _try("indexer", lambda: kernels.lightning_indexer(q, w, k, k_scale=ks_arg), **base, **v)
            record(kind="indexer", ms=ms, tflops=flops / ms / 1e9 if ms else None, **base, **v)
        del q, w, k, ks
        torch.cuda.empty_cache()


# --- one DSA step against torch SDPA ------------------------------------------------------------

def tune_step():
    import torch.nn.functional as F
    from torch.nn.attention.bias import causal_lower_right

    B, S, T, K = 1, 4096, 131072, 2048
    g = torch.Generator(device="cuda").manual_seed(2)
    qm = torch.randn(B, S, H, D, device="cuda", generator=g, dtype=torch.bfloat16)
    kv = torch.randn(B, T, D, device="cuda", generator=g, dtype=torch.bfloat16)
    iq, iw, ik, iks = indexer_scores(S, T, B)
    step = lambda: kernels.dsa_attention(qm, kv, iq, iw, ik, index_k_scale=iks, topk_tokens=K,  # noqa: E731
                                         sm_scale=D ** -0.5, d_v=DV)
    ms = _try("step", step)
    record(kind="step", impl="dsa-triton", ms=ms, B=B, S=S, T=T, topk=K)
    del qm, kv
    torch.cuda.empty_cache()
    q = torch.randn(B, H, S, 192, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, H, T, 192, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, H, T, 128, device="cuda", dtype=torch.bfloat16)
    mask = causal_lower_right(S, T)
    ms = _try("step", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=192 ** -0.5))
    record(kind="step", impl="sdpa-lower-right-mask", ms=ms, B=B, S=S, T=T)
    # The same dense work as two mask-free calls cuDNN takes at full speed: the S queries against the
    # T - S earlier keys (no mask), then the S x S causal block. The LSE merge is not counted.
    kp, vp, kd, vd = k[:, :, :T - S], v[:, :, :T - S], k[:, :, T - S:], v[:, :, T - S:]

    def split():
        F.scaled_dot_product_attention(q, kp, vp, scale=192 ** -0.5)
        F.scaled_dot_product_attention(q, kd, vd, is_causal=True, scale=192 ** -0.5)
    ms = _try("step", split)
    record(kind="step", impl="sdpa-split-lower-bound", ms=ms, B=B, S=S, T=T)
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    ms = _try("step", lambda: kernels.dense_mha(qt, kt, vt, sm_scale=192 ** -0.5))
    record(kind="step", impl="dense-triton-mha", ms=ms, B=B, S=S, T=T)


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    only = set(argv[2].split(",")) if len(argv) > 2 and argv[1] == "--only" else {"topk", "sparse", "indexer", "step"}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for name, fn in (("topk", tune_topk), ("sparse", tune_sparse), ("indexer", tune_indexer), ("step", tune_step)):
        if name in only:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                record(kind=name, error=f"{type(exc).__name__}: {exc}")
            from dsa_bench.safe_io import write_json  # strict JSON: a failed timing's NaN becomes null

            write_json(out / "tune.json", {
                "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                "triton": triton.__version__, "seconds": time.time() - t0, "records": RECORDS})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
