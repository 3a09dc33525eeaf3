"""The attention ops dsa-bench measures, in one torch-free place: phases, families, the attention form
each (family, phase) runs, DSA's stages and their labels, and the sweep point.

Everything that names a stage, picks the MHA or MLA form, or labels the two models imports from here,
so that the runner, the cost model and the reports cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

PHASES = ("prefill", "decode")
FAMILIES = ("dense", "dsa")

# The paper's two models: dense MLA is DeepSeek-V3.1-Terminus, DSA is DeepSeek-V3.2-Exp.
MODEL_LABELS = {"dense": "DeepSeek-V3.1-Terminus", "dsa": "DeepSeek-V3.2-Exp"}

# DSA's stages in execution order. `masked_mha` is the deployed short-prefill mode: the indexer's
# selection applied as a mask to MHA over all visible tokens (it replaces sparse_mla for that call).
STAGES = ("indexer", "topk", "sparse_mla", "masked_mha")
STAGE_LABELS = {"indexer": "lightning indexer", "topk": "top-k selection", "sparse_mla": "sparse MLA",
                "masked_mha": "masked MHA", "total": "whole call"}
STAGE_ORDER = {"total": 0, **{s: i + 1 for i, s in enumerate(STAGES)}}

# Work kinds: what a kernel computes, for FLOP/byte counting and the cost model.
ATTENTION_KINDS = ("dense_mha", "dense_mla", "indexer", "topk", "sparse_mla")


def dense_form(phase: str) -> str:
    """The attention form dense MLA runs in: MHA (un-absorbed, qk 192 / v 128) to prefill, the
    absorbed MQA form over 576-value latents to decode (as DeepSeek serves V3.1-Terminus)."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return "dense_mha" if phase == "prefill" else "dense_mla"


def stage_kind(family: str, stage: str, phase: str) -> Optional[str]:
    """The work kind a results row measures (None: a row that is no single kernel, e.g. DSA's total)."""
    if family == "dense" and stage == "total":
        return dense_form(phase)
    if family == "dsa" and stage == "masked_mha":
        return "dense_mha"
    if family == "dsa" and stage in STAGES:
        return stage
    return None


def flops_per_pair(model, kind: str) -> int:
    """FLOPs of one (query token, attended token) pair of a kernel, all heads: the one formula the
    measurement (Workload.work) and the cost model (attention_work) both count with.

    dense_mha: QK^T over qk_head_dim and PV over v_head_dim per head; dense_mla / sparse_mla: the
    absorbed form, QK^T over the 576-value latent and PV over its first 512; indexer: the dot over
    index_head_dim per indexer head, then ReLU and the weighted sum over heads (2 more)."""
    m = model
    if kind == "dense_mha":
        return 2 * m.heads * (m.qk_head_dim + m.v_head_dim)
    if kind in ("dense_mla", "sparse_mla"):
        return 2 * m.heads * (m.latent_dim + m.kv_lora_rank)
    if kind == "indexer":
        return m.index_heads * (2 * m.index_head_dim + 2)
    if kind == "topk":
        return 0
    raise ValueError(f"unknown attention kind {kind!r}")


def attended(kind: str, visible, topk: Optional[int]):
    """Tokens a query row really attends: every visible one, or min(k, visible) for sparse MLA
    (works on ints and numpy arrays)."""
    if kind == "sparse_mla":
        import numpy as np

        return np.minimum(visible, topk)
    return visible


@dataclass(frozen=True)
class Point:
    """One sweep point. topk is None for dense implementations, which do not depend on k."""

    phase: str
    batch: int
    context: int
    topk: Optional[int]

    def key(self) -> tuple:
        return (self.phase, self.batch, self.context, self.topk)
