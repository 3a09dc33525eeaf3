"""Indexer KL loss: chunked (kernels.indexer_loss, torch and Triton target) vs the plain reference.

Tolerances: float32 inputs give exact products on both sides (the Triton dots run in fp32 "ieee" in the
interpreter); only the summation order differs (heads chunked, online vs one-shot softmax, exp2 vs exp), a
few ulps over sums of <= a few hundred terms -> 1e-5 relative to the reference's norm. bfloat16 attention
inputs (Triton target only): on a GPU the tensor-core accumulation order differs -> 1e-2, as for the
other kernels' bf16 tests. Gradients are checked against finite differences in float64 (gradcheck).
"""
from __future__ import annotations

import math

import pytest
import torch

from kernels.indexer_loss import attention_target, indexer_kl_loss
from kernels.reference.indexer_loss import attention_target as ref_target
from kernels.reference.indexer_loss import indexer_kl_loss as ref_loss

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def _inputs(B, S, H, D, T, seed, dtype=torch.float32, q_start=None, mask_invisible=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, H, D, generator=g).to(dtype).to(DEVICE)
    k = torch.randn(B, T, D, generator=g).to(dtype).to(DEVICE)
    scores = (2.0 * torch.randn(B, S, T, generator=g)).to(DEVICE)
    if mask_invisible:  # as the indexer writes them
        qs = T - S if q_start is None else q_start
        rows = qs + torch.arange(S, device=DEVICE)
        scores = scores.masked_fill(torch.arange(T, device=DEVICE)[None, :] > rows[:, None], float("-inf"))
    return q, k, scores


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (several times slower on a loaded
    2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# (B, S, H, D, T, q_start, topk, row_chunk, head_chunk): sizes that are multiples of no chunk or block.
CASES = [
    (2, 13, 5, 24, 150, None, None, 4, 2),   # dense warm-up, default q_start = T - S
    (2, 13, 5, 24, 150, None, 7, 5, 3),      # sparse stage
    (3, 11, 3, 40, 77, 0, 9, 4, 2),          # S < T with q_start = 0: early rows see fewer than k tokens
    (2, 9, 4, 24, 61, 30, 500, 2, 3),        # k larger than the whole context = dense
    (1, 6, 3, 16, 40, 50, None, 4, 1),       # q_start + S > T: every token visible
]


@pytest.mark.parametrize("impl", ["torch", "triton"])
@pytest.mark.parametrize("B,S,H,D,T,q_start,topk,rc,hc", CASES)
def test_loss_and_grad_match_reference(impl, B, S, H, D, T, q_start, topk, rc, hc):
    q, k, scores = _inputs(B, S, H, D, T, seed=B * 1000 + S * 10 + T, q_start=q_start,
                           mask_invisible=(S % 2 == 1))
    a = scores.clone().requires_grad_()
    b = scores.clone().requires_grad_()
    got = indexer_kl_loss(a, q, k, sm_scale=D ** -0.5, q_start=q_start, topk=topk, impl=impl,
                          row_chunk=rc, head_chunk=hc)
    want = ref_loss(b, q, k, sm_scale=D ** -0.5, q_start=q_start, topk=topk)
    got.backward()
    want.backward()
    assert want.item() > 0.01  # a real loss, not a degenerate case
    assert abs(got.item() - want.item()) <= TOL[torch.float32] * abs(want.item())
    assert torch.isfinite(a.grad).all()
    assert _rel(a.grad, b.grad) <= TOL[torch.float32]
    if topk is not None and topk >= T:  # k past the context: exactly the dense loss
        dense = ref_loss(scores, q, k, sm_scale=D ** -0.5, q_start=q_start)
        assert abs(want.item() - dense.item()) <= 1e-6 * dense.item()


@pytest.mark.parametrize("impl", ["torch", "triton"])
@pytest.mark.parametrize("B,S,H,D,T,q_start,dtype", [
    (2, 7, 5, 24, 150, None, torch.float32),
    (1, 3, 70, 72, 70, 20, torch.float32),     # two head blocks and two head-dim blocks in the kernel
    (2, 5, 6, 40, 90, 3, torch.bfloat16),
])
def test_target_matches_reference(impl, B, S, H, D, T, q_start, dtype):
    if impl == "torch" and dtype != torch.float32:
        pytest.skip("the bf16 case exercises the Triton loads")
    q, k, _ = _inputs(B, S, H, D, T, seed=H + T, dtype=dtype)
    got = attention_target(q, k, sm_scale=0.2, q_start=q_start, impl=impl, row_chunk=3, head_chunk=4)
    want = ref_target(q, k, sm_scale=0.2, q_start=q_start)
    qs = T - S if q_start is None else q_start
    invisible = torch.arange(T, device=DEVICE)[None, :] > (qs + torch.arange(S, device=DEVICE))[:, None]
    assert torch.all(got[:, invisible] == 0)
    torch.testing.assert_close(got.sum(-1), torch.ones(B, S, device=DEVICE), rtol=0, atol=1e-5)
    assert _rel(got, want) <= TOL[dtype]


@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("fn", ["chunked", "reference"])
def test_gradcheck_float64(fn, topk):
    q, k, scores = _inputs(2, 4, 3, 8, 9, seed=5)
    q, k = q.double(), k.double()
    x = scores.double().requires_grad_()
    if fn == "chunked":
        loss = lambda s: indexer_kl_loss(s, q, k, sm_scale=0.5, q_start=1, topk=topk,  # noqa: E731
                                         impl="torch", row_chunk=3, head_chunk=2)
    else:
        loss = lambda s: ref_loss(s, q, k, sm_scale=0.5, q_start=1, topk=topk)  # noqa: E731
    # Random scores are far (>> eps) from ties, so the top-k set is constant under the perturbation.
    assert torch.autograd.gradcheck(loss, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)


def _one_row(x1: float, heads=((1.0,),)):
    """B=S=1, T=2, D=1, sm_scale 1: head h's logits are a_h * [0, x1]."""
    q = torch.tensor(heads, device=DEVICE).view(1, 1, len(heads), 1)
    k = torch.tensor([0.0, x1], device=DEVICE).view(1, 2, 1)
    return q, k


@pytest.mark.parametrize("impl", ["torch", "triton", "reference"])
def test_hand_computed_row(impl):
    fn = ref_loss if impl == "reference" else (lambda *a, **kw: indexer_kl_loss(*a, impl=impl, **kw))
    q, k = _one_row(math.log(3.0))  # p = softmax([0, ln 3]) = [1/4, 3/4]
    scores = torch.zeros(1, 1, 2, device=DEVICE, requires_grad=True)  # softmax(I) = [1/2, 1/2]
    loss = fn(scores, q, k, sm_scale=1.0)
    loss.backward()
    want = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    torch.testing.assert_close(scores.grad.view(2), torch.tensor([0.25, -0.25], device=DEVICE))
    # Sparse stage, k = 1: the set is {token 0}; both distributions renormalise to [1] there.
    loss1 = fn(torch.tensor([[[1.0, 0.0]]], device=DEVICE), q, k, sm_scale=1.0, topk=1)
    assert loss1.item() == pytest.approx(0.0, abs=1e-7)
    # Two heads with mirrored preferences: their sum, L1-normalised, is uniform, as is softmax([0, 0]).
    q2, k2 = _one_row(math.log(3.0), heads=((1.0,), (-1.0,)))
    assert fn(torch.zeros(1, 1, 2, device=DEVICE), q2, k2, sm_scale=1.0).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("topk", [None, 6])
def test_zero_when_scores_are_log_target(topk):
    q, k, _ = _inputs(2, 9, 4, 16, 40, seed=11)
    p = ref_target(q, k, sm_scale=0.25, q_start=5)
    scores = torch.log(p).masked_fill(p == 0, float("-inf")) + 3.0  # softmax ignores the shift
    for fn in (ref_loss, indexer_kl_loss):
        assert abs(fn(scores, q, k, sm_scale=0.25, q_start=5, topk=topk).item()) < 1e-6


def test_gradients_reach_only_index_scores():
    q, k, scores = _inputs(2, 6, 3, 16, 30, seed=3)
    q.requires_grad_()
    k.requires_grad_()
    scale = torch.tensor(1.0, device=DEVICE, requires_grad=True)  # stands in for the indexer's parameters
    for fn in (indexer_kl_loss, ref_loss):
        fn(scores * scale, q, k, sm_scale=0.25, topk=4).backward()
    assert q.grad is None and k.grad is None
    assert scale.grad is not None and scale.grad.abs().item() > 0


def test_argument_errors():
    q, k, scores = _inputs(1, 3, 2, 8, 10, seed=1)
    for fn in (indexer_kl_loss, ref_loss):
        with pytest.raises(ValueError, match="^index_scores: dimension 2 must be 10"):
            fn(scores[..., :9], q, k, sm_scale=1.0)
        with pytest.raises(ValueError, match="^attn_k: dimension 2 must be 8"):
            fn(scores, q, k[..., :4], sm_scale=1.0)
        with pytest.raises(ValueError, match="^topk: expected None or a positive int"):
            fn(scores, q, k, sm_scale=1.0, topk=0)
        with pytest.raises(ValueError, match="^sm_scale: expected a finite number"):
            fn(scores, q, k, sm_scale=float("nan"))
        with pytest.raises(ValueError, match="^q_start: must be >= 0"):
            fn(scores, q, k, sm_scale=1.0, q_start=-1)
    with pytest.raises(ValueError, match="^impl: expected"):
        indexer_kl_loss(scores, q, k, sm_scale=1.0, impl="cuda")
    with pytest.raises(ValueError, match="^row_chunk: expected None or a positive int"):
        indexer_kl_loss(scores, q, k, sm_scale=1.0, row_chunk=0)
