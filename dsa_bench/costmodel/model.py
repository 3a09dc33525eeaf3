"""The token-cost model: USD per million tokens of the token at position t, per phase and model.

Everything here is a pure function of (ModelShape, CostConfig, measured timings). The cost of the
token at position t is GPU-seconds x price. GPU-seconds are summed over the model's layers:

    seconds(t) = rest / eta_rest[phase] + sum(attention components at t) / eta_attn[phase]

- `rest`: the non-attention part of every layer (MLA projections, dense FFN / MoE, LM head), plus,
  for DSA, the indexer's projections (`indexer_proj`); a roofline of FP8 GEMM FLOPs and weight bytes,
  the weights read once per step and shared by the tokens of the step (decode: batch x MTP tokens).
- attention components at position t (n = t + 1 visible tokens, causal):
    dense prefill   `dense_mha`  MHA-form attention over n tokens (2 H (192 + 128) n FLOPs)
    dense decode    `dense_mla`  absorbed MQA-form attention over the n-token latent cache
    DSA             `indexer` (O(n)), `topk` (O(n)), `sparse_mla` (MQA form over min(n, k) tokens);
                    in prefill, where masked MHA over n tokens is cheaper than sparse attention (the
                    report's short-sequence mode), `dense_mha` replaces `sparse_mla`.
  Each component's time is the roofline max(FLOPs / (peak x eff_compute), bytes / (bandwidth x
  eff_memory)) at the stated kernel efficiencies (source: roofline), or that roofline times the
  measured/roofline ratio of the kernel timed at the nearest contexts of a results run (source: measured).
- eta_rest and eta_attn (deployment efficiencies) come from calibrate.py: fitted to the paper's
  DeepSeek-V3.1-Terminus (dense) curves only. The DSA curves reuse them unchanged.

Work counts follow dsa_bench/workload.py (FLOPs really done; the fewest bytes a kernel must move),
per query token instead of per call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from dsa_bench.costmodel.config import CostConfig, KernelEfficiency
from dsa_bench.costmodel.gpus import GpuProfile, get_gpu
from dsa_bench.crossover import crossing_position  # noqa: F401 - the one rule; re-exported
from dsa_bench.models import ModelShape
from dsa_bench.ops import MODEL_LABELS, attended, dense_form, flops_per_pair, stage_kind

PHASES = ("prefill", "decode")
FAMILIES = ("dense", "dsa")
ATTENTION = ("dense_mha", "dense_mla", "indexer", "topk", "sparse_mla")
COMPONENTS = ("rest", "indexer_proj") + ATTENTION
COMPONENT_COLUMNS = [f"usd_{c}" for c in COMPONENTS]
CURVE_COLUMNS = ["phase", "model", "position_tokens", "usd_per_million_tokens", *COMPONENT_COLUMNS,
                 "family", "dsa_attention_mode", "timing_source", "gpu", "gpu_hour_usd"]
ELEM = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4}


# --- formats and work ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Formats:
    """What one attention evaluation assumes: top-k, MTP tokens, dtypes and cache formats."""

    topk: int = 2048
    decode_tokens: int = 2
    attention_dtype: str = "bf16"
    indexer_dtype: str = "fp8"
    dense_kv_cache: str = "bf16"
    dsa_kv_cache: str = "fp8"

    @classmethod
    def of(cls, cfg: CostConfig) -> "Formats":
        return cls(cfg.topk, cfg.decode_tokens, cfg.attention_dtype, cfg.indexer_dtype,
                   cfg.dense_kv_cache, cfg.dsa_kv_cache)


@dataclass
class Work:
    """FLOPs and bytes of one kernel per layer, one value per query position."""

    flops: np.ndarray
    nbytes: np.ndarray
    dtype: str


def latent_bytes(model: ModelShape, fmt: str) -> int:
    """Bytes per cached token of the MLA latent: bf16 576 x 2; fp8 = FlashMLA's 512 + 4 x 4 + 64 x 2 = 656."""
    if fmt == "fp8":
        return model.kv_lora_rank + 4 * math.ceil(model.kv_lora_rank / 128) + 2 * model.qk_rope_head_dim
    return ELEM[fmt] * model.latent_dim


