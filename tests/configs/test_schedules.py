"""Both schedules inherit one AdamW layer-decay base and resolve to their
own recipe."""
import pytest


@pytest.mark.parametrize('path, lr, weight_decay, layer_decay', [
    ('ade20k/upernet_vim_tiny.py', 2e-4, 0.1, 0.92),
    ('coco/cascade_mask_rcnn_vim_tiny.py', 1e-4, 0.1, 0.837),
])
def test_each_recipe_resolves_to_its_full_optimizer(load_config, path, lr,
                                                    weight_decay,
                                                    layer_decay):
    cfg = load_config(path)
    assert cfg.optim_wrapper == dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamW', lr=lr, betas=(0.9, 0.999),
            weight_decay=weight_decay),
        constructor='VimLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(
            layer_decay_rate=layer_decay, reference_name_bug=False))
    assert (cfg.val_cfg, cfg.test_cfg) == (dict(type='ValLoop'),
                                           dict(type='TestLoop'))
