#!/usr/bin/env bash
# Runs a tool on GPUS local processes with torchrun: tools/torchrun.sh TOOL GPUS [tool args]
# Env: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500),
#      PYTHON (default: the active python if it has torch, else the project's .venv; see select_python.sh).
# Without GPUs the processes run on the CPU (gloo, via vt_backbones.compat).
set -euo pipefail
TOOL=$1
GPUS=$2
TOOLS=$(dirname "$0")
source "$TOOLS/select_python.sh"

# Share the cores among the local processes (torchrun would otherwise set 1 thread each).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / GPUS > 1 ? $(nproc) / GPUS : 1 ))}

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$GPUS" \
    "$TOOLS/$TOOL" "${@:3}" --launcher pytorch
