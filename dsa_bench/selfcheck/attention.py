"""GPU self-check of the attention kernels against their float32 references at DeepSeek shapes.

`check_attention()` returns one dict per case; it does no I/O. `dsa-bench check-kernels` runs it (with
dsa_bench/selfcheck/indexer.py); by hand, on a GPU:
    python -c "from dsa_bench.selfcheck.attention import check_attention as c; [print(r) for r in c()]"
Inputs are bf16 (what the model runs), so the output error is dominated by bf16 rounding of the
output (~2^-9 relative) and of the softmax weights fed to the second matmul: 2e-2 leaves margin while
still catching any indexing/masking bug (those give errors of order 1). lse is computed from exact
bf16 products accumulated in fp32 on both sides, so it agrees to ~1e-3 (5e-2 absolute allowed).
"""
from __future__ import annotations

import torch

H, D, D_V = 128, 576, 512  # DeepSeek V3.2 MLA: 128 heads, 512 latent + 64 rope
D_QK, D_VH = 192, 128  # un-absorbed MHA form: 128 nope + 64 rope, value 128
SM_SCALE = D_QK ** -0.5
TOPK = 2048
REL_TOL = 2e-2
LSE_TOL = 5e-2


def _cases():
    for B in (1, 32):
        for S in (1, 2):
            for T in (4096, 131072):
                yield dict(kernel="sparse_mla", B=B, S=S, T=T, K=TOPK)
    yield dict(kernel="sparse_mla", B=1, S=1024, T=32768, K=TOPK)
    for B in (1, 32):
        for T in (4096, 131072):
            yield dict(kernel="dense_mla", B=B, S=1, T=T, K=None)
    yield dict(kernel="dense_mha", B=1, S=4096, T=4096, K=None)
    yield dict(kernel="dense_mha", B=1, S=1024, T=32768, K=None)
    yield dict(kernel="masked_mha", B=1, S=4096, T=4096, K=TOPK)  # DSA's short-prefill mode
    yield dict(kernel="masked_mha", B=2, S=1024, T=8192, K=TOPK)


def _sparse_indices(B, S, T, K, gen, device):
    """K distinct visible tokens per query row (query s sits at T - S + s), ~3% replaced by -1."""
    pos = T - S + torch.arange(S, device=device)
    idx = torch.empty(B, S, K, dtype=torch.int32, device=device)
    for b in range(B):  # per batch row keeps the [S, T] random matrix small
        r = torch.rand(S, T, generator=gen, device=device)
        r.masked_fill_(torch.arange(T, device=device)[None, :] > pos[:, None], -1.0)
        top = r.topk(K, dim=-1)
        idx[b] = torch.where(top.values >= 0, top.indices, -1).to(torch.int32)
    holes = torch.rand(B, S, K, generator=gen, device=device) < 0.03
    return idx.masked_fill_(holes, -1)


def _compare(out, ref_out, lse=None, ref_lse=None):
    o, r = out.float(), ref_out.float()
    rel = ((o - r).norm() / r.norm().clamp_min(1e-30)).item()
    ok = bool(torch.isfinite(o).all()) and rel <= REL_TOL
    lse_err = None
    if lse is not None:
        fin = torch.isfinite(ref_lse)
        same_pattern = torch.equal(fin, torch.isfinite(lse)) and not torch.isnan(lse).any()
        lse_err = (lse[fin] - ref_lse[fin]).abs().max().item() if fin.any() else 0.0
        ok = ok and same_pattern and lse_err <= LSE_TOL
    return rel, lse_err, ok


def _run_case(case, gen, device):
    import kernels
    import kernels.reference as ref

    B, S, T, K = case["B"], case["S"], case["T"], case["K"]
    bf16 = torch.bfloat16

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32).to(bf16)

    if case["kernel"] == "dense_mha":
        q, k, v = randn(B, S, H, D_QK), randn(B, T, H, D_QK), randn(B, T, H, D_VH)
        out = kernels.dense_mha(q, k, v, sm_scale=SM_SCALE)
        ref_out = ref.dense_mha(q, k, v, sm_scale=SM_SCALE)
        return _compare(out, ref_out)
    if case["kernel"] == "masked_mha":
        q, k, v = randn(B, S, H, D_QK), randn(B, T, H, D_QK), randn(B, T, H, D_VH)
        idx = _sparse_indices(B, S, T, K, gen, device)
        out = kernels.masked_mha(q, k, v, idx, sm_scale=SM_SCALE)
        ref_out = ref.masked_mha(q, k, v, idx, sm_scale=SM_SCALE)
        return _compare(out, ref_out)
    q, kv = randn(B, S, H, D), randn(B, T, D)
    if case["kernel"] == "sparse_mla":
        idx = _sparse_indices(B, S, T, K, gen, device)
        out, lse = kernels.sparse_mla(q, kv, idx, sm_scale=SM_SCALE, d_v=D_V)
        ref_out, ref_lse = ref.sparse_mla(q, kv, idx, sm_scale=SM_SCALE, d_v=D_V)
    else:
        out, lse = kernels.dense_mla(q, kv, sm_scale=SM_SCALE, d_v=D_V)
        ref_out, ref_lse = ref.dense_mla(q, kv, sm_scale=SM_SCALE, d_v=D_V)
    return _compare(out, ref_out, lse, ref_lse)


def check_attention(device="cuda") -> list[dict]:
    """Triton vs reference for every case; one dict per case (no printing, no files)."""
    gen = torch.Generator(device=device).manual_seed(0)
    results = []
    for case in _cases():
        rel, lse_err, ok = _run_case(case, gen, device)
        results.append(dict(case, rel_err=rel, lse_max_abs_err=lse_err, ok=ok, tol=REL_TOL, lse_tol=LSE_TOL))
        torch.cuda.empty_cache()
    return results
