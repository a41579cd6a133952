#!/usr/bin/env bash
# W8A8 LiteMedSAM accuracy: FP32 vs fake-quant INT8 (two observers) on busi/val and
# tiny_coco/val2017, calibrated on the disjoint busi/calib and tiny_coco/train2017 splits.
# Usage: experiments/w8a8_accuracy.sh OUT_DIR [observer ...]   (default observers: entropy percentile)
# TRTQ_PAIRS="busi:calib:val" limits the datasets (DATA:CALIB_SPLIT:EVAL_SPLIT).
# Ends by writing OUT_DIR/w8a8-accuracy.json: every run's summary under "runs", with a
# "provenance" block (this command line, commit, date, machine) from _provenance.py.
set -euo pipefail
COMMAND="${TRTQ_PAIRS:+TRTQ_PAIRS=\"$TRTQ_PAIRS\" }$0 $*"
OUT=${1:?usage: experiments/w8a8_accuracy.sh OUT_DIR [observer ...]}
shift || true
OBSERVERS=${*:-entropy percentile}
SHARED=${TRTQ_SHARED_DATASETS:-$(dirname "$0")/../../shared/datasets}
TRTQ=${TRTQ:-trtq}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
RUNS=()
for pair in ${TRTQ_PAIRS:-busi:calib:val tiny_coco:train2017:val2017}; do
  IFS=: read -r data calib val <<<"$pair"
  ref="$OUT/$data-fp32.json"
  [ -f "$ref" ] || $TRTQ -q eval --data "$SHARED/$data" --split "$val" --out "$ref"
  RUNS+=("$data-fp32=$ref")
  for obs in $OBSERVERS; do
    cal="$OUT/$data-$obs"
    [ -f "$cal/quant_state.pt" ] || $TRTQ -q calibrate --calib-data "$SHARED/$data" \
      --split "$calib" --num-images 32 --observer "$obs" --out "$cal"
    [ -f "$cal/eval.json" ] || $TRTQ -q eval --data "$SHARED/$data" --split "$val" \
      --calibrated "$cal" --reference "$ref" --out "$cal/eval.json"
    RUNS+=("$data-$obs=$cal/eval.json")
  done
done
$PYTHON "$(dirname "$0")/_provenance.py" --command "$COMMAND" --out "$OUT/w8a8-accuracy.json" \
  --keep miou instances images agreement_miou agreement_instances split data recipe observer \
  -- "${RUNS[@]}"
