"""Checkpoints trained with mmvim's tools load through mmseg's and mmdet's
own inference APIs after ``import mmvim`` alone, with torch's default
``weights_only=True`` loading: they hold plain data only. Weights that do
not fit are refused there too."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmvim.runtime import build_runner, load_config

REPO = Path(__file__).resolve().parents[2]
DET_QUICKSTART = (REPO /
                  'configs/coco/quickstart_cascade_mask_rcnn_vim_tiny_toy.py')

# Runs in a fresh interpreter: nothing of mmvim.runtime (no allow-list, no
# replaced loaders), only what a user of the APIs has.
SEGMENTATION_APIS = '''
import sys
import mmvim
from mmseg.apis import MMSegInferencer, inference_model, init_model
config, checkpoint, picture = sys.argv[1:]
assert not [name for name in sys.modules if name.startswith('mmvim.runtime')]
model = init_model(config, checkpoint, device='cpu')
assert model.dataset_meta['classes'][0] == 'wall', model.dataset_meta
assert inference_model(model, picture).pred_sem_seg.shape == (40, 56)
inferencer = MMSegInferencer(model=config, weights=checkpoint, device='cpu')
result = inferencer(picture, return_datasamples=True)
assert result.pred_sem_seg.shape == (40, 56)
# A head of another size is an error there too, not random weights.
import torch
from mmvim.models.utils.weights_fit import CheckpointMismatchError
unfit = torch.load(checkpoint, weights_only=True)
for key in ('decode_head.conv_seg.weight', 'decode_head.conv_seg.bias'):
    unfit['state_dict'][key] = unfit['state_dict'][key][:5]
torch.save(unfit, checkpoint + '.5_classes.pth')
try:
    init_model(config, checkpoint + '.5_classes.pth', device='cpu')
    raise SystemExit('init_model loaded a 5-class head into 150 classes')
except CheckpointMismatchError as error:
    assert 'decode_head.conv_seg.weight (5, ' in str(error), error
print('ok')
'''
DETECTION_APIS = '''
import sys
import mmvim
from mmdet.apis import DetInferencer, inference_detector, init_detector
config, checkpoint, picture, cfg_options = sys.argv[1:]
from mmengine.config import Config
cfg = Config.fromfile(config)
cfg.merge_from_dict(eval(cfg_options))
assert not [name for name in sys.modules if name.startswith('mmvim.runtime')]
model = init_detector(cfg, checkpoint, device='cpu')
assert 'classes' in model.dataset_meta, model.dataset_meta
assert hasattr(inference_detector(model, picture), 'pred_instances')
inferencer = DetInferencer(model=cfg, weights=checkpoint, device='cpu')
result = inferencer(picture, return_datasamples=True)
assert hasattr(result['predictions'][0], 'pred_instances')
print('ok')
'''


def run_python(code, *args, **env):
    return subprocess.run(
        [sys.executable, '-c', code, *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS='1', **env))


def picture(path):
    Image.fromarray(np.random.default_rng(0).integers(
        0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_segmentation_checkpoint_loads_in_mmseg_apis(tmp_path, tiny_config,
                                                     tiny_ade20k_root,
                                                     tool_main):
    work_dir = tmp_path / 'work'
    tool_main('tools/train.py', tiny_config, '--work-dir', work_dir,
              '--cfg-options', 'train_cfg.max_iters=2',
              'default_hooks.checkpoint.interval=2')
    result = run_python(SEGMENTATION_APIS, tiny_config,
                        work_dir / 'iter_2.pth',
                        picture(tmp_path / 'street.png'),
                        TINY_ADE20K_ROOT=tiny_ade20k_root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')


@pytest.mark.slow
def test_detection_checkpoint_loads_in_mmdet_apis(tmp_path, tool_module):
    toy = tool_module('tools/dataset_converters/make_toy_coco.py')
    data_root = tmp_path / 'toy_coco'
    toy.make_toy_coco(data_root, num_train=2, num_val=1, image_size=(64, 64))
    # a 2-layer 32-wide Vim; the rest is the quickstart's
    small = {
        'model.backbone.arch': dict(embed_dims=32, num_layers=2),
        'model.neck.in_channels': 32,
        'optim_wrapper.paramwise_cfg.num_layers': 2,
    }
    options = dict(
        small, **{
            'train_dataloader.batch_size': 2,
            'train_dataloader.dataset.data_root': f'{data_root}/',
            'val_dataloader.dataset.data_root': f'{data_root}/',
            'val_evaluator.ann_file':
            f'{data_root}/annotations/instances_val.json',
            'train_cfg.max_iters': 1,
            'train_cfg.val_begin': 2,  # no validation
            'default_hooks.checkpoint.interval': 1,
            'experiment_name': 'det_inference_apis',
        })
    work_dir = tmp_path / 'work'
    build_runner(
        load_config(str(DET_QUICKSTART), options,
                    work_dir=str(work_dir))).train()
    result = run_python(DETECTION_APIS, DET_QUICKSTART,
                        work_dir / 'iter_1.pth',
                        picture(tmp_path / 'street.png'), repr(small))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')
