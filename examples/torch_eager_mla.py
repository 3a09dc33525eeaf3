"""Example plug-in: dense MLA decode as a user would write it in plain PyTorch (eager, bf16 matmuls).

A scenario loads it with `implementations_from: [torch_eager_mla.py]` and lists `dense-torch-eager`
in `implementations`; the engine then checks, times and reports it like any built-in implementation.
An implementation is a function from a Workload (one sweep point's inputs) to a Prepared call.
"""
from __future__ import annotations

import torch

from dsa_bench.registry import Implementation, Prepared, register


def prepare(w) -> Prepared:
    q, kv = w.mla_inputs()  # q [B, S, H, 576], latent cache kv [B, T, 576], in the scenario's dtype
    d_v, scale = w.model.kv_lora_rank, w.model.sm_scale
    pos = w.q_start + torch.arange(w.S, device=q.device)  # query i sees tokens <= q_start + i
    mask = torch.arange(w.T, device=q.device)[None, :] > pos[:, None]  # [S, T]

    def run():
        scores = torch.einsum("bshd,btd->bsht", q, kv).float() * scale
        scores.masked_fill_(mask[None, :, None, :], float("-inf"))
        p = torch.softmax(scores, dim=-1).to(kv.dtype)
        return torch.einsum("bsht,btd->bshd", p, kv[..., :d_v])

    return Prepared(run=run)


register(Implementation(
    name="dense-torch-eager", family="dense", backend="plugin", phases=frozenset({"decode"}),
    prepare=prepare, description="example plug-in: dense MLA decode in eager PyTorch (examples/torch_eager_mla.py)",
))
