#!/usr/bin/env bash
# Test a checkpoint with several GPUs (or CPU processes) through
# torch.distributed.run; metrics are gathered across processes.
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS_PER_NODE [test.py options...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for dist_train.sh.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_PROCS_PER_NODE [test.py options...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
PROCS_PER_NODE=$3
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$PROCS_PER_NODE" \
    "$TOOLS_DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
