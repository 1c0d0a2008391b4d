"""The COCO configs resolve to the ViTDet-style recipe, build, and predict.

The real Vim-Ti Cascade Mask R-CNN is built at full width (its parameter
count is quoted in docs/detection.md) and run once on a small non-square
image; only test-time proposal counts are lowered to keep that fast.
"""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmvim  # noqa: F401  registers VisionMamba, the neck and LN2d
from mmvim.models.layers import LayerNorm2d

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'coco'
VIM_TINY_DETECTOR_PARAMS = 65_369_070


@pytest.fixture(scope='session')
def load(load_config):
    """A COCO config by file name, as CI reads it."""
    return lambda name: load_config(f'coco/{name}')


@pytest.fixture(scope='module')
def tiny_detector(load, build_model):
    model = build_model(load('cascade_mask_rcnn_vim_tiny.py').model, 'mmdet')
    model.init_weights()
    return model.eval()


def test_tiny_detector_parameter_count(tiny_detector):
    assert sum(p.numel() for p in tiny_detector.parameters()) == \
        VIM_TINY_DETECTOR_PARAMS


def test_tiny_detector_has_the_vitdet_heads(tiny_detector):
    assert tiny_detector.backbone.out_indices == (23, )
    assert tiny_detector.backbone.patch_grid == (64, 64)
    assert len(tiny_detector.rpn_head.rpn_conv) == 2
    roi_head = tiny_detector.roi_head
    assert [stage.assigner.pos_iou_thr
            for stage in tiny_detector.train_cfg.rcnn] == [0.5, 0.6, 0.7]
    for bbox_head in roi_head.bbox_head:
        assert type(bbox_head).__name__ == 'Shared4Conv1FCBBoxHead'
        assert bbox_head.reg_class_agnostic
        assert sum(isinstance(m, LayerNorm2d)
                   for m in bbox_head.modules()) == 4
    assert all(
        sum(isinstance(m, LayerNorm2d) for m in mask_head.modules()) == 4
        for mask_head in roi_head.mask_head)


@pytest.mark.slow  # the full 65M-parameter detector end to end on a CPU
def test_tiny_detector_predicts_on_a_non_square_image(tiny_detector):
    from mmdet.structures import DetDataSample
    tiny_detector.test_cfg.rpn.update(nms_pre=100, max_per_img=100)
    tiny_detector.test_cfg.rcnn.score_thr = 0.0  # untrained: keep all boxes
    height, width = 192, 256
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            scale_factor=(1., 1.)))
    with torch.no_grad():
        [result] = tiny_detector.test_step(
            dict(inputs=[image], data_samples=[sample]))
    pred = result.pred_instances
    assert len(pred) > 0
    assert pred.masks.shape[1:] == (height, width)
    assert (pred.bboxes[:, 0::2] >= 0).all()
    assert (pred.bboxes[:, 0::2] <= width).all()
    assert (pred.bboxes[:, 1::2] <= height).all()
    assert pred.labels.max() < 80


def test_tiny_recipe(load):
    cfg = load('cascade_mask_rcnn_vim_tiny.py')
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    assert set(cfg.val_evaluator.metric) == {'bbox', 'segm'}
    # 16 GPUs x 4 images = the recipe's batch of 64.
    assert cfg.train_dataloader.batch_size * 16 == \
        cfg.auto_scale_lr.base_batch_size == 64
    optim = cfg.optim_wrapper
    assert optim.optimizer.lr == 1e-4 and optim.optimizer.weight_decay == 0.1
    assert optim.constructor == 'VimLayerDecayOptimWrapperConstructor'
    assert optim.paramwise_cfg.layer_decay_rate == 0.837
    assert 'num_layers' not in optim.paramwise_cfg  # read from the model
    warmup, steps = cfg.param_scheduler
    assert warmup.end == 250
    assert steps.milestones == [163889, 177546]
    assert cfg.train_cfg.max_iters == 184375
    assert cfg.default_hooks.checkpoint.by_epoch is False


def test_small_config_widens_the_neck_input():
    model = Config.fromfile(CONFIGS / 'cascade_mask_rcnn_vim_small.py').model
    assert model.backbone.arch == 'small'
    assert model.neck.in_channels == 384
    assert 'vim_s_' in model.backbone.init_cfg.checkpoint


def test_lsj_pipeline_yields_padded_1024_crops(tmp_path, load):
    """The real train pipeline on a toy COCO image: whatever the jitter,
    images and masks come out 1024x1024 with boxes inside."""
    from mmdet.registry import DATASETS
    cfg = load('cascade_mask_rcnn_vim_tiny.py')
    image = (np.random.RandomState(0).rand(120, 200, 3) * 255).astype(
        np.uint8)
    (tmp_path / 'train').mkdir()
    cv2.imwrite(str(tmp_path / 'train' / 'a.png'), image)
    coco = dict(
        images=[dict(id=1, file_name='a.png', height=120, width=200)],
        annotations=[
            dict(id=1, image_id=1, category_id=1, iscrowd=0, area=1200,
                 bbox=[40, 30, 60, 40],
                 segmentation=[[40, 30, 100, 30, 100, 70, 40, 70]])
        ],
        categories=[dict(id=1, name='person')])
    (tmp_path / 'train.json').write_text(json.dumps(coco))
    init_default_scope('mmdet')
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(
        data_root=str(tmp_path), ann_file='train.json',
        data_prefix=dict(img='train/'))
    dataset = DATASETS.build(dataset_cfg)
    np.random.seed(0)
    for _ in range(4):
        sample = dataset[0]
        assert sample['inputs'].shape == (3, 1024, 1024)
        instances = sample['data_samples'].gt_instances
        assert instances.masks.masks.shape[1:] == (1024, 1024)
        assert (instances.bboxes.tensor <= 1024).all()


def test_quickstart_splits_schedule_and_seed():
    cfg = Config.fromfile(
        CONFIGS / 'quickstart_cascade_mask_rcnn_vim_tiny_toy.py')
    assert cfg.randomness == dict(seed=0)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
             end=50),
        # the recipe's steps at 89% and 96% of the run
        dict(type='MultiStepLR', by_epoch=False, begin=0, end=400,
             milestones=[356, 385], gamma=0.1),
    ]
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (400, 100)
    assert cfg.optim_wrapper.optimizer.lr == 5e-4
    # The toy objects are pooled from the strides that fit their sizes.
    for extractor in ('bbox_roi_extractor', 'mask_roi_extractor'):
        assert cfg.model.roi_head[extractor].finest_scale == 14
    for loader, split, pipeline in (
            (cfg.train_dataloader, 'train', cfg.train_pipeline),
            (cfg.val_dataloader, 'val', cfg.test_pipeline)):
        assert (loader.num_workers, loader.persistent_workers) == (0, False)
        dataset = loader.dataset
        assert dataset.data_root == 'data/toy_coco/'
        assert dataset.ann_file == f'annotations/instances_{split}.json'
        assert dataset.data_prefix == dict(img=f'{split}/')
        assert dataset.pipeline == pipeline
        assert dataset.metainfo.classes == ('circle', 'square', 'triangle')
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.val_dataloader.batch_size == 1
    assert cfg.test_dataloader == cfg.val_dataloader
    sizes = {step.type: step for step in cfg.train_pipeline}
    assert sizes['RandomResize'].scale == (160, 128)
    assert sizes['Pad'].size == (160, 128)
