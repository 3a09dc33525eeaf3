"""Triton implementations of dense MLA and DeepSeek Sparse Attention (DSA).

Every public function here has a plain PyTorch twin with the same signature in `kernels.reference`;
tests compare the two. Shapes: B batch, S query tokens, T context tokens, H heads. Query i sits at
absolute position q_start + i (default T - S) and sees tokens s <= q_start + i.
"""
from kernels.indexer import lightning_indexer
from kernels.topk import topk_indices
from kernels.sparse_mla import sparse_mla
from kernels.dense_mla import dense_mla
from kernels.dense_mha import dense_mha
from kernels.masked_mha import masked_mha
from kernels.dsa import make_dsa_attention

dsa_attention = make_dsa_attention(lightning_indexer, topk_indices, sparse_mla)

__all__ = [
    "lightning_indexer",
    "topk_indices",
    "sparse_mla",
    "dense_mla",
    "dense_mha",
    "masked_mha",
    "dsa_attention",
]
