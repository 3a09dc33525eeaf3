"""CostConfig: every knob of the token-cost model, each with a default and what it means.

A scenario's `cost:` section is a CostConfig. Values fall in four groups:
- what to price: GPU profile, USD per GPU hour, timing source (roofline or a measured results run);
- the deployment: decode batch, MTP query tokens, expert-parallel sizes, cache formats, top-k;
- stated kernel efficiencies (fraction of the GPU's peak each kernel reaches in public benchmarks);
- calibration against the paper's DeepSeek-V3.1-Terminus curves only (see calibrate.py).
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from dsa_bench.costmodel.gpus import get_gpu
from dsa_bench.ops import MODEL_LABELS


MAX_GPU_HOUR_USD = 1e6  # far above any rental price; 1e308 would overflow the curves into inf/NaN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


# Peak rates these fractions refer to: H800 SXM5 dense BF16 989.5 TFLOP/s, FP8 1979 TFLOP/s, HBM 3.35 TB/s.
_MEM = 3000 / 3350  # FlashMLA dense decode: "up to 3000 GB/s in memory-bound configuration on H800 SXM5"
_MEM_SRC = "FlashMLA README: dense MLA decode reaches 3000 GB/s memory-bound on H800 SXM5 (3000/3350 = 0.896)"


class KernelEfficiency(_Strict):
    """Fraction of the GPU's peak compute / bandwidth one kernel reaches (kernel-level, before deployment)."""

    compute: float = Field(1.0, gt=0, le=1, description="fraction of the dense tensor-core peak of the kernel's dtype")
    memory: float = Field(1.0, gt=0, le=1, description="fraction of the HBM bandwidth")
    source: str = Field("", description="where the fractions come from")


class KernelEfficiencies(_Strict):
    """Stated efficiencies of each kernel. Defaults: DeepSeek's / FlashAttention's published H800/H100 numbers."""

    dense_mha: KernelEfficiency = Field(
        KernelEfficiency(
            compute=740 / 989.5, memory=_MEM,
            source="FlashAttention-3 paper (Shah et al. 2024): BF16 forward up to 740 TFLOP/s on H100 SXM5 "
                   "(740/989.5 = 0.748); the dense MHA-form prefill of V3.1 (head dims 192/128) runs such a kernel",
        ),
        description="dense MHA-form attention (V3.1 prefill; V3.2's masked-MHA short-prefill mode)",
    )
    dense_mla: KernelEfficiency = Field(
        KernelEfficiency(
            compute=660 / 989.5, memory=_MEM,
            source="FlashMLA README: dense MLA decode 660 TFLOP/s compute-bound and 3000 GB/s memory-bound "
                   "on H800 SXM5",
        ),
        description="dense absorbed MLA decode (V3.1)",
    )
    indexer: KernelEfficiency = Field(
        KernelEfficiency(
            compute=1550 / 1979.0, memory=_MEM,
            source="DeepGEMM README: FP8 GEMMs up to 1550 TFLOP/s on H800 (1550/1979 = 0.783). No number is "
                   "published for the indexer kernel (fp8_mqa_logits) itself: assumed to run like a DeepGEMM FP8 "
                   "GEMM; " + _MEM_SRC,
        ),
        description="lightning indexer scores (FP8)",
    )
    topk: KernelEfficiency = Field(
        KernelEfficiency(
            compute=1.0, memory=_MEM,
            source="a streaming pass over the fp32 scores: memory-bound at the bandwidth of " + _MEM_SRC,
        ),
        description="top-k selection over the indexer scores",
    )
    sparse_mla_prefill: KernelEfficiency = Field(
        KernelEfficiency(
            compute=640 / 989.5, memory=_MEM,
            source="FlashMLA README: token-level sparse MLA prefill up to 640 TFLOP/s on H800 SXM5",
        ),
        description="sparse MQA-form attention, prefill",
    )
    sparse_mla_decode: KernelEfficiency = Field(
        KernelEfficiency(
            compute=410 / 989.5, memory=_MEM,
            source="FlashMLA README: token-level sparse MLA decode (FP8 KV cache) 410 TFLOP/s compute-bound "
                   "on H800 SXM5",
        ),
        description="sparse MQA-form attention, decode (FP8 latent cache)",
    )
    gemm: KernelEfficiency = Field(
        KernelEfficiency(
            compute=1550 / 1979.0, memory=_MEM,
            source="DeepGEMM README: FP8 GEMMs up to 1550 TFLOP/s on H800; used for the rest of the layer "
                   "(projections, MoE, LM head) and the indexer's projections",
        ),
        description="FP8 GEMMs of the rest of the layer and of the indexer projections",
    )

    @classmethod
    def uniform(cls) -> "KernelEfficiencies":
        """Every kernel at 100% of its roofline: the calibrated deployment efficiency is then the only one."""
        one = KernelEfficiency(compute=1.0, memory=1.0, source="uniform: roofline peak for every kernel")
        return cls(**{name: one for name in cls.model_fields})


