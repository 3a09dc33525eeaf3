"""The operator schemas dsa-bench calls the production kernels with, and the check that a loaded
library still has them.

A compiled op is called positionally; a release that adds, drops or reorders an argument would be
called wrongly without a word. So before the first call each op's registered schema is compared with
the one written here (taken from the vLLM 0.26.0 build these callers were written against), by
argument names and types, and any difference is reported instead of calling it.
"""
from __future__ import annotations

from typing import Optional

# namespace -> op -> the schema string as the library registers it (whitespace is not significant).
EXPECTED: dict[str, dict[str, str]] = {
    "_flashmla_C": {
        "sparse_prefill_fwd": "sparse_prefill_fwd(Tensor q, Tensor kv, Tensor indices, float sm_scale, int d_v, "
                              "Tensor? attn_sink, Tensor? topk_length, Tensor(a!)? out_) -> Tensor[]",
        "dense_decode_fwd": "dense_decode_fwd(Tensor q, Tensor kcache, int head_size_v, Tensor seqlens_k, "
                            "Tensor block_table, float softmax_scale, bool is_causal, "
                            "Tensor(a)? tile_scheduler_metadata, Tensor(b)? num_splits, Tensor(c!)? out_) "
                            "-> (Tensor(c!), Tensor, Tensor(a)?, Tensor(b)?)",
        "sparse_decode_fwd": "sparse_decode_fwd(Tensor q, Tensor kv, Tensor indices, Tensor? topk_length, "
                             "Tensor? attn_sink, Tensor(a)? tile_scheduler_metadata, Tensor(b)? num_splits, "
                             "Tensor? extra_kv, Tensor? extra_indices, Tensor? extra_topk_length, int d_v, "
                             "float sm_scale, Tensor(c!)? out_) -> (Tensor(c!), Tensor, Tensor(a)?, Tensor(b)?)",
    },
    "_C": {
        "top_k_per_row_prefill": "top_k_per_row_prefill(Tensor logits, Tensor rowStarts, Tensor rowEnds, "
                                 "Tensor! indices, int numRows, int stride0, int stride1, int topK) -> ()",
        "top_k_per_row_decode": "top_k_per_row_decode(Tensor logits, int next_n, Tensor seq_lens, Tensor! indices, "
                                "int numRows, int stride0, int stride1, int topK) -> ()",
        "persistent_topk": "persistent_topk(Tensor logits, Tensor lengths, Tensor! output, Tensor workspace, "
                           "int k, int max_seq_len) -> ()",
        "cooperative_topk": "cooperative_topk(Tensor logits, Tensor lengths, Tensor! output, Tensor workspace, "
                            "int k, int max_seq_len) -> ()",
    },
    "_C_cache_ops": {
        "concat_and_cache_mla": "concat_and_cache_mla(Tensor kv_c, Tensor k_pe, Tensor! kv_cache, "
                                "Tensor slot_mapping, str kv_cache_dtype, Tensor scale) -> ()",
    },
    "_vllm_fa3_C": {
        "fwd": "fwd(Tensor! q, Tensor k, Tensor v, Tensor? k_new, Tensor? v_new, Tensor? q_v, Tensor!? out, "
               "Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, Tensor? cu_seqlens_k_new, Tensor? seqused_q, "
               "Tensor? seqused_k, int? max_seqlen_q, int? max_seqlen_k, Tensor? page_table, "
               "Tensor? kv_batch_idx, Tensor? leftpad_k, Tensor? rotary_cos, Tensor? rotary_sin, "
               "Tensor? seqlens_rotary, Tensor? q_descale, Tensor? k_descale, Tensor? v_descale, "
               "float softmax_scale, bool is_causal, int window_size_left, int window_size_right, "
               "float softcap, bool is_rotary_interleaved, Tensor? scheduler_metadata, int num_splits, "
               "bool? pack_gqa, int sm_margin, Tensor? s_aux, int cp_world_size, int cp_rank, "
               "Tensor? cp_tot_seqused_k) -> Tensor[]",
    },
}


def signature(schema) -> tuple[tuple[tuple[str, str], ...], int]:
    """((argument name, type), ...) and the number of returns of a torch FunctionSchema; alias
    annotations (a!) are left out: they say how an op writes, not how it is called."""
    args = tuple((a.name, str(a.type)) for a in schema.arguments)
    return args, len(schema.returns)


def parse(text: str):
    import torch

    return torch._C.parse_schema(" ".join(text.split()))


def mismatch(namespace: str, op: str, registered) -> Optional[str]:
    """None if `registered` (a FunctionSchema, or None when the op is missing) matches the expected
    schema of namespace::op; otherwise what differs, in one sentence."""
    want = EXPECTED[namespace][op]
    if registered is None:
        return f"torch.ops.{namespace}.{op} is not registered by the library"
    got_args, got_ret = signature(registered)
    want_args, want_ret = signature(parse(want))
    if (got_args, got_ret) == (want_args, want_ret):
        return None
    if [n for n, _ in got_args] != [n for n, _ in want_args]:
        diff = f"arguments ({', '.join(n for n, _ in got_args)}) where dsa-bench calls ({', '.join(n for n, _ in want_args)})"
    elif got_args != want_args:
        bad = next(f"{n}: {t} (expected {tw})" for (n, t), (_, tw) in zip(got_args, want_args) if t != tw)
        diff = f"argument type changed: {bad}"
    else:
        diff = f"{got_ret} returns (expected {want_ret})"
    return f"torch.ops.{namespace}.{op} has a different schema: {diff}"


def registered_schema(namespace: str, op: str):
    """The FunctionSchema of torch.ops.namespace.op's default overload, or None if it is not registered."""
    import torch

    try:
        return getattr(getattr(torch.ops, namespace), op).default._schema
    except (AttributeError, RuntimeError):
        return None


def check_ops(namespace: str, ops: tuple[str, ...]) -> Optional[str]:
    """The first schema problem among namespace's `ops`, or None when all match."""
    for op in ops:
        problem = mismatch(namespace, op, registered_schema(namespace, op))
        if problem:
            return problem
    return None
