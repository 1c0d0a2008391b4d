"""Two CPU processes train through tools/dist_train.sh (gloo): they end
with the same weights, which are also those of the saved checkpoint; when
one of them is killed mid-run, the relaunch with --resume ends with the
weights of the uninterrupted two-process run, bit for bit (see
test_fault_injection.py for why no tolerance is needed); two one-process
"nodes" on this machine (NNODES=2) train to those weights too; and
tools/dist_test.sh tests with two processes."""
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
def launch(tiny_ade20k_root):
    """Starts ``bash ARGS`` (a tools/dist_*.sh command line) from the
    repository root; keyword arguments become environment variables
    (MMVIM_TEST_FAULT kills a process). Returns the Popen."""

    def start(*args, **env):
        environment = dict(
            os.environ,
            OMP_NUM_THREADS='1',
            PYTHON=sys.executable,
            PYTHONPATH=os.pathsep.join([str(DATA_DIR), str(TESTS / 'tools')]),
            TINY_ADE20K_ROOT=str(tiny_ade20k_root),
            **{key: str(value) for key, value in env.items()})
        environment.setdefault('PORT', str(free_port()))
        return subprocess.Popen(
            ['bash', *map(str, args)], cwd=TESTS.parent, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    return start


def finished(process):
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode,
                                       stdout, stderr)


@pytest.fixture(scope='module')
def two_process_train(launch):
    """Runs tools/dist_train.sh with 2 processes."""

    def run(work_dir, *options, **env):
        return finished(launch('tools/dist_train.sh', CONFIG, 2, '--work-dir',
                               work_dir, *SHORT_RUN, *options, **env))

    return run


def final_weights(work_dir):
    return torch.load(work_dir / 'iter_4.pth',
                      weights_only=True)['state_dict']


def differing(weights, expected):
    return [name for name in expected
            if not torch.equal(weights[name], expected[name])]


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
    wrong = differing(final_weights(work_dir), final_weights(uninterrupted))
    assert not wrong, wrong[:5]


@pytest.mark.slow
def test_two_nodes_on_one_machine_train_to_the_same_weights(
        tmp_path, uninterrupted, launch):
    # NNODES=2: each "node" starts one process; node 0 hosts the rendezvous
    port = free_port()
    nodes = [
        launch('tools/dist_train.sh', CONFIG, 1, '--work-dir', tmp_path,
               *SHORT_RUN, NNODES=2, NODE_RANK=rank,
               MASTER_ADDR='127.0.0.1', PORT=port) for rank in (0, 1)
    ]
    results = [finished(node) for node in nodes]
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    wrong = differing(final_weights(tmp_path), final_weights(uninterrupted))
    assert not wrong, wrong[:5]
    digests = {json.loads((tmp_path / f'weights_rank{rank}.json').read_text(
    ))['digest'] for rank in (0, 1)}
    assert len(digests) == 1


@pytest.mark.slow
def test_dist_test_with_two_processes(tmp_path, uninterrupted, launch):
    result = finished(launch('tools/dist_test.sh', CONFIG,
                             uninterrupted / 'iter_4.pth', 2, '--work-dir',
                             tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'mIoU' in result.stdout
    # the metrics, written once, by the main process
    (metrics, ) = tmp_path.glob('*/*.json')
    assert 'mIoU' in json.loads(metrics.read_text())
