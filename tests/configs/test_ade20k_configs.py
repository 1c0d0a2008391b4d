"""The ADE20K configs resolve and build the models the docs describe.

Parameter counts use the real widths; forward passes use a narrow, shallow
backbone (``shrink``) so that 512x512 inputs stay cheap on a CPU.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

import mmvim  # noqa: F401  registers VisionMamba and the optimizer constructor

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'ade20k'


def load(name):
    cfg = Config.fromfile(CONFIGS / name)
    cfg.model.backbone.init_cfg = None  # no checkpoint download in CI
    return cfg


def build(model_cfg):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    return MODELS.build(model_cfg)


def shrink(cfg, width=32):
    """Same recipe, a 4-layer `width`-wide Vim and UperNet."""
    model = cfg.model
    model.backbone.arch = dict(embed_dims=width, num_layers=4)
    model.backbone.out_indices = (0, 1, 2, 3)
    model.neck.embed_dim = width
    model.decode_head.in_channels = [width] * 4
    model.decode_head.channels = width
    model.auxiliary_head.in_channels = width
    model.auxiliary_head.channels = width
    return cfg


def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    'name, paper_millions',
    [('upernet_vim_tiny.py', 13), ('upernet_vim_small.py', 46)])
def test_parameter_count_matches_the_paper(name, paper_millions):
    # The paper's table gives model sizes in millions (we count 12.3M and
    # 45.4M); mmseg's default 512-channel UperNet would make Vim-Ti 35.7M.
    millions = num_params(build(load(name).model)) / 1e6
    assert abs(millions - paper_millions) < 1, millions


def test_tiny_recipe():
    cfg = load('upernet_vim_tiny.py')
    # mmseg's own ADE20K data config, inherited through `mmseg::`.
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'ADE20KDataset'
    assert dataset.data_root == 'data/ade/ADEChallengeData2016'
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.tta_model.type == 'SegTTAModel' and cfg.tta_pipeline
    assert cfg.model.backbone.out_indices == (5, 11, 17, 23)
    assert cfg.model.test_cfg == dict(
        mode='slide', crop_size=(512, 512), stride=(341, 341))
    optim = cfg.optim_wrapper
    assert optim.constructor == 'VimLayerDecayOptimWrapperConstructor'
    assert optim.paramwise_cfg == dict(
        num_layers=24, layer_decay_rate=0.92, reference_name_bug=False)
    assert cfg.train_cfg.max_iters == 60000


def test_small_and_base_recipes():
    small, base = load('upernet_vim_small.py'), load('upernet_vim_base.py')
    assert small.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.95
    assert small.model.backbone.arch == 'small'
    assert small.model.decode_head.in_channels == [384] * 4
    assert base.model.backbone.arch == 'base'
    assert base.model.neck.embed_dim == 768
    assert base.model.auxiliary_head.in_channels == 768


@pytest.fixture(scope='module')
def small_tiny_segmentor():
    model = build(shrink(load('upernet_vim_tiny.py')).model)
    # What mmengine's Runner does without torch.distributed.
    return revert_sync_batchnorm(model).eval()


def test_forward_512(small_tiny_segmentor):
    with torch.no_grad():
        logits = small_tiny_segmentor(
            torch.rand(1, 3, 512, 512), mode='tensor')
    assert logits.shape == (1, 150, 128, 128)  # decode head: stride 4


def test_slide_inference_non_square(small_tiny_segmentor):
    from mmseg.structures import SegDataSample
    model = small_tiny_segmentor
    height, width = 512, 683
    crops = []
    encode_decode = model.encode_decode

    def record_crop(inputs, metas):
        crops.append(tuple(inputs.shape[-2:]))
        return encode_decode(inputs, metas)

    model.encode_decode = record_crop
    sample = SegDataSample(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            pad_shape=(height, width)))
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, height, width).long())
    with torch.no_grad():
        [result] = model.predict(torch.rand(1, 3, height, width), [sample])
    # 512-pixel windows every 341 pixels: one row, two columns.
    assert crops == [(512, 512), (512, 512)]
    assert result.pred_sem_seg.data.shape == (1, height, width)
    assert result.seg_logits.data.shape == (150, height, width)


def test_quickstart_trains_the_tiny_model_on_toy_data():
    cfg = Config.fromfile(CONFIGS / 'quickstart_upernet_vim_tiny_toy.py')
    tiny = load('upernet_vim_tiny.py')
    # Only the data (classes), the crop and the checkpoint differ.
    changed = dict(
        backbone=('img_size', 'init_cfg'),
        decode_head=('num_classes', ),
        auxiliary_head=('num_classes', ))
    for part in ('backbone', 'neck', 'decode_head', 'auxiliary_head'):
        ours, theirs = dict(cfg.model[part]), dict(tiny.model[part])
        for key in changed.get(part, ()):
            ours.pop(key), theirs.pop(key)
        assert ours == theirs, part
    assert cfg.model.backbone.init_cfg is None
    assert cfg.train_dataloader.dataset.data_root == 'data/toy_ade20k'
    assert len(cfg.train_dataloader.dataset.metainfo.classes) == 5
    # The Runner reverts SyncBN like this when it runs in one process.
    model = revert_sync_batchnorm(build(cfg.model))
    assert model.decode_head.num_classes == 5
    with torch.no_grad():
        logits = model.eval()(torch.rand(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 5, 16, 16)
