#!/usr/bin/env bash
# On the H200 device (run from the repo root there; see tools/device_carry.sh for what travels).
#   tools/device_run.sh stash FILE...   copy carried files to /tmp/carry (kept while the machine is warm)
#   tools/device_run.sh setup           install wheels and the project, unpack the peers, check them
#   tools/device_run.sh all             setup, then the checks and runs below, everything under $OUT
# Needs DSA_BENCH_GIT_COMMIT (the copy's .git is stale).
set -uo pipefail
cmd=${1:-all}; shift || true
mkdir -p /tmp/carry
if [ "$cmd" = stash ]; then cp -v "$@" /tmp/carry/; exit 0; fi
: "${OUT:=/tmp/out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 DG_JIT_CACHE_DIR=/tmp/dg-cache
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
cp -n .carry/peers/* /tmp/carry/ 2>/dev/null
python3 -m dsa_bench peers unpack /tmp/carry/peers.tar.xz.part* --out /tmp/peers && export DSA_BENCH_VLLM_DIR=/tmp/peers/.peers/vllm
python3 -m dsa_bench peers --load 2>&1 | tee "$OUT/peers.txt"
[ "$cmd" = setup ] && exit 0
# The Gluon kernels on the GPU, against the references (tests/kernels runs real bf16 dots here)
DSA_BENCH_MLA_GLUON=1 DSA_BENCH_MHA_GLUON=1 DSA_BENCH_INDEXER_GLUON=1 TRITON_INTERPRET=0 python3 -m pytest -q tests/kernels/test_gluon_kernels.py \
    tests/kernels/test_sparse_mla.py tests/kernels/test_dense_mla.py tests/kernels/test_dense_mha.py tests/kernels/test_indexer.py 2>&1 | tee "$OUT/pytest_gluon_h200.log" | tail -3
DSA_BENCH_MLA_GLUON=1 DSA_BENCH_MHA_GLUON=1 DSA_BENCH_INDEXER_GLUON=1 python3 -m dsa_bench check-kernels --out "$OUT" | tail -2
for s in production-h200-step production-h200-decode; do
    python3 -m dsa_bench run "scenarios/$s.yaml" --out "$OUT/results" --no-report 2>&1 | tail -15
done
