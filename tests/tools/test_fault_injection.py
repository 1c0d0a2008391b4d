"""kill -9 at random points of a training run, inside checkpoint writes
too, then --resume each time: the run completes, every checkpoint that
carries a final name loads, and the final weights are those of an
uninterrupted run, bit for bit.

Bit for bit (tolerance 0) because nothing differs between the runs: one CPU
thread (OMP_NUM_THREADS=1) runs the same float32 kernels in the same order,
the config draws no random numbers in a training step (dropout 0, drop path
0), and mmengine restores the data order and the pipeline's random flips by
replaying the skipped iterations' data on resume.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TESTS_TOOLS = Path(__file__).resolve().parent
CONFIG = TESTS_TOOLS / 'tiny_upernet_vim_faults.py'
DATA_DIR = TESTS_TOOLS.parent / 'data'
REPO = TESTS_TOOLS.parents[1]
MAX_ITERS = 8  # as the config says; a checkpoint after every iteration


def train_command(work_dir):
    return [sys.executable, 'tools/train.py', str(CONFIG), '--work-dir',
            str(work_dir), '--resume']


def environment(tiny_ade20k_root, fault=''):
    return dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([str(DATA_DIR), str(TESTS_TOOLS)]),
        TINY_ADE20K_ROOT=str(tiny_ade20k_root),
        MMVIM_TEST_FAULT=fault)


def train(work_dir, tiny_ade20k_root, fault=''):
    """``tools/train.py --resume`` in a new process, to its end."""
    return subprocess.run(train_command(work_dir), cwd=REPO,
                          env=environment(tiny_ade20k_root, fault),
                          capture_output=True, text=True, timeout=600)


def final_checkpoints(work_dir):
    return sorted(work_dir.glob('iter_*.pth'),
                  key=lambda path: int(path.stem.split('_')[1]))


def train_killed_at_random(work_dir, tiny_ade20k_root, rng):
    """Starts a resumed run, waits until it has saved one more checkpoint,
    then kills it with SIGKILL after a random delay. Returns its output,
    or None if it finished first."""
    saved_before = len(final_checkpoints(work_dir))
    process = subprocess.Popen(
        train_command(work_dir), cwd=REPO,
        env=environment(tiny_ade20k_root), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while (len(final_checkpoints(work_dir)) <= saved_before
           and process.poll() is None and time.monotonic() < deadline):
        time.sleep(0.05)
    time.sleep(rng.uniform(0, 0.6))
    finished = process.poll() is not None
    if not finished:
        process.send_signal(signal.SIGKILL)
    output = process.communicate(timeout=60)[0]
    return None if finished else output


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_weights(
        tmp_path, tiny_ade20k_root):
    seed = random.randrange(1 << 16)
    rng = random.Random(seed)
    about = f'(random seed {seed}) '

    straight = tmp_path / 'uninterrupted'
    result = train(straight, tiny_ade20k_root)
    assert result.returncode == 0, result.stderr[-3000:]

    crashed = tmp_path / 'crashed'
    outputs = []
    # SIGKILL half-way through the bytes of the 3rd checkpoint of the first
    # process (a fresh run: --resume finds nothing), then before the 2nd
    # checkpoint of the next one gets its name, then at random moments.
    for fault in ('write:3:mid', 'write:2:unnamed'):
        result = train(crashed, tiny_ade20k_root, fault)
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
        outputs.append(result.stdout)
        # the cut write left no file under a final name, only a temporary
        for checkpoint in final_checkpoints(crashed):
            torch.load(checkpoint, weights_only=True)
        assert list(crashed.glob('.iter_*.tmp'))
    assert 'nothing to resume' in outputs[0]
    assert f'resuming from {crashed / "iter_2.pth"}' in outputs[1]
    assert 'an unfinished write of a killed run' in outputs[1]
    for _ in range(2):
        if train_killed_at_random(crashed, tiny_ade20k_root, rng) is None:
            break
    result = train(crashed, tiny_ade20k_root)
    assert result.returncode == 0, about + result.stderr[-3000:]

    names = [path.name for path in final_checkpoints(crashed)]
    assert names == [f'iter_{step}.pth' for step in range(1, MAX_ITERS + 1)]
    for checkpoint in final_checkpoints(crashed):
        torch.load(checkpoint, weights_only=True)  # every one loads
    assert not list(crashed.glob('.*.tmp')), about
    expected = torch.load(straight / f'iter_{MAX_ITERS}.pth',
                          weights_only=True)['state_dict']
    resumed = torch.load(crashed / f'iter_{MAX_ITERS}.pth',
                         weights_only=True)['state_dict']
    assert resumed.keys() == expected.keys()
    differing = [name for name in expected
                 if not torch.equal(resumed[name], expected[name])]
    assert not differing, f'{about}weights differ: {differing[:5]}'
