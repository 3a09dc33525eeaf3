"""The production DSA kernels, timed as peers of this repository's: FlashMLA (sparse prefill, dense
and FP8-cache sparse decode), DeepGEMM (the FP8 lightning indexer), vLLM's DSA top-k, and
FlashAttention-3 (dense MHA-form prefill), as vLLM ships them for Hopper.

`libraries` finds and loads them (no vLLM import), `schemas` checks the ops' signatures before a
call, `layouts` builds the paged and FP8 caches they read, `calls` adapts them to dsa-bench's kernel
API, `extract` takes the needed files out of a vLLM wheel. No third-party code lives here.
"""
