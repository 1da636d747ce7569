#!/usr/bin/env bash
# Section 8 on the built-in scenes, end to end: the figures of docs/detection.md's
# "Figures on the built-in scenes", written to benchmarks/results/detection-builtin/.
#
#   bash benchmarks/detection_builtin.sh                 # about 40 minutes on a 2-core CPU
#   SIX_MEMBERS=1 bash benchmarks/detection_builtin.sh   # and section 8's six members (75 minutes)
#
# It reuses runs/cifar-bn/final.pt when it exists (the initial classifier, 8 minutes to train)
# and trains it otherwise; every other step is run again. Run it on a quiet machine: the
# seconds per image in the tables are wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
GOOGLENET=${GOOGLENET:-.venv/bin/googlenet}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=benchmarks/results/detection-builtin
mkdir -p "$OUT" runs

GOOGLENET="$GOOGLENET" bash benchmarks/initial_classifier.sh
cp runs/cifar-bn/results.json "$OUT/initial-classifier.json"

"$GOOGLENET" detect multibox --init-from runs/cifar-bn/final.pt --input-size 128 --epochs 15 \
  --output runs/multibox.pt --json > "$OUT/multibox.json"
"$GOOGLENET" detect proposals --annotations builtin --settings fast fast-paper quality quality-paper \
  --multibox runs/multibox.pt --json > "$OUT/proposals.json"

rm -rf runs/det-builtin
"$GOOGLENET" detect train --init-from runs/cifar-bn/final.pt --lr 0.01 --epochs 3 \
  --positives-per-image 4 --ensemble 3 --output-dir runs/det-builtin --seed 0
cp runs/det-builtin/detection.json "$OUT/detection-train.json"

predict() {  # name, then predict's flags
  local name=$1
  shift
  "$GOOGLENET" detect predict --annotations builtin --output "$OUT/dets-$name.csv" --json "$@" \
    | "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); d.pop("detections"); json.dump(d, sys.stdout, indent=1)' \
    > "$OUT/predict-$name.json"  # the timings, without the detections (in the CSV)
  "$GOOGLENET" detect evaluate --annotations builtin --detections "$OUT/dets-$name.csv" --json \
    > "$OUT/eval-$name.json"
}
m0=runs/det-builtin/member-0/final.pt
predict ensemble-multibox --checkpoint runs/det-builtin/member-*/final.pt --multibox runs/multibox.pt
predict m0-warped --checkpoint "$m0"
predict m0-shared --checkpoint "$m0" --shared-features
"$GOOGLENET" detect boxreg --checkpoint "$m0" --annotations builtin --output runs/boxreg-m0.pt --json \
  > "$OUT/boxreg-m0.json"
predict m0-boxreg --checkpoint "$m0" --box-regression runs/boxreg-m0.pt
for name in m0-warped m0-boxreg; do
  "$GOOGLENET" detect evaluate --annotations builtin --detections "$OUT/dets-$name.csv" --iou 0.7 --json \
    > "$OUT/eval-$name-iou07.json"
done
if [[ ${SIX_MEMBERS:-0} == 1 ]]; then  # section 8's six members (about 35 minutes more)
  rm -rf runs/det-builtin-6
  "$GOOGLENET" detect train --init-from runs/cifar-bn/final.pt --lr 0.01 --epochs 3 \
    --positives-per-image 4 --ensemble 6 --output-dir runs/det-builtin-6 --seed 0
  mkdir -p "$OUT-6"
  cp runs/det-builtin-6/detection.json "$OUT-6/detection-train.json"
fi
echo "results in $OUT"