class RestOfModel(_Strict):
    """The non-attention part of the layers (not in ModelShape). Defaults: DeepSeek-V3.x official config."""

    dense_layers: int = Field(3, ge=0, description="first layers with a dense FFN instead of MoE")
    dense_inter: PositiveInt = Field(18432, description="dense FFN inner dim")
    moe_inter: PositiveInt = Field(2048, description="expert inner dim")
    routed_experts: PositiveInt = Field(256, description="routed experts per MoE layer")
    active_experts: PositiveInt = Field(8, description="routed experts active per token")
    shared_experts: int = Field(1, ge=0, description="shared experts per MoE layer")
    vocab: PositiveInt = Field(129280, description="vocabulary (LM head)")
    weight_dtype: Literal["fp8", "bf16"] = Field("fp8", description="GEMM weights/activations (V3.x ships FP8 weights)")


class Calibration(_Strict):
    """Fit of the deployment efficiencies to the paper's DeepSeek-V3.1-Terminus (dense) curves ONLY."""

    reference_model: str = Field(MODEL_LABELS["dense"], description="the paper curve calibrated against")
    paper_csv: Optional[str] = Field(
        None, description="paper points (phase, model, position_tokens, usd_per_million_tokens); "
                          "default: the copy in dsa_bench/data/paper_figure3.csv")
    gpu: str = Field("H800", description="GPU the paper's costs were measured on")
    gpu_hour_usd: PositiveFloat = Field(2.0, description="the paper's rental price (USD per GPU hour)")
    # Explicit values skip the fit for that phase (both of a phase must be given).
    eta_rest_prefill: Optional[float] = Field(None, gt=0, description="prefill non-attention deployment efficiency")
    eta_attn_prefill: Optional[float] = Field(None, gt=0, description="prefill attention deployment efficiency")
    eta_rest_decode: Optional[float] = Field(None, gt=0, description="decode non-attention deployment efficiency")
    eta_attn_decode: Optional[float] = Field(None, gt=0, description="decode attention deployment efficiency")

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        return get_gpu(v).name

    @field_validator("paper_csv")
    @classmethod
    def _paper_csv_exists(cls, v: Optional[str]) -> Optional[str]:
        # Checked now, not after a whole sweep: the path is read relative to the working directory.
        from pathlib import Path

        if v is not None and not Path(v).is_file():
            raise ValueError(f"no such file {v!r} (relative paths are read from the working directory)")
        return v


