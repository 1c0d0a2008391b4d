"""Layer-wise lr decay and weight-decay exemptions of the Vim constructor."""
from importlib import import_module

import pytest
import torch
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, DefaultScope

import mmvim.engine  # noqa: F401  registers the constructor
from mmvim.models.backbones import VisionMamba

BASE_LR, BASE_WD, DECAY, DEPTH = 1e-4, 0.05, 0.92, 24


class TinySegmentor(nn.Module):
    """A 24-layer VisionMamba, narrow so that building it is instant, under
    a head with the parameter kinds heads have."""

    def __init__(self):
        super().__init__()
        self.backbone = VisionMamba(
            arch=dict(embed_dims=8, num_layers=DEPTH), img_size=32)
        self.decode_head = nn.Module()
        self.decode_head.conv_seg = nn.Conv2d(4, 3, 1)
        self.decode_head.bn = nn.BatchNorm2d(4)
        self.decode_head.frozen = nn.Parameter(
            torch.zeros(2, 2), requires_grad=False)


def build_groups(scope='mmengine', **paramwise):
    """Returns {parameter name: (lr scale, weight decay)}."""
    registry = import_module(f'{scope}.registry').OPTIM_WRAPPER_CONSTRUCTORS
    model = TinySegmentor()
    with DefaultScope.overwrite_default_scope(scope):
        constructor = registry.build(
            dict(
                type='VimLayerDecayOptimWrapperConstructor',
                optim_wrapper_cfg=dict(
                    type='OptimWrapper',
                    optimizer=dict(
                        type='AdamW', lr=BASE_LR, weight_decay=BASE_WD)),
                paramwise_cfg=dict(
                    num_layers=DEPTH, layer_decay_rate=DECAY, **paramwise)))
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