def index_key_bytes(model: ModelShape, dtype: str) -> int:
    """Bytes per cached indexer key: fp8 values plus one fp32 scale (132 for DeepSeek), or bf16 values."""
    return model.index_head_dim + 4 if dtype == "fp8" else ELEM[dtype] * model.index_head_dim


def attention_work(model: ModelShape, phase: str, kind: str, t: np.ndarray, f: Formats) -> Work:
    """Work of one attention kernel for the query token at each position in `t`, per layer.

    Prefill bytes are the marginal ones (each key/value read once per sequence, as in workload.py);
    decode bytes include the cache read, shared by the `decode_tokens` query tokens of a step.
    """
    m = model
    n = np.asarray(t, dtype=np.float64) + 1.0  # visible tokens, causal (the token itself included)
    e = ELEM[f.attention_dtype]
    H, D, dv = m.heads, m.latent_dim, m.kv_lora_rank
    share = f.decode_tokens if phase == "decode" else None
    one = np.ones_like(n)
    if kind == "dense_mha":
        flops = n * flops_per_pair(m, kind)
        nbytes = one * e * H * 2 * (m.qk_head_dim + m.v_head_dim)  # this token's q, k, v and output
        return Work(flops, nbytes, f.attention_dtype)
    if kind == "dense_mla":
        flops = n * flops_per_pair(m, kind)
        cache = latent_bytes(m, f.dense_kv_cache) * (n / share if share else one)
        return Work(flops, cache + e * H * (D + dv) + 4 * H, f.attention_dtype)
    if kind == "indexer":
        Hi, Di = m.index_heads, m.index_head_dim
        ie = ELEM[f.indexer_dtype]
        flops = n * flops_per_pair(m, kind)
        keys = index_key_bytes(m, f.indexer_dtype) * (n / share if share else one)
        nbytes = keys + ie * Hi * Di + 4 * Hi + 4 * n  # keys, q, head weights, fp32 scores written
        return Work(flops, nbytes, f.indexer_dtype)
    if kind == "topk":
        return Work(0 * n, 4 * n + 4 * f.topk * one, "fp32")  # scores read, indices written
    if kind == "sparse_mla":
        sel = attended(kind, n, f.topk)
        flops = sel * flops_per_pair(m, kind)
        kv = latent_bytes(m, f.dsa_kv_cache)
        gathered = kv * sel if phase == "decode" else kv * one  # prefill: rows shared by the sequence's queries
        return Work(flops, gathered + e * H * (D + dv) + 4 * (f.topk + H) * one, f.attention_dtype)
    raise ValueError(f"unknown attention kind {kind!r}")


def kernel_seconds(w: Work, gpu: GpuProfile, eff: KernelEfficiency) -> np.ndarray:
    """Roofline time of one kernel: the slower of its compute and its memory traffic."""
    compute = w.flops / (gpu.flops_per_s(w.dtype) * eff.compute)
    memory = w.nbytes / (gpu.bytes_per_s * eff.memory)
    return np.maximum(compute, memory)


def kernel_efficiency(cfg: CostConfig, phase: str, kind: str) -> KernelEfficiency:
    if kind == "sparse_mla":
        return getattr(cfg.efficiency, f"sparse_mla_{phase}")
    return getattr(cfg.efficiency, kind)


# --- the rest of the layer ---------------------------------------------------------------------------

