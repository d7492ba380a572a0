#!/usr/bin/env bash
# SiT-XL/2 at batch 256 (bf16) on the local accelerator(s): train-step time, MFU against the bf16 datasheet peak,
# sampling images/s and memory; XLA attention, then cuDNN's fused attention on NVIDIA GPUs. About 4 minutes on
# one H100/H200 (most of it compiling). Extra arguments go to both runs, e.g. --param_sharding=fsdp.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m benchmarks.accelerator --preset=XL/2 --batch=256 --steps=10 --attention_impl=xla "$@"
if python -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')"; then
  python -m benchmarks.accelerator --preset=XL/2 --batch=256 --steps=10 --attention_impl=cudnn "$@"
fi
