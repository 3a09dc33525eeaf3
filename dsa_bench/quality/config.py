"""QualityConfig: one indexer-quality run (synthetic attention source, the two training stages, evaluation).

Torch-free so the scenario loader can validate a `phase: quality` section without importing torch.
Defaults run on a CPU in about a minute (see dsa_bench/quality/train.py).
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def factor_dims(head_dim: int) -> dict[str, int]:
    """How the synthetic generator splits a main-attention head dim into its structured parts.

    freqs: positional frequencies (2 dims each: cos, sin); needle: dims of the needle codes;
    content: dims of the random (unpredictable) part. One more dim carries the sink indicator."""
    freqs = max(2, head_dim // 8)
    needle = max(2, head_dim // 8)
    return {"freqs": freqs, "needle": needle, "content": head_dim - 2 * freqs - 1 - needle}


def hidden_factors(head_dim: int) -> int:
    """Structured dims of the hidden state the indexer reads: positions, sink flag, a constant,
    needle key code and needle query code."""
    f = factor_dims(head_dim)
    return 2 * f["freqs"] + 2 + 2 * f["needle"]


class SyntheticSource(_Strict):
    """Generator of main-attention q/k/values and the hidden states the indexer reads (synthetic.py).

    The main attention's logit of query t for key s in head h is (in nats)
        local_h * K(t - s) + sink_h * [s < sinks] + needle_h * [t queries the needle at s] + noise * eps,
    K a positional kernel equal to 1 at distance 0 and decaying over `local_window` tokens, eps ~ N(0, 1)
    independent per head (the part the indexer cannot predict). Per-head strengths are the configured ones
    times a factor in [0.5, 1.5]. The hidden states carry the positional, sink and needle features, not eps."""

    seq_len: PositiveInt = Field(256, ge=8, description="tokens per sequence (prefill: every token is a query)")
    heads: PositiveInt = Field(8, description="heads of the main attention (MQA: one shared key per token)")
    head_dim: PositiveInt = Field(64, ge=16, description="main-attention q/k head dim (also the value dim)")
    index_heads: PositiveInt = Field(4, description="lightning indexer heads")
    index_dim: PositiveInt = Field(32, description="lightning indexer head dim (and its shared key dim)")
    hidden_dim: PositiveInt = Field(64, description="dim of the hidden state the indexer reads")
    local_window: float = Field(16.0, gt=0, description="width (tokens) over which the locality kernel decays")
    local_strength: NonNegativeFloat = Field(5.0, description="logit (nats) added for the nearest tokens")
    sinks: NonNegativeInt = Field(2, description="attention-sink tokens at the start of every sequence")
    sink_strength: NonNegativeFloat = Field(6.0, description="logit (nats) every query gives the sink tokens")
    needles: NonNegativeInt = Field(4, description="long-range 'needle' tokens per sequence (first half)")
    needle_queries: PositiveInt = Field(16, description="queries (far after the needle) that look up each needle")
    needle_strength: NonNegativeFloat = Field(10.0, description="logit (nats) a needle's queries give it")
    noise: NonNegativeFloat = Field(1.0, description="std (nats) of the per-head random logit component")
    seed: int = Field(0, description="seeds the fixed 'main model', the data stream and the indexer init")
    path: Optional[str] = Field(
        None, description="instead of the generator: a torch .pt file with attn_q [N,T,H,D], attn_k [N,T,D], "
                          "values [N,T,Dv] and hidden [N,T,hidden] captured from a real model (shapes then "
                          "override seq_len/heads/head_dim/hidden_dim)")

    @model_validator(mode="after")
    def _fits(self) -> "SyntheticSource":
        if self.path is None:
            need = hidden_factors(self.head_dim)
            if self.hidden_dim < need:
                raise ValueError(f"hidden_dim must be >= {need} for head_dim {self.head_dim}, got {self.hidden_dim}")
            if self.sinks + self.needles > self.seq_len // 2:
                raise ValueError("sinks + needles must fit in the first half of the sequence")
        return self


class QualityConfig(_Strict):
    """An indexer-quality run: dense warm-up, sparse stage, then recall / overlap / output error per k."""

    source: SyntheticSource = Field(default_factory=SyntheticSource, description="where q/k/hidden come from")
    warmup_steps: NonNegativeInt = Field(300, description="dense warm-up steps: KL over all visible tokens")
    sparse_steps: NonNegativeInt = Field(100, description="sparse-stage steps: KL restricted to the top-k set")
    lr_warmup: float = Field(1e-3, gt=0, description="Adam learning rate of the warm-up (the report's 1e-3)")
    lr_sparse: float = Field(
        3e-4, gt=0, description="Adam learning rate of the sparse stage (the report's 7.3e-6 is for 15000 steps "
                                "of 480 x 128K tokens; a short synthetic run needs a larger one)")
    batch: PositiveInt = Field(4, description="sequences per training step")
    sparse_topk: PositiveInt = Field(32, description="k of the sparse stage (the report's 2048 at 128K)")
    topk: list[PositiveInt] = Field([16, 32, 64, 128], min_length=1, description="k values to evaluate")
    eval_every: PositiveInt = Field(50, description="evaluate every this many training steps (plus start and end)")
    eval_sequences: PositiveInt = Field(8, description="held-out sequences of the evaluation set")

    @model_validator(mode="after")
    def _topk_sorted(self) -> "QualityConfig":
        if len(set(self.topk)) != len(self.topk):
            raise ValueError(f"topk: duplicate values in {self.topk}")
        self.topk = sorted(self.topk)
        return self
