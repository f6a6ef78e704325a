#!/usr/bin/env bash
# Reproduces the bundled demo weights: demo-tiny AK-Net and the same-size TSM baseline, trained the
# same way in two stages (30 epochs from scratch, then 30 more at a lower peak LR on fresh clips).
# About 1 h 20 min on 2 CPU cores (the two models train side by side, one thread each).
#   bash bench/train_demo.sh [OUT_DIR]     (default: aknet_edge/weights)
set -euo pipefail
PY=${PYTHON:-python}
OUT=${1:-aknet_edge/weights}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for arch in aknet tsm; do
  $PY -m aknet_edge.train --preset demo-tiny --arch "$arch" --epochs 30 --lr 2e-3 --seed 0 --threads 1 \
      --out "$WORK/$arch-stage1.safetensors" &
done
wait
for arch in aknet tsm; do
  $PY -m aknet_edge.train --init "$WORK/$arch-stage1.safetensors" --epochs 30 --lr 1e-3 --seed 1 --threads 1 \
      --out "$WORK/$arch-stage2.safetensors" &
done
wait
mkdir -p "$OUT"
cp "$WORK/aknet-stage2.safetensors" "$OUT/demo-tiny.safetensors"
cp "$WORK/tsm-stage2.safetensors" "$OUT/demo-tiny-tsm.safetensors"
$PY -m aknet_edge.evaluate "$OUT/demo-tiny.safetensors" "$OUT/demo-tiny-tsm.safetensors"
