#!/usr/bin/env bash
# `make demo`: Mask R-CNN with a vt_backbones backbone, trained with 2 processes (DDP over gloo on CPU,
# the same script as on 8 GPUs) on the synthetic mini COCO, then evaluated with COCO bbox/segm metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
CONFIG=${CONFIG:-configs/demo/maskrcnn_shuffle_t_mini.py}
WORK_DIR=${WORK_DIR:-work_dirs/demo}
PROCS=${PROCS:-2}

[ -f data/mini/coco/annotations/instances_train2017.json ] || $PYTHON tools/make_mini_data.py --out data/mini
rm -rf "$WORK_DIR"
start=$(date +%s)
echo "== training $CONFIG with $PROCS processes"
PYTHON=$PYTHON bash tools/dist_train.sh "$CONFIG" "$PROCS" --work-dir "$WORK_DIR"
ckpt=$(cat "$WORK_DIR/last_checkpoint")
echo "== testing $ckpt"
$PYTHON tools/test.py "$CONFIG" "$ckpt" --work-dir "$WORK_DIR/test"
$PYTHON tools/summarize_log.py "$WORK_DIR"
echo "== demo took $(( $(date +%s) - start )) s"
