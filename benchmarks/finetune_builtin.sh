#!/usr/bin/env bash
# Fine-tuning with --init-from and --init-lr-mult: the figures of docs/recipe.md's "Fine-tuning",
# written to benchmarks/results/finetune-builtin/ (each run's config.yaml, metrics.csv and results.json).
#
#   bash benchmarks/finetune_builtin.sh     # its five trainings took 568 s on a 2-core CPU (their results.json)
#
# It reuses runs/cifar-bn/final.pt when it exists (the `bn` model of cifar10-mini that
# benchmarks/detection_builtin.sh also starts from, 8 minutes to train) and trains it otherwise;
# the four six-epoch runs on the built-in data are run again. Run it on a quiet machine: the
# throughput in the table is wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
GOOGLENET=${GOOGLENET:-.venv/bin/googlenet}
OUT=benchmarks/results/finetune-builtin
mkdir -p "$OUT" runs

GOOGLENET="$GOOGLENET" bash benchmarks/initial_classifier.sh
cp runs/cifar-bn/results.json "$OUT/initial-classifier.json"

finetune() {  # name, then train's extra flags
  local name=$1
  shift
  rm -rf "runs/ft-$name"
  "$GOOGLENET" train --variant bn --epochs 6 --seed 0 --no-progress -o "runs/ft-$name" "$@"
  mkdir -p "$OUT/$name"
  cp "runs/ft-$name/config.yaml" "runs/ft-$name/metrics.csv" "runs/ft-$name/results.json" "$OUT/$name/"
}
finetune scratch
finetune 1 --init-from runs/cifar-bn/final.pt --init-lr-mult 1
finetune 0.1 --init-from runs/cifar-bn/final.pt --init-lr-mult 0.1
finetune 0 --init-from runs/cifar-bn/final.pt --init-lr-mult 0
