#!/usr/bin/env bash
# `make demo`: Mask R-CNN with a vt_backbones backbone, trained with 2 processes (DDP over gloo on CPU,
# the same script as on 8 GPUs) on the synthetic mini COCO, evaluated with COCO bbox/segm metrics, and two
# pictures: the loss curves and the predictions on two validation images.
# Env: PYTHON (see select_python.sh), CONFIG, WORK_DIR (work_dirs/demo), PROCS (2), PORT (29500), SEED (0: the
#      training's random seed; another one checks that the demo learns without a lucky draw),
#      PRECISION: fp32 (default), bf16 (bf16 autocast, tools/train.py --amp) or auto (bf16 where the CPU computes
#      bf16 natively, else fp32). fp32 is the default: that the demo learns as well in bf16 is not verified yet
#      (the CPU it was tuned on has no AVX512-BF16/AMX, where emulated bf16 is many times slower than fp32).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/select_python.sh
CONFIG=${CONFIG:-configs/demo/maskrcnn_shuffle_t_mini.py}
WORK_DIR=${WORK_DIR:-work_dirs/demo}
PROCS=${PROCS:-2}
PRECISION=${PRECISION:-fp32}
SEED=${SEED:-0}
# The picture draws predictions scoring at least this: what a user would call a detection. COCO evaluation counts
# every box above the config's 0.05, and the low-scoring ones would hide the objects in the picture.
PICTURE_SCORE_THR=0.5

native_bf16=$($PYTHON -c 'from vt_backbones.engine import cpu_has_native_bf16 as native; print("yes" if native() else "no")')
if [ "$PRECISION" = auto ]; then
  PRECISION=$([ "$native_bf16" = yes ] && echo bf16 || echo fp32)
fi
case $PRECISION in
  bf16) amp=(--amp) ;;
  fp32) amp=() ;;
  *) echo "error: PRECISION must be fp32, bf16 or auto, got '$PRECISION'" >&2; exit 2 ;;
esac

# Always (seconds, byte-identical for the same code): data left by an older version of the generator would not match
# the config.
$PYTHON tools/make_mini_data.py --out data/mini
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
start=$(date +%s)
echo "== training $CONFIG with $PROCS processes, seed $SEED, precision: $PRECISION (this CPU computes bf16 natively: $native_bf16)"
bash tools/dist_train.sh "$CONFIG" "$PROCS" --work-dir "$WORK_DIR" "${amp[@]}" --cfg-options randomness.seed="$SEED"
ckpt=$(cat "$WORK_DIR/last_checkpoint")
echo "== testing $ckpt"
$PYTHON tools/test.py "$CONFIG" "$ckpt" --work-dir "$WORK_DIR/test" 2>&1 | tee "$WORK_DIR/test.log"
if ! grep -q 'coco/segm_mAP:' "$WORK_DIR/test.log"; then
  echo "error: the evaluation printed no COCO metrics (no detections?); see $WORK_DIR/test.log" >&2
  exit 1
fi
echo "== summary"
$PYTHON tools/summarize_log.py "$WORK_DIR" --plot "$WORK_DIR/loss_curves.png"
$PYTHON tools/visualize.py "$CONFIG" "$ckpt" --out "$WORK_DIR/predictions.png" --num-images 2 \
  --score-thr "$PICTURE_SCORE_THR"
times > "$WORK_DIR/cpu_times"  # second line: user and system CPU time of everything the demo ran
echo "== demo took $(( $(date +%s) - start )) s wall, CPU time $(tail -1 "$WORK_DIR/cpu_times" | sed 's/ / user, /') system; precision: $PRECISION"
echo "== pictures: $WORK_DIR/loss_curves.png $WORK_DIR/predictions.png"
