"""Checkpoint writes are whole or absent and replace nothing of another
run."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner.checkpoint import save_checkpoint

from mmvim.runtime import (
    OverwriteRefusedError,
    use_atomic_local_writes,
    write_atomically,
)
from mmvim.runtime.atomic_files import stale_temporaries

TESTS_TOOLS = Path(__file__).resolve().parents[1] / 'tools'
# Saves a checkpoint through mmengine as the CheckpointHook does, and is
# killed (SIGKILL, no clean-up) once half of its bytes are written, by
# tests/tools/fault_injection.py.
KILLED_MID_SAVE = '''
import sys
import torch
from mmengine.fileio.backends import local_backend
from mmengine.runner.checkpoint import save_checkpoint
from mmvim.runtime import atomic_files, use_atomic_local_writes
sys.path.insert(0, sys.argv[3])
import fault_injection
if sys.argv[2] == 'atomic':
    use_atomic_local_writes()
    fault_injection.kill_mid_write(atomic_files, 1)
else:
    fault_injection.kill_mid_write(local_backend, 1)
save_checkpoint({'state_dict': {'w': torch.randn(1000)}}, sys.argv[1])
'''


@pytest.mark.slow
@pytest.mark.parametrize('writer', ['atomic', 'mmengine'])
def test_kill_during_a_checkpoint_write_leaves_no_partial_file(
        tmp_path, writer):
    target = tmp_path / 'iter_1.pth'
    result = subprocess.run(
        [sys.executable, '-c', KILLED_MID_SAVE, str(target), writer,
         str(TESTS_TOOLS)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    if writer == 'mmengine':
        # what mmengine alone leaves: a truncated file under the final name
        assert target.exists()
        with pytest.raises(Exception):
            torch.load(target, weights_only=True)
        return
    assert not target.exists()
    leftovers = stale_temporaries(str(tmp_path))
    assert len(leftovers) == 1
    assert re.fullmatch(r'\.iter_1\.pth\.\d+\.tmp',
                        os.path.basename(leftovers[0]))


def test_never_replaces_a_file_this_process_did_not_write(tmp_path):
    use_atomic_local_writes()
    earlier = tmp_path / 'iter_2.pth'
    earlier.write_bytes(b'the earlier run')
    with pytest.raises(OverwriteRefusedError, match='iter_2.pth'):
        save_checkpoint({'state_dict': {}}, str(earlier))
    assert earlier.read_bytes() == b'the earlier run'
    assert os.listdir(tmp_path) == ['iter_2.pth']  # no temporary left

    # its own files it may rewrite (mmengine re-saves a step with the best
    # score), and each write is whole
    own = tmp_path / 'iter_4.pth'
    save_checkpoint({'state_dict': {'w': torch.ones(3)}}, str(own))
    save_checkpoint({'state_dict': {'w': torch.zeros(3)}}, str(own))
    assert torch.load(own, weights_only=True)['state_dict']['w'].sum() == 0
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'iter_4.pth']


def test_write_atomically_creates_folders_and_fsyncs(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync',
                        lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / 'a' / 'b' / 'result.pkl'
    write_atomically(b'data', target)
    assert target.read_bytes() == b'data'
    assert len(synced) == 2  # the file, then its folder
