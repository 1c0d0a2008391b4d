"""Two CPU processes train through tools/dist_train.sh (gloo): they end
with the same weights, which are also those of the saved checkpoint; and
when one of them is killed mid-run, the relaunch with --resume ends with the
weights of the uninterrupted two-process run, bit for bit (see
test_fault_injection.py for why no tolerance is needed)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
DATA_DIR = TESTS / 'data'
CONFIG = TESTS / 'tools/tiny_upernet_vim_faults.py'
sys.path.insert(0, str(DATA_DIR))
from rank_digest_hook import weights_digest  # noqa: E402

# 4 iterations, a checkpoint after each
SHORT_RUN = ('--cfg-options', 'train_cfg.max_iters=4',
             'train_cfg.val_interval=4')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def two_process_train(tiny_ade20k_root):
    """Runs tools/dist_train.sh with 2 processes; keyword arguments become
    environment variables (MMVIM_TEST_FAULT kills a process)."""
    repo = TESTS.parent

    def run(work_dir, *options, **env):
        environment = dict(
            os.environ,
            OMP_NUM_THREADS='1',
            PYTHON=sys.executable,
            PORT=str(free_port()),
            PYTHONPATH=os.pathsep.join([str(DATA_DIR), str(TESTS / 'tools')]),
            TINY_ADE20K_ROOT=str(tiny_ade20k_root),
            **env)
        return subprocess.run(
            ['bash', 'tools/dist_train.sh', str(CONFIG), '2', '--work-dir',
             str(work_dir), *SHORT_RUN, *options],
            cwd=repo, env=environment, capture_output=True, text=True,
            timeout=600)

    return run


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, two_process_train):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    result = two_process_train(work_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


@pytest.mark.slow
def test_two_cpu_processes_agree(uninterrupted):
    records = [
        json.loads((uninterrupted / f'weights_rank{rank}.json').read_text())
        for rank in (0, 1)
    ]
    assert records[0]['iter'] == records[1]['iter'] == 4
    assert records[0]['digest'] == records[1]['digest']

    state = torch.load(uninterrupted / 'iter_4.pth',
                       weights_only=True)['state_dict']
    assert weights_digest(
        (name, state[name]) for name in records[0]['names']) == \
        records[0]['digest']


@pytest.mark.slow
def test_killed_process_resumes_to_the_uninterrupted_weights(
        tmp_path, uninterrupted, two_process_train):
    work_dir = tmp_path / 'crashed'
    # rank 1 dies (SIGKILL) after iteration 2; torch.distributed.run then
    # stops rank 0 and fails
    killed = two_process_train(work_dir, MMVIM_TEST_FAULT='rank:1:iter:2')
    assert killed.returncode != 0
    assert (work_dir / 'iter_1.pth').exists()
    assert not (work_dir / 'iter_3.pth').exists()

    resumed = two_process_train(work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'mmvim: resuming from' in resumed.stdout
    expected = torch.load(uninterrupted / 'iter_4.pth',
                          weights_only=True)['state_dict']
    final = torch.load(work_dir / 'iter_4.pth',
                       weights_only=True)['state_dict']
    differing = [name for name in expected
                 if not torch.equal(final[name], expected[name])]
    assert not differing, differing[:5]
