"""Model presets: the attention shapes that decide what a benchmark point computes."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

# Sane upper bounds: far above any real MLA model (DeepSeek: 128 heads, a 576-wide latent), far below
# sizes that could only end as out-of-memory rows after minutes of input generation.
Heads = Annotated[PositiveInt, Field(le=1024)]
HeadDim = Annotated[PositiveInt, Field(le=4096)]
LatentRank = Annotated[PositiveInt, Field(le=65536)]


class ModelShape(BaseModel):
    """Attention-relevant dimensions of an MLA / DSA model (DeepSeek naming)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field("custom", max_length=100)
    heads: Heads = Field(128, description="attention heads")
    kv_lora_rank: LatentRank = Field(512, description="latent dim (value part of the MQA latent)")
    qk_rope_head_dim: HeadDim = Field(64, description="RoPE dims per head / in the latent")
    qk_nope_head_dim: HeadDim = Field(128, description="non-RoPE q/k dims per head (MHA form)")
    v_head_dim: HeadDim = Field(128, description="value dims per head (MHA form)")
    index_heads: Heads = Field(64, description="lightning indexer heads")
    index_head_dim: HeadDim = Field(128, description="lightning indexer head dim")
    # The rest of the layer, used by the cost model only.
    layers: Annotated[PositiveInt, Field(le=1024)] = 61
    hidden: LatentRank = 7168
    q_lora_rank: LatentRank = 1536

    @property
    def latent_dim(self) -> int:
        """Values per token in the MQA latent cache (512 + 64 = 576 for DeepSeek)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def sm_scale(self) -> float:
        # MLA keeps the MHA-form scale in the absorbed form, so both modes use 1/sqrt(192).
        return self.qk_head_dim ** -0.5


PRESETS: dict[str, ModelShape] = {
    # Official inference config of the 671B model (../shared/paper/README.md).
    "deepseek-v3.2": ModelShape(name="deepseek-v3.2"),
    # Same structure, small enough for the Triton CPU interpreter: every dim a power of two.
    "tiny": ModelShape(
        name="tiny", heads=8, kv_lora_rank=64, qk_rope_head_dim=32, qk_nope_head_dim=32,
        v_head_dim=32, index_heads=4, index_head_dim=32, layers=2, hidden=256, q_lora_rank=64,
    ),
}
