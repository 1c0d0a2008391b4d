"""After ``import mmvim`` alone, every mmengine load of a local or http(s)
checkpoint (Runner, ``load_checkpoint``, mmseg's ``init_model``, mmdet's
``init_detector``) is weights-only and reads mmengine's own files."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer

REPO = Path(__file__).resolve().parents[3]

# A fresh interpreter: nothing but what a user of the APIs imports.
LOAD_AFTER_IMPORT_MMVIM = '''
import os
import sys
import mmvim
from mmengine.runner.checkpoint import _load_checkpoint
from mmseg.apis import init_model
assert not [name for name in sys.modules if name.startswith('mmvim.runtime')]
config, mmengine_file, crafted = sys.argv[1:]
# torch's default (weights_only=True), then forced to weights_only=False
for force in ('0', '1'):
    os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = force
    # the way mmengine's load_checkpoint, hence init_model, reads a file
    loaded = _load_checkpoint(mmengine_file, map_location='cpu')
    history = loaded['message_hub']['log_scalars']['train/loss']
    assert history['log_history'].tolist() == [0.5, 0.25], history
    model = init_model(config, mmengine_file, device='cpu')
    assert model.dataset_meta['classes'][0] == 'wall', model.dataset_meta
    try:
        _load_checkpoint(crafted, map_location='cpu')
    except ValueError as error:
        assert 'weights_only' in str(error), error
    else:
        raise AssertionError('the crafted file loaded')
print('ok')
'''


class ShellCommand:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


@pytest.mark.slow
def test_import_mmvim_makes_mmengine_loading_safe_and_able_to_read_its_files(
        tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.datasets import ADE20KDataset
    from mmseg.registry import MODELS

    config = REPO / 'tests/data/configs/tiny_upernet_vim.py'
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(config).model)
    # as mmengine's Runner saves without mmvim's tools: HistoryBuffers
    buffer = HistoryBuffer()
    for loss in (0.5, 0.25):
        buffer.update(loss)
    mmengine_file = tmp_path / 'iter_2.pth'
    torch.save(
        dict(state_dict=model.state_dict(),
             meta=dict(iter=2, dataset_meta=ADE20KDataset.METAINFO),
             message_hub=dict(log_scalars={'train/loss': buffer},
                              runtime_info={}, resumed_keys={})),
        mmengine_file)
    marker = tmp_path / 'payload_ran'
    crafted = tmp_path / 'crafted.pth'
    torch.save({'state_dict': {}, 'meta': ShellCommand(marker)}, crafted)

    result = subprocess.run(
        [sys.executable, '-c', LOAD_AFTER_IMPORT_MMVIM, str(config),
         str(mmengine_file), str(crafted)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')
    assert not marker.exists()
