#!/bin/bash
# The performance section's measurements on one GPU or TPU host, in one go:
#
#   bash docs/bench/accelerator.sh OUTDIR
#
# writes OUTDIR/{steps_f32,steps_bf16,seeds,full}.json and prints each table.
# Sized to finish in about 5 minutes on one H100/H200 (an estimate: no GPU
# has run it yet); it compiles every shape once, with the persistent cache
# off so that compile times are honest.
set -euo pipefail
out=${1:?usage: bash docs/bench/accelerator.sh OUTDIR}
mkdir -p "$out"
b() { python -m experiments.benchmark --compilation_cache= "$@"; }
# Step throughput, float32: both models, batch 64/128/512, train/NAD/NBA.
b --models=wrn-16-1,preact-resnet18 --batches=64,128,512 --steps=20 \
  --epochs=3 --out="$out/steps_f32.json"
# The target cell: NAD at batch 512 with bf16 compute.
b --models=wrn-16-1,preact-resnet18 --batches=512 --steps=20 --epochs=3 \
  --compute_dtype=bfloat16 --out="$out/steps_bf16.json"
# Several seeds in one vmapped program.
b --models=wrn-16-1 --batches=512 --seeds=1,4 --steps=20 --epochs=3 \
  --out="$out/seeds.json"
# Whole NAD and NBA defenses (teacher, then defense) on 2,500 images.
b --models=wrn-16-1 --batches=64 --kinds=train --steps=2 --full_runs \
  --out="$out/full.json"
