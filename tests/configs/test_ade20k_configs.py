"""The ADE20K configs resolve and build the models the docs describe.

Parameter counts use the real widths; forward passes use a narrow, shallow
backbone (``shrink``) so that 512x512 inputs stay cheap on a CPU.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.structures import PixelData

import mmvim  # noqa: F401  registers VisionMamba and the optimizer constructor

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'ade20k'


@pytest.fixture(scope='session')
def load(load_config):
    """An ADE20K config by file name, as CI reads it."""
    return lambda name: load_config(f'ade20k/{name}')


@pytest.fixture(scope='session')
def build(build_model):
    return lambda model_cfg: build_model(model_cfg, 'mmseg')


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
def test_parameter_count_matches_the_paper(name, paper_millions, load,
                                            build):
    # The paper's table gives model sizes in millions (we count 12.3M and
    # 45.4M); mmseg's default 512-channel UperNet would make Vim-Ti 35.7M.
    millions = num_params(build(load(name).model)) / 1e6
    assert abs(millions - paper_millions) < 1, millions


def test_tiny_recipe(load):
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
    # The depth is the model's; a config does not restate it.
    assert optim.paramwise_cfg == dict(
        layer_decay_rate=0.92, reference_name_bug=False)
    assert cfg.train_cfg.max_iters == 60000


@pytest.mark.parametrize('name, arch, width, lr, weight_decay, layer_decay', [
    ('upernet_vim_tiny.py', 'tiny', 192, 2e-4, 0.1, 0.92),
    ('upernet_vim_small.py', 'small', 384, 1e-4, 0.05, 0.95),
    ('upernet_vim_base.py', 'base', 768, 1e-4, 0.05, 0.95),
])
def test_each_size_has_its_width_and_recipe(name, arch, width, lr,
                                            weight_decay, layer_decay, load):
    cfg = load(name)
    assert cfg.model.backbone.arch == arch
    assert cfg.model.neck.embed_dim == width
    assert cfg.model.decode_head.in_channels == [width] * 4
    assert cfg.model.decode_head.channels == width
    assert cfg.model.auxiliary_head.in_channels == width
    optim = cfg.optim_wrapper
    assert (optim.optimizer.lr, optim.optimizer.weight_decay,
            optim.paramwise_cfg.layer_decay_rate) == (lr, weight_decay,
                                                      layer_decay)


@pytest.mark.parametrize('name', ['upernet_vim_small.py',
                                  'upernet_vim_base.py'])
def test_small_and_base_inherit_the_tiny_structure_and_state_their_recipe(
        name):
    """Each larger config derives from tiny's (not from another size) and
    writes its own lr, weight decay and layer decay."""
    source = (CONFIGS / name).read_text()
    assert "_base_ = ['./upernet_vim_tiny.py']" in source
    for value in ('lr=', 'weight_decay=', 'layer_decay_rate='):
        assert value in source, value


@pytest.fixture(scope='module')
def small_tiny_segmentor(load, build):
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


def test_quickstart_trains_the_tiny_model_on_toy_data(load, build):
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


# The reference run's side of each deliberate deviation (docs/segmentation.md).
REFERENCE_SIDE = {
    'optim_wrapper.paramwise_cfg.reference_name_bug': True,
    'model.backbone.with_cls_token': False,
    'model.backbone.feature_source': 'mixer',
}


def test_reference_switches_each_change_what_they_should(load, build):
    from mmengine.optim import build_optim_wrapper
    ours = shrink(load('upernet_vim_tiny.py'))
    reference = shrink(load('upernet_vim_tiny.py'))
    reference.merge_from_dict(REFERENCE_SIDE)
    built = {}
    for side, cfg in (('ours', ours), ('reference', reference)):
        torch.manual_seed(0)
        model = revert_sync_batchnorm(build(cfg.model)).eval()
        seen = {}
        model.backbone.layers[0].mixer.register_forward_hook(
            lambda mod, inp, out: seen.update(length=inp[0].shape[1]))
        model.backbone.layers[2].mixer.register_forward_hook(
            lambda mod, inp, out: seen.update(mixer=out))
        model.backbone.layers[2].register_forward_hook(
            lambda mod, inp, out: seen.update(stream=out[0]))
        with torch.no_grad():
            features = model.backbone(torch.rand(1, 3, 64, 64))
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        scales = {}
        for group in wrapper.optimizer.param_groups:
            for param in group['params']:
                scales[id(param)] = (group['lr'], group['weight_decay'])
        names = {name: scales[id(p)] for name, p in model.named_parameters()}
        built[side] = dict(seen=seen, features=features, groups=names)

    # Parameter groups: the reference trained every layer at the full lr and
    # put weight decay on pos_embed.
    layer0 = 'backbone.layers.0.mixer.in_proj.weight'
    head = 'decode_head.conv_seg.weight'
    assert built['ours']['groups'][layer0][0] < \
        built['ours']['groups'][head][0]
    assert built['reference']['groups'][layer0][0] == \
        built['reference']['groups'][head][0]
    assert built['ours']['groups']['backbone.pos_embed'][1] == 0
    assert built['reference']['groups']['backbone.pos_embed'][1] > 0
    # Sequence length: 16 patches of a 64x64 crop, plus our class token.
    assert built['ours']['seen']['length'] == 17
    assert built['reference']['seen']['length'] == 16
    # Which tensor: the stream after block 2 for us, its mixer output for
    # the reference (patch tokens only, in raster order).
    for side, source in (('ours', 'stream'), ('reference', 'mixer')):
        tokens = built[side]['seen'][source][0]
        if side == 'ours':
            tokens = torch.cat([tokens[:8], tokens[9:]])
        torch.testing.assert_close(
            built[side]['features'][2][0].flatten(1).T, tokens)


def test_heads_share_their_common_part(load):
    cfg = load('upernet_vim_tiny.py')
    for head, loss_weight in ((cfg.model.decode_head, 1.0),
                              (cfg.model.auxiliary_head, 0.4)):
        assert (head.dropout_ratio, head.num_classes, head.norm_cfg,
                head.align_corners) == (0.1, 150, dict(
                    type='SyncBN', requires_grad=True), False)
        assert head.loss_decode == dict(
            type='CrossEntropyLoss', use_sigmoid=False,
            loss_weight=loss_weight)


def test_quickstart_shortens_the_schedule_and_scales_the_pipelines():
    cfg = Config.fromfile(CONFIGS / 'quickstart_upernet_vim_tiny_toy.py')
    assert cfg.randomness == dict(seed=0)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
             end=30),
        dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0,
             end=300),
    ]
    steps = {step.type: step for step in cfg.train_pipeline}
    assert steps['RandomResize'].scale == (256, 64)
    assert steps['RandomResize'].ratio_range == (0.75, 1.5)
    assert steps['RandomCrop'].crop_size == (64, 64)
    test_steps = {step.type: step for step in cfg.test_pipeline}
    assert test_steps['Resize'].scale == (256, 64)
    assert cfg.val_dataloader.dataset.pipeline == cfg.test_pipeline
    assert cfg.train_dataloader.dataset.pipeline == cfg.train_pipeline
