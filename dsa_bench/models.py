"""Model presets: the attention shapes that decide what a benchmark point computes."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class ModelShape(BaseModel):
    """Attention-relevant dimensions of an MLA / DSA model (DeepSeek naming)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    heads: PositiveInt = Field(128, description="attention heads")
    kv_lora_rank: PositiveInt = Field(512, description="latent dim (value part of the MQA latent)")
    qk_rope_head_dim: PositiveInt = Field(64, description="RoPE dims per head / in the latent")
    qk_nope_head_dim: PositiveInt = Field(128, description="non-RoPE q/k dims per head (MHA form)")
    v_head_dim: PositiveInt = Field(128, description="value dims per head (MHA form)")
    index_heads: PositiveInt = Field(64, description="lightning indexer heads")
    index_head_dim: PositiveInt = Field(128, description="lightning indexer head dim")
    # The rest of the layer, used by the cost model only.
    layers: PositiveInt = 61
    hidden: PositiveInt = 7168
    q_lora_rank: PositiveInt = 1536

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
