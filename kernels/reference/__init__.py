"""Plain PyTorch references, one per Triton kernel, with identical signatures.

They compute in float32 whatever the input dtype and process query rows in chunks so that memory
stays bounded at long contexts (they are used to check the kernels at real shapes on the GPU).
"""
from kernels.reference.indexer import lightning_indexer
from kernels.reference.topk import topk_indices
from kernels.reference.sparse_mla import sparse_mla
from kernels.reference.dense_mla import dense_mla
from kernels.reference.dense_mha import dense_mha
from kernels.reference.masked_mha import masked_mha
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
