"""Layer-wise lr decay and weight-decay exemptions of the Vim constructor."""
from importlib import import_module

import pytest
import torch
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, DefaultScope

import mmvim  # noqa: F401  registers the constructor
from mmvim.models.backbones import VisionMamba

BASE_LR, BASE_WD, DECAY, DEPTH = 1e-4, 0.05, 0.92, 24


class TinySegmentor(nn.Module):
    """A 24-layer VisionMamba, narrow so that building it is instant, under
    a head with the parameter kinds heads have."""

    def __init__(self, depth=DEPTH, **backbone):
        super().__init__()
        self.backbone = VisionMamba(
            arch=dict(embed_dims=8, num_layers=depth), img_size=32,
            **backbone)
        self.decode_head = nn.Module()
        self.decode_head.conv_seg = nn.Conv2d(4, 3, 1)
        self.decode_head.bn = nn.BatchNorm2d(4)
        self.decode_head.frozen = nn.Parameter(
            torch.zeros(2, 2), requires_grad=False)


def build_groups(scope='mmengine', model=None, **paramwise):
    """Returns {parameter name: (lr scale, weight decay)}."""
    registry = import_module(f'{scope}.registry').OPTIM_WRAPPER_CONSTRUCTORS
    model = model or TinySegmentor()
    with DefaultScope.overwrite_default_scope(scope):
        constructor = registry.build(
            dict(
                type='VimLayerDecayOptimWrapperConstructor',
                optim_wrapper_cfg=dict(
                    type='OptimWrapper',
                    optimizer=dict(
                        type='AdamW', lr=BASE_LR, weight_decay=BASE_WD)),
                paramwise_cfg=dict(layer_decay_rate=DECAY, **paramwise)))
    optimizer = constructor(model).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            assert names[id(param)] not in groups, 'parameter in two groups'
            groups[names[id(param)]] = (group['lr'] / BASE_LR,
                                        group['weight_decay'])
    return groups


def depth_scale(depth):
    return DECAY**(DEPTH + 1 - depth)


@pytest.mark.parametrize('scope', ['mmengine', 'mmseg', 'mmdet'])
def test_found_from_every_scope(scope):
    assert build_groups(scope)['backbone.layers.0.mixer.in_proj.weight'][
        0] == pytest.approx(depth_scale(1))


def test_lr_scale_and_weight_decay():
    groups = build_groups()
    expected = {
        'backbone.patch_embed.proj.weight': (depth_scale(0), BASE_WD),
        'backbone.patch_embed.proj.bias': (depth_scale(0), 0.),
        'backbone.pos_embed': (depth_scale(0), 0.),
        'backbone.cls_token': (depth_scale(0), 0.),
        'backbone.layers.0.mixer.in_proj.weight': (depth_scale(1), BASE_WD),
        'backbone.layers.0.norm.weight': (depth_scale(1), 0.),
        'backbone.layers.5.mixer.A_log': (depth_scale(6), 0.),
        'backbone.layers.5.mixer.A_b_log': (depth_scale(6), 0.),
        'backbone.layers.5.mixer.D': (depth_scale(6), 0.),
        'backbone.layers.5.mixer.D_b': (depth_scale(6), 0.),
        'backbone.layers.5.mixer.dt_proj_b.bias': (depth_scale(6), 0.),
        'backbone.layers.23.mixer.out_proj.weight': (DECAY, BASE_WD),
        'backbone.norm_f.weight': (1., 0.),
        'decode_head.conv_seg.weight': (1., BASE_WD),
        'decode_head.conv_seg.bias': (1., 0.),
        'decode_head.bn.weight': (1., 0.),
    }
    for name, (scale, weight_decay) in expected.items():
        assert groups[name] == (pytest.approx(scale), weight_decay), name
    # layers.0 learns DECAY**23 times slower than layers.23
    assert groups['backbone.layers.0.mixer.in_proj.weight'][0] / groups[
        'backbone.layers.23.mixer.in_proj.weight'][0] == pytest.approx(
            DECAY**23)
    assert 'decode_head.frozen' not in groups
    assert len(groups) == sum(
        p.requires_grad for p in TinySegmentor().parameters())


def test_reference_name_bug_reproduced():
    groups = build_groups(reference_name_bug=True)
    # every Mamba layer at the full lr, as in the reference runs
    for layer in (0, 11, 23):
        assert groups[f'backbone.layers.{layer}.mixer.in_proj.weight'] == (
            pytest.approx(1.), BASE_WD)
    # the embeddings are still slowed down, but now take weight decay
    assert groups['backbone.pos_embed'] == (
        pytest.approx(depth_scale(0)), BASE_WD)
    assert groups['backbone.cls_token'][1] == BASE_WD
    assert groups['backbone.layers.5.mixer.A_log'] == (pytest.approx(1.),
                                                       BASE_WD)
    # 1-D parameters and biases were exempt in the reference too
    assert groups['backbone.layers.5.mixer.D_b'][1] == 0.
    assert groups['backbone.layers.5.norm.weight'][1] == 0.


def test_decay_rate_required():
    with pytest.raises(ValueError, match='layer_decay_rate'):
        OPTIM_WRAPPER_CONSTRUCTORS.build(
            dict(
                type='VimLayerDecayOptimWrapperConstructor',
                optim_wrapper_cfg=dict(optimizer=dict(type='AdamW'))))


def test_depth_is_read_from_the_model():
    groups = build_groups(model=TinySegmentor(depth=6))
    assert groups['backbone.layers.0.mixer.in_proj.weight'][0] == \
        pytest.approx(DECAY**6)
    assert groups['backbone.layers.5.mixer.in_proj.weight'][0] == \
        pytest.approx(DECAY)
    assert groups['backbone.pos_embed'][0] == pytest.approx(DECAY**7)
    # Restating the right depth is accepted, a wrong one is an error.
    assert build_groups(model=TinySegmentor(depth=6), num_layers=6) == groups
    with pytest.raises(ValueError, match='num_layers=24 but the model'):
        build_groups(model=TinySegmentor(depth=6), num_layers=24)


def test_decay_free_parameters_come_from_the_model():
    model = TinySegmentor(with_cls_token=False)
    model.backbone.no_weight_decay = lambda: {'layers.3.mixer.in_proj.weight'}
    groups = build_groups(model=model)
    assert groups['backbone.layers.3.mixer.in_proj.weight'][1] == 0.
    assert groups['backbone.layers.4.mixer.in_proj.weight'][1] == BASE_WD
    # Still exempt: what the blocks declare, 1-D parameters and biases.
    assert groups['backbone.layers.3.mixer.A_log'][1] == 0.
    # pos_embed is no longer declared: it decays like any matrix.
    assert groups['backbone.pos_embed'][1] == BASE_WD


def test_needs_exactly_one_backbone_that_declares_its_depths():
    with pytest.raises(ValueError, match='found 0'):
        build_groups(model=nn.Sequential(nn.Linear(2, 2)))
    model = TinySegmentor()
    model.decode_head.second = VisionMamba(arch=dict(embed_dims=8,
                                                     num_layers=1))
    with pytest.raises(ValueError, match='found 2'):
        build_groups(model=model)
