"""The memory layouts the production kernels read, built from dsa-bench's inputs (pure PyTorch, so
they are tested on the CPU), and the inverse that gives the reference what a kernel really attends over.

- Paged caches: FlashMLA and DeepGEMM's decode kernels read the cache in pages of 64 tokens through
  a block table; each sequence here owns ceil(T / 64) consecutive pages.
- FP8 latent cache (DeepSeek-V3.2's serving format, 656 bytes a token): 512 float8_e4m3 values of
  the latent's NoPE part, 4 float32 scales (one per 128 values), 64 bfloat16 RoPE values.
- FP8 indexer key cache (DeepGEMM's paged MQA logits): per page, 64 x D float8_e4m3 key values,
  then the page's 64 float32 key scales.
"""
from __future__ import annotations

import torch

PAGE = 64
NOPE, ROPE, GROUP = 512, 64, 128
FP8_TOKEN_BYTES = NOPE + 4 * (NOPE // GROUP) + 2 * ROPE  # 656
E4M3_MAX = 448.0


def pages_per_sequence(T: int) -> int:
    return -(-T // PAGE)


def block_table(B: int, T: int, device) -> torch.Tensor:
    """int32 [B, pages]: sequence b owns pages b * pages .. (b + 1) * pages - 1."""
    n = pages_per_sequence(T)
    return torch.arange(B * n, dtype=torch.int32, device=device).view(B, n)


def paged(kv: torch.Tensor) -> torch.Tensor:
    """[B, T, D] -> [B * pages, 64, 1, D] (a view when T is a multiple of 64, else a zero-padded copy)."""
    B, T, D = kv.shape
    n = pages_per_sequence(T)
    if T == n * PAGE and kv.is_contiguous():
        return kv.view(B * n, PAGE, 1, D)
    out = kv.new_zeros(B, n * PAGE, D)
    out[:, :T] = kv
    return out.view(B * n, PAGE, 1, D)


def slot_mapping(B: int, T: int, device) -> torch.Tensor:
    """int64 [B * T]: the cache slot (page * 64 + offset) of every token, as a cache writer takes it."""
    n = pages_per_sequence(T)
    return (torch.arange(B, device=device)[:, None] * (n * PAGE) + torch.arange(T, device=device)).reshape(-1)


def to_cache_indices(indices: torch.Tensor, T: int) -> torch.Tensor:
    """[B, S, K] positions within each sequence (-1 = none) -> positions in the whole paged cache."""
    B = indices.shape[0]
    base = (torch.arange(B, device=indices.device, dtype=torch.int32) * (pages_per_sequence(T) * PAGE)).view(B, 1, 1)
    return torch.where(indices >= 0, indices + base, indices).to(torch.int32)


def quantize_latents_fp8(kv: torch.Tensor) -> torch.Tensor:
    """[N, 576] latents -> [N, 656] uint8 in the FP8 serving layout (scale = amax / 448 per 128 values).
    The production runs write this with vLLM's own cache op; this twin lets the layout be tested here."""
    N = kv.shape[0]
    nope = kv[:, :NOPE].float().view(N, NOPE // GROUP, GROUP)
    scale = (nope.abs().amax(-1) / E4M3_MAX).clamp_min(1e-10)  # [N, 4]
    values = (nope / scale[..., None]).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).view(N, NOPE)
    rope = kv[:, NOPE:NOPE + ROPE].to(torch.bfloat16).contiguous()
    return torch.cat([values.view(torch.uint8), scale.contiguous().view(torch.uint8).view(N, -1),
                      rope.view(torch.uint8).view(N, -1)], dim=1)


def dequantize_latents_fp8(cache: torch.Tensor) -> torch.Tensor:
    """[..., 656] uint8 -> [..., 576] float32: the latents an FP8-cache kernel attends over."""
    lead = cache.shape[:-1]
    flat = cache.reshape(-1, FP8_TOKEN_BYTES).contiguous()
    N = flat.shape[0]
    values = flat[:, :NOPE].view(torch.float8_e4m3fn).float().view(N, NOPE // GROUP, GROUP)
    scale = flat[:, NOPE:NOPE + 16].contiguous().view(torch.float32)  # [N, 4]
    rope = flat[:, NOPE + 16:].contiguous().view(torch.bfloat16).float()  # [N, 64]
    return torch.cat([(values * scale[..., None]).view(N, NOPE), rope], dim=1).view(*lead, NOPE + ROPE)


def paged_index_keys(k8: torch.Tensor, k_scale: torch.Tensor) -> torch.Tensor:
    """fp8 keys [B, T, D] and fp32 scales [B, T] -> [B * pages, 64, 1, D + 4] uint8, each page holding
    its 64 x D key bytes and then its 64 fp32 scales (DeepGEMM's paged MQA logits layout)."""
    B, T, D = k8.shape
    n = pages_per_sequence(T)
    vals = torch.zeros(B, n * PAGE, D, dtype=torch.uint8, device=k8.device)
    vals[:, :T] = k8.view(torch.uint8)
    scales = torch.zeros(B, n * PAGE, dtype=torch.float32, device=k8.device)
    scales[:, :T] = k_scale
    page = torch.cat([vals.view(B * n, PAGE * D), scales.view(B * n, PAGE).view(torch.uint8)], dim=1)
    return page.view(B * n, PAGE, 1, D + 4)


def unpage_index_keys(cache: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of paged_index_keys for B sequences of T tokens: (k8 [B, T, D], k_scale [B, T])."""
    P, page, _, Dp = cache.shape
    D = Dp - 4
    n = pages_per_sequence(T)
    B = P // n
    flat = cache.reshape(P, page * Dp)
    vals = flat[:, :page * D].contiguous().view(B, n * page, D)[:, :T].view(torch.float8_e4m3fn)
    scales = flat[:, page * D:].contiguous().view(torch.float32).view(B, n * page)[:, :T]
    return vals, scales