def rest_parts(model: ModelShape, cfg: CostConfig) -> dict[str, tuple[float, Optional[float]]]:
    """(MACs per token, parameters one GPU reads per step) of each non-attention part, whole model.

    Attention projections, shared experts, dense FFNs and the LM head are replicated on every GPU
    (data-parallel attention, as in DeepSeek's deployment); routed experts are split over the
    expert-parallel GPUs of an instance. `indexer_proj` is DSA's extra: the indexer's query
    projection (q_lora -> heads x dim), key projection and per-head weight projection.
    """
    m, r = model, cfg.rest
    h, L = m.hidden, m.layers
    attn = (h * m.q_lora_rank + m.q_lora_rank * m.heads * m.qk_head_dim + h * m.latent_dim
            + m.kv_lora_rank * m.heads * (m.qk_nope_head_dim + m.v_head_dim) + m.heads * m.v_head_dim * h)
    dense_layers = min(r.dense_layers, L)
    moe_layers = L - dense_layers
    expert = 3 * h * r.moe_inter
    dense_ffn = 3 * h * r.dense_inter
    idx = m.q_lora_rank * m.index_heads * m.index_head_dim + h * m.index_head_dim + h * m.index_heads
    shared = moe_layers * (h * r.routed_experts + r.shared_experts * expert)  # router + shared experts
    return {
        "attention_projections": (L * attn, L * attn),
        "dense_ffn": (dense_layers * dense_ffn, dense_layers * dense_ffn),
        "router_and_shared_experts": (shared, shared),
        "routed_experts": (moe_layers * r.active_experts * expert, None),  # per-GPU params: see rest_seconds
        "lm_head": (h * r.vocab, h * r.vocab),
        "indexer_proj": (L * idx, L * idx),
    }


def rest_seconds(model: ModelShape, cfg: CostConfig, phase: str, gpu: GpuProfile) -> dict[str, float]:
    """GPU-seconds per token of the non-attention parts (eta = 1): {'rest': ..., 'indexer_proj': ...}."""
    parts = rest_parts(model, cfg)
    r = cfg.rest
    ep = cfg.decode_ep if phase == "decode" else cfg.prefill_ep
    tokens = cfg.decode_batch * cfg.decode_tokens if phase == "decode" else cfg.prefill_tokens
    moe_layers = model.layers - min(r.dense_layers, model.layers)
    routed_params_per_gpu = moe_layers * r.routed_experts * 3 * model.hidden * r.moe_inter / ep
    wbytes = ELEM[r.weight_dtype]
    eff = cfg.efficiency.gemm
    out = {"rest": 0.0, "indexer_proj": 0.0}
    for name, (macs, params) in parts.items():
        if params is None:
            params = routed_params_per_gpu
        compute = 2.0 * macs / (gpu.flops_per_s(r.weight_dtype) * eff.compute)
        memory = wbytes * params / tokens / (gpu.bytes_per_s * eff.memory)
        out["indexer_proj" if name == "indexer_proj" else "rest"] += max(compute, memory)
    return out


# --- measured kernel timings -------------------------------------------------------------------------

@dataclass
class MeasuredRatios:
    """measured / roofline time of each (phase, kind), against context; positions between are interpolated."""

    gpu: str
    table: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def first_timed(self, phase: str) -> Optional[float]:
        """The context from which every measured kind of a phase is timed (below it, ratios are held)."""
        firsts = [float(ctx[0]) for (ph, _), (ctx, _) in self.table.items() if ph == phase and len(ctx)]
        return max(firsts) if firsts else None

    def ratio(self, phase: str, kind: str, t: np.ndarray) -> Optional[np.ndarray]:
        if (phase, kind) not in self.table:
            return None
        ctx, ratio = self.table[(phase, kind)]
        x = np.log2(np.maximum(np.asarray(t, dtype=np.float64) + 1.0, 1.0))
        return np.interp(x, np.log2(ctx), ratio)  # clamped to the end ratios outside the measured range