class CostConfig(_Strict):
    """The `cost:` section of a scenario."""

    # --- what to price --------------------------------------------------------------------------
    gpu_hour_usd: PositiveFloat = Field(2.0, le=MAX_GPU_HOUR_USD, description="rental price of one GPU hour (USD)")
    gpu: str = Field("H800", description="GPU profile priced (dsa_bench.costmodel.gpus: H800, H100, H200, A100)")
    source: Literal["roofline", "measured"] = Field(
        "roofline", description="attention kernel times: roofline (FLOPs/bytes at stated efficiencies) or measured "
                                "(kernel timings of a results run on a GPU)")
    measured_run: Optional[Union[str, list[str]]] = Field(
        None, description="for source: measured, one or more results directories: a run "
                          "(results/<scenario>/<run-id>) or a scenario's folder (results/<scenario>: its latest "
                          "finished run); their rows are joined (e.g. a prefill run and a decode run). Default: the "
                          "run being written, if it timed dense and DSA on a GPU")
    measured_gpu: Optional[str] = Field(
        None, description="GPU profile the measured runs were timed on (default: the GPU their run.json names, "
                          "else `gpu`); measured times are rescaled by the roofline ratio when `gpu` differs")
    # --- outputs ----------------------------------------------------------------------------------
    curves: bool = Field(False, description="write cost_curves.csv and cost_curves.png into the run directory")
    plot: bool = Field(True, description="with curves: also draw cost_curves.png")
    overlay_paper: bool = Field(True, description="draw the paper's Figure 3 points on the PNG")
    phases: list[Literal["prefill", "decode"]] = Field(["prefill", "decode"], min_length=1,
                                                      description="phases to price")
    max_position: PositiveInt = Field(131072, description="last token position of the curves")
    position_step: PositiveInt = Field(1024, description="spacing of positions (tokens)")
    labels: dict[Literal["dense", "dsa"], str] = Field(
        dict(MODEL_LABELS),
        description="model column values for the dense MLA model and the DSA model")
    # --- the deployment ----------------------------------------------------------------------------
    topk: PositiveInt = Field(2048, description="DSA top-k (tokens each query attends to)")
    decode_tokens: Literal[1, 2] = Field(
        2, description="query tokens per decode step: 2 = MTP (one speculative token), as DeepSeek serves")
    decode_batch: PositiveInt = Field(
        88, description="sequences decoded together per GPU (DeepSeek's day-6 overview: 14.8k output tok/s per "
                        "8-GPU node at 20-22 tok/s per user -> ~88 per GPU)")
    decode_ep: PositiveInt = Field(144, description="GPUs of one decode instance (DeepSeek: EP144)")
    prefill_tokens: PositiveInt = Field(16384, description="tokens per GPU per prefill step (weights read once)")
    prefill_ep: PositiveInt = Field(32, description="GPUs of one prefill instance (DeepSeek: EP32)")
    short_prefill: Literal["auto", "off"] = Field(
        "auto", description="DSA prefill's masked-MHA mode: auto = at each position the cheaper of masked MHA "
                            "(dense MHA-form attention) and sparse MQA-form attention; off = always sparse")
    attention_dtype: Literal["bf16", "fp16"] = Field("bf16", description="attention math and MHA-form K/V")
    indexer_dtype: Literal["fp8", "bf16"] = Field("fp8", description="indexer q/k (FP8 in production)")
    dense_kv_cache: Literal["bf16", "fp8"] = Field("bf16", description="V3.1's latent cache (FlashMLA dense: BF16)")
    dsa_kv_cache: Literal["bf16", "fp8"] = Field(
        "fp8", description="V3.2's latent cache; fp8 = FlashMLA's 656-byte format (512 fp8 + 4 fp32 scales + 64 bf16)")
    efficiency: KernelEfficiencies = Field(default_factory=KernelEfficiencies,
                                           description="stated kernel efficiencies; 'uniform' = all 1.0")
    rest: RestOfModel = Field(default_factory=RestOfModel, description="non-attention dims of the model")
    calibration: Calibration = Field(default_factory=Calibration,
                                     description="fit of the deployment efficiencies to the V3.1-Terminus curves")

    @field_validator("gpu", "measured_gpu")
    @classmethod
    def _known_gpu(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else get_gpu(v).name

    @field_validator("decode_tokens", mode="before")
    @classmethod
    def _decode_tokens_not_bool(cls, v):
        if isinstance(v, bool):  # Literal[1, 2] would take `true` as 1
            raise ValueError(f"must be an integer, got {v!r}")
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _both_labels(cls, v):
        return {**MODEL_LABELS, **(v or {})}

    @field_validator("efficiency", mode="before")
    @classmethod
    def _preset(cls, v):
        if v == "uniform":
            return KernelEfficiencies.uniform()
        if v in ("benchmarks", "default"):
            return KernelEfficiencies()
        return v


__all__ = ["CostConfig", "Calibration", "KernelEfficiencies", "KernelEfficiency", "RestOfModel"]
