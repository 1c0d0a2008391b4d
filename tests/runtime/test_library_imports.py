"""``import mmvim`` is the library: models, ops and the optimizer
constructor, with torch and mmengine alone. The tools' runtime stays out."""
import subprocess
import sys

# Runs in a fresh interpreter where importing mmcv, mmseg or mmdet fails as
# if they were not installed.
WITHOUT_OPENMMLAB_TASK_LIBRARIES = '''
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmcv', 'mmseg', 'mmdet'):
            raise ImportError(f'{name} is blocked by the test')
        return None

sys.meta_path.insert(0, Blocked())
import torch
import mmvim
from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

loaded = sorted(name for name in sys.modules
                if name.split('.')[0] in ('mmcv', 'mmseg', 'mmdet'))
assert not loaded, loaded
# The library's packages only: no run guards, runner set-up, DDP wrapper.
library = ('mmvim.engine.optimizers', 'mmvim.models', 'mmvim.ops',
           'mmvim.version')
runtime = sorted(name for name in sys.modules
                 if name.startswith('mmvim.') and
                 name not in ('mmvim.engine', ) and
                 not name.startswith(library))
assert not runtime, runtime
assert OPTIM_WRAPPER_CONSTRUCTORS.get('VimLayerDecayOptimWrapperConstructor')

torch.manual_seed(0)
backbone = MODELS.build(dict(
    type='VisionMamba', arch=dict(embed_dims=32, num_layers=2), img_size=32,
    out_indices=(1, )))
features = backbone(torch.randn(2, 3, 32, 32))
assert features[0].shape == (2, 32, 2, 2), features[0].shape
assert torch.isfinite(features[0]).all()
print('ok')
'''


def test_import_mmvim_builds_and_runs_without_mmcv_mmseg_mmdet():
    result = subprocess.run(
        [sys.executable, '-c', WITHOUT_OPENMMLAB_TASK_LIBRARIES],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')
