"""Time masked MHA launch variants against dense MHA at one shape on a GPU (a tuning aid, no asserts).

python tools/bench_masked_mha.py OUT.json [S] — bf16, H = 128, qk 192 / v 128, k = 2048 random
visible keys per row; CUDA-event medians of 20 calls after warm-up (L2 not flushed)."""
import json
import sys

import torch

import kernels
from dsa_bench.selfcheck.attention import _sparse_indices
from kernels.dense_mha import CONFIG

MASKED = CONFIG["gpu"]["masked"]  # what the variants below edit in place
S = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
g = torch.Generator(device="cuda").manual_seed(0)
q, k = (torch.randn(1, S, 128, 192, device="cuda", generator=g).bfloat16() for _ in range(2))
v = torch.randn(1, S, 128, 128, device="cuda", generator=g).bfloat16()
idx = _sparse_indices(1, S, S, 2048, g, "cuda")


def ms(fn, n=20):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    return sorted(ts)[n // 2]


res = [{"variant": "dense", "ms": ms(lambda: kernels.dense_mha(q, k, v, sm_scale=0.07))}]
ref = kernels.masked_mha(q, k, v, idx, sm_scale=0.07).float()
for per_key in (False, True):
    for bn in (64, 128):
        for st in (1, 2, 3):
            MASKED.clear()
            MASKED.update(SEL_PER_KEY=per_key, BLOCK_N=bn, num_stages=st)
            try:
                t = ms(lambda: kernels.masked_mha(q, k, v, idx, sm_scale=0.07))
                o = kernels.masked_mha(q, k, v, idx, sm_scale=0.07).float()
                res.append(dict(variant=dict(MASKED), ms=t, rel=((o - ref).norm() / ref.norm()).item()))
            except Exception as e:  # noqa: BLE001 - a variant that does not fit is recorded
                res.append(dict(variant=dict(MASKED), error=str(e)[:120]))
            print(res[-1], flush=True)
json.dump(res, open(sys.argv[1], "w"), indent=1)
