#!/usr/bin/env bash
# Train on several GPUs (or CPU processes) of one or more nodes through
# torch.distributed.run; mmengine's Runner joins the process group.
#   tools/dist_train.sh CONFIG NUM_PROCS_PER_NODE [train.py options...]
# Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and
# PORT set alike (NODE_RANK differs). PYTHON picks the interpreter.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCS_PER_NODE [train.py options...]" >&2
    exit 2
fi
CONFIG=$1
PROCS_PER_NODE=$2
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$PROCS_PER_NODE" \
    "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
