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


@dataclass(frozen=True)
class Point:
    """One sweep point. topk is None for dense implementations, which do not depend on k."""

    phase: str
    batch: int
    context: int
    topk: Optional[int]

    def key(self) -> tuple:
        return (self.phase, self.batch, self.context, self.topk)