def _dtype(value, default: str) -> str:
    """A dtype name from a results.csv cell (empty / NaN -> default)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    v = str(value).strip()
    return v if v in ELEM else default


def measured_ratios(results: pd.DataFrame, model: ModelShape, cfg: CostConfig,
                    gpu: Optional[str] = None) -> MeasuredRatios:
    """Ratios of measured kernel time to the roofline (efficiency 1) of the same call, per context.

    Rows used: status ok; family dense, stage total (dense_mha in prefill, dense_mla in decode);
    family dsa, stages indexer / topk / sparse_mla. Per (phase, kind, context) the largest batch is
    kept (decode cost per token depends on it) and, over implementations, the smallest ratio (the
    fastest kernel measured: a deployment runs its best kernel, not the PyTorch oracle).
    """
    prof = get_gpu(gpu or cfg.measured_gpu or cfg.gpu)
    out = MeasuredRatios(gpu=prof.name)
    if results is None or len(results) == 0:
        out.notes.append("no measured rows")
        return out
    df = results.copy()
    for col in ("batch", "context", "topk", "query_tokens", "latency_ms"):
        df[col] = pd.to_numeric(df.get(col), errors="coerce")
    df = df[(df["status"].astype(str) == "ok") & (df["latency_ms"] > 0)]
    if "device" in df and (df["device"].astype(str) == "cpu").any():
        out.notes.append("ignored rows timed on the CPU (not GPU timings)")
        df = df[df["device"].astype(str) != "cpu"]
    per: dict[tuple[str, str], dict[int, list[float]]] = {}
    for row in df.to_dict("records"):
        fam, stage, phase = str(row["family"]), str(row["stage"]), str(row["phase"])
        kind = stage_kind(fam, stage, phase)
        if kind is None or stage == "masked_mha":  # masked MHA: DSA's short-prefill form, priced as dense_mha
            continue
        T, B = int(row["context"]), int(row["batch"])
        S = int(row["query_tokens"]) if not pd.isna(row["query_tokens"]) else (T if phase == "prefill" else 1)
        topk = int(row["topk"]) if not pd.isna(row["topk"]) else cfg.topk
        dt = _dtype(row.get("dtype"), "bf16")
        # The benchmarked kernels keep the latent cache in the compute dtype.
        fmt = Formats(topk=topk, decode_tokens=max(1, S), attention_dtype=dt,
                      indexer_dtype=_dtype(row.get("indexer_dtype"), dt), dense_kv_cache=dt, dsa_kv_cache=dt)
        pos = np.arange(T - S, T)  # the S query positions the call processed (a prefill step: the last S)
        one = KernelEfficiency(compute=1.0, memory=1.0)
        model_s = B * float(kernel_seconds(attention_work(model, phase, kind, pos, fmt), prof, one).sum())
        if model_s <= 0:
            continue
        per.setdefault((phase, kind), {}).setdefault(T, []).append((B, row["latency_ms"] / 1e3 / model_s))
    for key, by_ctx in per.items():
        ctx = np.array(sorted(by_ctx), dtype=np.float64)
        vals = []
        for T in sorted(by_ctx):
            bmax = max(b for b, _ in by_ctx[T])
            vals.append(float(min(r for b, r in by_ctx[T] if b == bmax)))
        out.table[key] = (ctx, np.array(vals))
    return out


# --- seconds and USD ----------------------------------------------------------------------------------

def positions(cfg: CostConfig) -> np.ndarray:
    """0, step, 2 step, ... up to and including max_position."""
    pos = np.arange(0, cfg.max_position + 1, cfg.position_step, dtype=np.int64)
    if pos[-1] != cfg.max_position:
        pos = np.append(pos, cfg.max_position)
    return pos


def attention_seconds(model: ModelShape, cfg: CostConfig, phase: str, kind: str, t: np.ndarray,
                      gpu: GpuProfile, measured: Optional[MeasuredRatios] = None) -> tuple[np.ndarray, str]:
    """GPU-seconds per token of one attention kind over all layers (eta = 1), and how it was obtained."""
    w = attention_work(model, phase, kind, t, Formats.of(cfg))
    if cfg.source == "measured" and measured is not None:
        ratio = measured.ratio(phase, kind, t)
        if ratio is not None:
            # The measured efficiency (roofline/measured on the timing GPU) applied to this GPU's roofline.
            one = KernelEfficiency(compute=1.0, memory=1.0)
            return model.layers * kernel_seconds(w, gpu, one) * ratio, "measured"
        return model.layers * kernel_seconds(w, gpu, kernel_efficiency(cfg, phase, kind)), "roofline-fallback"
    return model.layers * kernel_seconds(w, gpu, kernel_efficiency(cfg, phase, kind)), "roofline"


def raw_seconds(model: ModelShape, cfg: CostConfig, phase: str, family: str, t: np.ndarray, gpu: GpuProfile,
                measured: Optional[MeasuredRatios] = None) -> tuple[dict[str, np.ndarray], dict]:
    """Per-component GPU-seconds per token before the deployment efficiencies, and details.

    Details: `mode` (DSA prefill: 'masked_mha' or 'sparse' per position) and `sources` per kind.
    """
    t = np.asarray(t)
    zero = np.zeros(len(t))
    comp = {c: zero.copy() for c in COMPONENTS}
    rest = rest_seconds(model, cfg, phase, gpu)
    comp["rest"] = zero + rest["rest"]
    sources: dict[str, str] = {}
    mode = np.array([""] * len(t), dtype=object)

    def att(kind: str) -> np.ndarray:
        sec, src = attention_seconds(model, cfg, phase, kind, t, gpu, measured)
        sources[kind] = src
        return sec

    if family == "dense":
        kind = dense_form(phase)
        comp[kind] = att(kind)
        mode[:] = "mha" if phase == "prefill" else "absorbed"
    else:
        comp["indexer_proj"] = zero + rest["indexer_proj"]
        comp["indexer"] = att("indexer")
        comp["topk"] = att("topk")
        sparse = att("sparse_mla")
        if phase == "prefill" and cfg.short_prefill == "auto":
            mha = att("dense_mha")
            use_mha = mha < sparse
            comp["dense_mha"] = np.where(use_mha, mha, 0.0)
            comp["sparse_mla"] = np.where(use_mha, 0.0, sparse)
            mode[:] = np.where(use_mha, "masked_mha", "sparse")
        else:
            comp["sparse_mla"] = sparse
            mode[:] = "sparse"
    return comp, {"mode": mode, "sources": sources}


def masked_mha_crossover(model: ModelShape, cfg: CostConfig, gpu: Optional[str] = None,
                         measured: Optional[pd.DataFrame] = None) -> int:
    """The last prefill position (tokens, a multiple of 256) at which DSA's masked MHA mode is cheaper
    than sparse MQA on `gpu` (default cfg.gpu): the default threshold of the deployed DSA
    implementation. From measured kernel timings when `measured` rows (a GPU run of dense MHA and
    sparse MLA prefill) are given, else from the roofline at the configured kernel efficiencies.
    0 when masked MHA never wins."""
    ratios = None
    if measured is not None:
        cfg = cfg.model_copy(update={"source": "measured", "short_prefill": "auto"})
        ratios = measured_ratios(measured, model, cfg)
    else:
        cfg = cfg.model_copy(update={"source": "roofline", "short_prefill": "auto"})
    t = np.arange(0, max(cfg.topk, 1) * 64 + 1, 256)
    _, info = raw_seconds(model, cfg, "prefill", "dsa", t, get_gpu(gpu or cfg.gpu), ratios)
    mha = np.flatnonzero(info["mode"] == "masked_mha")
    return int(t[mha[-1]]) if len(mha) else 0


def usd_per_million(seconds: np.ndarray | float, gpu_hour_usd: float) -> np.ndarray | float:
    return seconds * gpu_hour_usd / 3600.0 * 1e6


# --- comparisons -------------------------------------------------------------------------------------

def curve_crossovers(df: pd.DataFrame, labels: Optional[dict] = None) -> dict[str, Optional[float]]:
    """Crossover position per phase of a cost_curves frame (or of the paper's points)."""
    out = {}
    for phase, g in df.groupby("phase", sort=False):
        fam = g["family"] if "family" in g else g["model"].map(_family_of(labels))
        dense = g[fam == "dense"].sort_values("position_tokens")
        dsa = g[fam == "dsa"].sort_values("position_tokens")
        if dense.empty or dsa.empty:
            continue
        x = np.union1d(dense["position_tokens"], dsa["position_tokens"]).astype(float)
        yd = np.interp(x, dense["position_tokens"], dense["usd_per_million_tokens"])
        ys = np.interp(x, dsa["position_tokens"], dsa["usd_per_million_tokens"])
        out[str(phase)] = crossing_position(x, yd, ys)
    return out


def curve_crossover_texts(df: pd.DataFrame, held_below: Optional[dict] = None,
                          labels: Optional[dict] = None) -> dict[str, dict]:
    """Per phase: the crossover position, the sampled positions it lies between and a sentence saying
    so (dsa_bench.crossover.curve_crossing_text); held_below: phase -> first timed context of measured curves."""
    from dsa_bench.crossover import crossing, curve_crossing_text

    out = {}
    for phase, g in df.groupby("phase", sort=False):
        fam = g["family"] if "family" in g else g["model"].map(_family_of(labels))
        dense = g[fam == "dense"].sort_values("position_tokens")
        dsa = g[fam == "dsa"].sort_values("position_tokens")
        if dense.empty or dsa.empty:
            continue
        x = np.union1d(dense["position_tokens"], dsa["position_tokens"]).astype(float)
        c = crossing(x, np.interp(x, dense["position_tokens"], dense["usd_per_million_tokens"]),
                     np.interp(x, dsa["position_tokens"], dsa["usd_per_million_tokens"]), scale="linear")
        held = (held_below or {}).get(str(phase))
        out[str(phase)] = {"position": c.x if c.status == "crosses" else (0.0 if c.status == "always" else None),
                           "bracket": list(c.bracket) if c.bracket else None, "held_below": held,
                           "text": curve_crossing_text(c, held)}
    return out


def tail_line_crossovers(df: pd.DataFrame, start: int = 32768, labels: Optional[dict] = None) -> dict[str, float]:
    """Where the straight lines fitted to each curve's points at positions >= start cross, per phase.

    Beyond k = 2048 (and beyond the short-prefill switch) both curves are straight, so this is the
    crossover the long-context parts of two curves imply, free of the shape near 0. Used on the
    paper's points, whose V3.2-Exp curves are not straight between 0 and 32K.
    """
    out = {}
    for phase, g in df.groupby("phase", sort=False):
        fam = g["family"] if "family" in g else g["model"].map(_family_of(labels))
        lines = {}
        for f in FAMILIES:
            c = g[(fam == f) & (g["position_tokens"] >= start)]
            if len(c) >= 2:
                lines[f] = np.polyfit(c["position_tokens"].astype(float), c["usd_per_million_tokens"].astype(float), 1)
        if len(lines) == 2 and lines["dense"][0] != lines["dsa"][0]:
            (m1, b1), (m2, b2) = lines["dense"], lines["dsa"]
            out[str(phase)] = float((b2 - b1) / (m1 - m2))
    return out


def _family_of(labels: Optional[dict]):
    labels = labels or MODEL_LABELS
    inv = {v: k for k, v in labels.items()}
    return lambda name: inv.get(name, "")


def compare_to_paper(df: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The model's value at each paper point: phase, model, position, paper, model, rel_err (model/paper - 1)."""
    rows = []
    for p in paper.to_dict("records"):
        g = df[(df["phase"] == p["phase"]) & (df["model"] == p["model"])].sort_values("position_tokens")
        if g.empty:
            continue
        v = float(np.interp(p["position_tokens"], g["position_tokens"], g["usd_per_million_tokens"]))
        rows.append({"phase": p["phase"], "model": p["model"], "position_tokens": int(p["position_tokens"]),
                     "paper": float(p["usd_per_million_tokens"]), "model_usd": v,
                     "rel_err": v / float(p["usd_per_million_tokens"]) - 1.0})
    return pd.DataFrame(rows)


__all__ = [
    "ATTENTION", "COMPONENTS", "COMPONENT_COLUMNS", "CURVE_COLUMNS", "Formats", "MeasuredRatios", "Work",
    "attention_work", "compare_to_paper", "crossing_position", "curve_crossover_texts", "curve_crossovers", "masked_mha_crossover",
    "kernel_seconds", "measured_ratios", "positions", "raw_seconds", "rest_seconds", "tail_line_crossovers",
    "usd_per_million",
]
