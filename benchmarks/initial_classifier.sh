#!/usr/bin/env bash
# The initial classifier that benchmarks/detection_builtin.sh and benchmarks/finetune_builtin.sh start
# from: the `bn` variant trained on cifar10-mini into runs/cifar-bn (docs/detection.md's command,
# 8 minutes on a 2-core CPU). Kept when runs/cifar-bn/final.pt exists.
set -euo pipefail
cd "$(dirname "$0")/.."
GOOGLENET=${GOOGLENET:-.venv/bin/googlenet}
mkdir -p runs

if [[ ! -f runs/cifar-bn/final.pt ]]; then
  "$GOOGLENET" train --data-path ../shared/data/cifar10-mini --variant bn --input-size 64 --epochs 12 \
    --lr-scheduler cosine --lr-warmup-epochs 1 --clip-grad-norm 2 --output-dir runs/cifar-bn --seed 0 -j 0
fi
