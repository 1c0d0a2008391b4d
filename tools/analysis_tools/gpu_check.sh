#!/usr/bin/env bash
# The one prepared check of mmvim's GPU paths, for a lent H100 / H200 machine:
# the `triton` ops backend's correctness on CUDA, opcheck of the CUDA
# backends' operators and torch.compile of Vim-Ti on them (docs/ops.md), then
# the benchmarks of the Triton issue (docs/triton.md), compiled included.
# At most 8 minutes: each step has a time limit, and a failing step does not
# stop the next.
#
# That machine has torch, triton, numpy 2 and pytest, but no network and no
# mmengine. Once, on a machine with network, in the repository root:
#     bash tools/analysis_tools/gpu_check.sh --download-wheels
# (mmengine and what it needs beyond that image, into .whl/, which git
# ignores through .git/info/exclude); then, there, with .whl carried along
# (ignored files travel only when named: the device tool's carry=['.whl']):
#     bash tools/analysis_tools/gpu_check.sh
# Everything lands in $OUT (default: a new work_dirs/gpu_check_<time>):
# log.txt, all that was printed, and results.tar.gz, the test report and the
# benchmark outputs. An $OUT holding an earlier run's files is refused.
set -u
cd "$(dirname "$0")/../.."

WHEELS=(mmengine==0.10.7 addict==2.4.0 termcolor==3.3.0 yapf==0.43.0
        platformdirs==4.14.9)
if [ "${1:-}" = --download-wheels ]; then
    # git's own exclude file (a clone may lack .git/info; a worktree keeps
    # it elsewhere): the wheels never show as files to commit.
    exclude=$(git rev-parse --git-path info/exclude) || exit 1
    mkdir -p "$(dirname "$exclude")"
    grep -qsx '/.whl/' "$exclude" || echo '/.whl/' >> "$exclude"
    exec python3 -m pip download --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
fi

OUT=${OUT:-work_dirs/gpu_check_$(date +%Y%m%d_%H%M%S)}
if [ -e "$OUT/log.txt" ] || [ -e "$OUT/results.tar.gz" ]; then
    echo "$OUT holds an earlier run's results: set OUT to a new folder." >&2
    exit 1
fi
mkdir -p "$OUT"
RESULTS=$(mktemp -d)
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 PYTHONPATH=$PWD

step() {  # step NAME SECONDS COMMAND...: run it under a time limit
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@"
    echo "=== $name: exit $?, $((SECONDS - start))s"
}

bench() {  # bench NAME SECONDS BENCHMARK-ARGUMENTS...
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" python3 tools/analysis_tools/benchmark.py \
        --device cuda --out "$RESULTS/$name" "$@"
}

checks() {
    if ls .whl/*.whl > /dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site:$PYTHONPATH
    fi
    step environment 30 bash -c 'nvidia-smi -L; python3 -c "
import numpy, torch, triton, mmengine
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"triton\",
      triton.__version__, \"numpy\", numpy.__version__, \"mmengine\",
      mmengine.__version__, torch.cuda.get_device_name())"
python3 -m mmvim.ops'

    # Correctness: the triton backend against the token loop and the torch
    # backend on CUDA (fp32 / bf16 / fp16 / fp64, forward and every
    # gradient), the golden files on every backend, opcheck of the CUDA
    # backends' operators, and torch.compile(fullgraph=True) of Vim-Ti on
    # triton (and cuda where mamba-ssm builds) against eager. Several workers
    # compile the kernels' variants in parallel where pytest-xdist is there;
    # pytest.ini's `-n auto` is dropped, which needs it.
    local parallel=()
    python3 -c 'import xdist' 2> /dev/null && parallel=(-n 8)
    step tests 160 python3 -m pytest -q -rs -p no:cacheprovider -o addopts= \
        "${parallel[@]}" --junitxml "$RESULTS/tests.xml" \
        tests/ops/test_triton_backend.py tests/ops/test_golden_backends.py \
        tests/ops/test_operators.py tests/ops/test_compile_export.py

    # Vim-Ti at 224, batch 128, bf16: the fused one-launch path, one call
    # per direction, and the portable scan; inference and a training step.
    bench vim_tiny_224 150 --models vim-tiny@triton vim-tiny-twocall@triton \
        vim-tiny-compiled@triton vim-tiny@torch --resolutions 224 --batch-sizes 128 --dtypes bf16 \
        --modes inference train --warmup 3 --repeats 10 --timeout 100 \
        --baseline vim-tiny@torch

    # The Figure-1 curve: Vim-Ti (triton) against DeiT-Ti (fused attention),
    # batch 8, speed and peak memory against resolution.
    bench figure1 120 --models vim-tiny@triton deit-tiny \
        --resolutions 512 640 738 1024 1248 --batch-sizes 8 \
        --dtypes bf16 --modes inference --warmup 3 --repeats 10 \
        --timeout 60 --baseline deit-tiny

    tar czf "$OUT/results.tar.gz" -C "$RESULTS" .
    echo "=== done: $OUT/log.txt, $OUT/results.tar.gz"
}

checks 2>&1 | tee "$OUT/log.txt"
