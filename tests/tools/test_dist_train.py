"""Two CPU processes train through tools/dist_train.sh (gloo) and end with
the same weights, which are also the weights of the saved checkpoint."""
import json
import socket
import sys
from pathlib import Path

import torch

from mmvim.engine import allow_mmengine_checkpoints

DATA_DIR = Path(__file__).resolve().parents[1] / 'data'
sys.path.insert(0, str(DATA_DIR))
from rank_digest_hook import weights_digest  # noqa: E402


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_agree(tmp_path, tiny_config, run_tool):
    work_dir = tmp_path / 'work'
    result = run_tool(
        [
            'tools/dist_train.sh',
            DATA_DIR / 'configs/tiny_upernet_vim_rank_digest.py', 2,
            '--work-dir', work_dir
        ],
        timeout=240,
        PORT=free_port(),
        PYTHONPATH=DATA_DIR)
    assert result.returncode == 0, result.stderr[-3000:]

    records = [
        json.loads((work_dir / f'weights_rank{rank}.json').read_text())
        for rank in (0, 1)
    ]
    assert records[0]['iter'] == records[1]['iter'] == 4
    assert records[0]['digest'] == records[1]['digest']

    allow_mmengine_checkpoints()
    checkpoint = torch.load(work_dir / 'iter_4.pth', map_location='cpu')
    state = checkpoint['state_dict']
    assert weights_digest(
        (name, state[name]) for name in records[0]['names']) == \
        records[0]['digest']
