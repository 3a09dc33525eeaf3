#!/usr/bin/env bash
# On the CPU machine, before a GPU session: what the H200 device needs that it cannot download.
#   .carry/whl/    pydantic's wheels for the device's Python 3.12 (the image lacks pydantic)
#   .carry/peers/  vLLM 0.26.0's production kernels (FlashMLA, DeepGEMM, vLLM top-k, FA3), packed in
#                  parts of at most 40 MiB: a device call carries 64 MiB in all, the repo included
# .carry/ is git-ignored (third-party binaries are never committed). Then, on the device, in two calls
# within its 30 s warm window: tools/device_run.sh stash peers/part00 ; tools/device_run.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .carry/whl .carry/peers /tmp/dsa-bench-wheel
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps "${plat[@]}" -d .carry/whl pydantic==2.13.4 pydantic-core==2.46.4 \
    annotated-types==0.7.0 typing-inspection==0.4.2 "typing-extensions>=4.16"
[ -f /tmp/dsa-bench-wheel/vllm-0.26.0-cp38-abi3-manylinux_2_28_x86_64.whl ] ||
    python3 -m pip download -q --no-deps "${plat[@]}" -d /tmp/dsa-bench-wheel vllm==0.26.0
rm -rf /tmp/dsa-bench-peers && mkdir -p /tmp/dsa-bench-peers
python3 -m dsa_bench peers extract /tmp/dsa-bench-wheel/vllm-0.26.0-cp38-abi3-manylinux_2_28_x86_64.whl \
    /tmp/dsa-bench-peers/.peers --python 3.12
python3 -m dsa_bench peers pack /tmp/dsa-bench-peers/.peers .carry/peers/peers.tar.xz --part-mb 40
ls -la .carry/whl .carry/peers
