import json
from pathlib import Path

import pytest
import torch

from mmvim.models import VisionMamba

DATA = Path(__file__).parents[2] / 'data'

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a GPU'))]


@pytest.mark.parametrize('device', DEVICES)
def test_matches_reference_features_and_gradients(golden, golden_vim,
                                                  relative_error, device):
    model = golden_vim(golden, out_type='cls_token').to(device)
    state = golden['state_dict']
    head = torch.nn.Linear(*state['head.weight'].shape[::-1]).to(device)
    head.load_state_dict({'weight': state['head.weight'],
                          'bias': state['head.bias']})
    (feature, ) = model(golden['input'].to(device))
    assert feature.shape == golden['feature'].shape
    assert relative_error(feature.cpu(), golden['feature']) < 1e-4
    logits = head(feature)
    assert relative_error(logits.cpu(), golden['logits']) < 1e-4
    logits.pow(2).mean().backward()
    params = {**dict(model.named_parameters()),
              **{f'head.{k}': v for k, v in head.named_parameters()}}
    assert golden['grads']
    for key, grad in golden['grads'].items():
        assert relative_error(params[key].grad.cpu(), grad) < 1e-3, key


def test_two_call_path_equals_fused_directions(golden, golden_vim):
    outs = [
        golden_vim(golden, out_type='cls_token',
                   fuse_directions=fuse)(golden['input'])[0]
        for fuse in (True, False)
    ]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def test_mixer_features_match_a_hand_computation(golden, golden_vim,
                                                 relative_error):
    """feature_source='mixer' returns mixer(norm(stream)) of each block; the
    streams it is computed from are checked against the reference's
    features, so the hand computation runs on the reference's numbers."""
    depth = golden['config']['depth']
    model = golden_vim(golden, out_indices=tuple(range(depth)),
                       feature_source='mixer', final_norm=False).eval()
    streams = golden_vim(golden, out_indices=tuple(range(depth)),
                         final_norm=False).eval()
    x = golden['input']
    with torch.no_grad():
        mixer_maps = model(x)
        stream_maps = streams(x)
        grid = model.grid_for(x.shape[-2:])
        cls_index = grid[0] * grid[1] // 2
        tokens = model.patch_embed(x).flatten(2).transpose(1, 2)
        stream = torch.cat([tokens[:, :cls_index],
                            model.cls_token.expand(len(x), -1, -1),
                            tokens[:, cls_index:]], dim=1) + model.pos_embed
        for i, layer in enumerate(model.layers):
            hidden = layer.mixer(layer.norm(stream))
            expected = torch.cat([hidden[:, :cls_index],
                                  hidden[:, cls_index + 1:]], dim=1)
            torch.testing.assert_close(
                mixer_maps[i].flatten(2).transpose(1, 2), expected,
                rtol=1e-5, atol=1e-6)
            stream = stream + hidden
            torch.testing.assert_close(
                stream_maps[i].flatten(2).transpose(1, 2),
                torch.cat([stream[:, :cls_index], stream[:, cls_index + 1:]],
                          dim=1), rtol=1e-5, atol=1e-6)
            # The two sources are different tensors.
            assert relative_error(mixer_maps[i], stream_maps[i]) > 0.1
        # The last stream, normalised at the class token, is the reference's
        # feature: the hand computation follows the reference model.
        norm_f = golden_vim(golden, out_type='cls_token').norm_f
        assert relative_error(norm_f(stream)[:, cls_index],
                              golden['feature']) < 1e-4


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_archs_have_the_released_parameter_shapes(arch):
    shapes = json.loads((DATA / 'vim_official_state_dict_shapes.json')
                        .read_text())[arch]
    model = VisionMamba(arch, img_size=224)
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = {k: v for k, v in shapes.items() if not k.startswith('head.')}
    assert own == expected


def test_tiny_parameter_count_without_head():
    model = VisionMamba('tiny')
    assert sum(p.numel() for p in model.parameters()) == 6_955_008


def test_reference_initialisation(tiny_vim):
    model = tiny_vim()
    mixer = model.layers[0].mixer
    states = torch.arange(1, 17.).log()
    for name in ('A_log', 'A_b_log'):
        torch.testing.assert_close(getattr(mixer, name)[3], states)
    assert (mixer.D == 1).all() and (mixer.D_b == 1).all()
    assert (mixer.dt_proj_b.bias == 0).all()
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert model.pos_embed.std() < 0.05 and model.pos_embed.abs().max() > 0


def test_featmap_outputs_are_contiguous_patch_maps(tiny_vim):
    model = tiny_vim(out_indices=(0, -1), final_norm=False)
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 6)] * 2
    assert all(o.is_contiguous() for o in outs)


def test_featmap_is_the_token_stream_in_raster_order(tiny_vim):
    model = tiny_vim(arch=dict(embed_dims=32, num_layers=1), final_norm=True)
    model.eval()
    captured = {}
    model.norm_f.register_forward_hook(
        lambda mod, inp, out: captured.setdefault('tokens', out))
    (featmap, ) = model(torch.randn(1, 3, 48, 64))  # 3 x 4 grid, cls at 6
    tokens = captured['tokens'][0]
    assert tokens.shape[0] == 13
    patches = torch.cat([tokens[:6], tokens[7:]])
    torch.testing.assert_close(featmap[0].flatten(1).T, patches)
    (cls_feature, ) = tiny_vim(arch=dict(embed_dims=32, num_layers=1),
                               out_type='cls_token').eval().requires_grad_(
                                   False)(torch.zeros(1, 3, 48, 64))
    assert cls_feature.shape == (1, 32)


def test_without_class_token_the_blocks_see_patches_only(tiny_vim):
    model = tiny_vim(with_cls_token=False, final_norm=False)
    lengths = []
    model.layers[0].mixer.register_forward_hook(
        lambda mod, inp, out: lengths.append(inp[0].shape[1]))
    (featmap, ) = model(torch.randn(1, 3, 64, 64))
    assert lengths == [16] and featmap.shape == (1, 32, 4, 4)
    assert not hasattr(model, 'cls_token')
    assert model.pos_embed.shape == (1, 16, 32)


def test_pos_embed_is_unchanged_for_the_trained_grid(tiny_vim):
    model = tiny_vim()
    assert model._pos_embed_for(model.patch_grid) is model.pos_embed


def test_run_time_resize_for_other_inputs(tiny_vim):
    model = tiny_vim(img_size=64)  # 4 x 4 grid
    pos = model._pos_embed_for((2, 8))
    assert pos.shape == (1, 17, 32)
    torch.testing.assert_close(pos[:, 8], model.pos_embed[:, 8])
    assert model(torch.randn(1, 3, 32, 128))[0].shape == (1, 32, 2, 8)


def test_without_final_norm_every_parameter_gets_a_gradient(
        tiny_vim, save_checkpoint):
    source = tiny_vim(out_type='cls_token')
    model = tiny_vim(out_indices=(1, 2), final_norm=False)
    assert not hasattr(model, 'norm_f')
    # A released file's norm_f is not an error, just unused.
    model.load_pretrained(save_checkpoint({'model': source.state_dict()}))
    sum(out.sum() for out in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_inputs_are_clear_errors(tiny_vim):
    model = tiny_vim()
    with pytest.raises(ValueError, match='smaller than one 16x16 patch'):
        model(torch.randn(1, 3, 8, 64))
    with pytest.raises(ValueError, match=r'expects \(B, 3, H, W\)'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match='empty batch'):
        model(torch.randn(0, 3, 64, 64))
    with pytest.raises(ValueError, match='out of range'):
        tiny_vim(out_indices=5)
    with pytest.raises(ValueError, match='Unknown arch'):
        VisionMamba('huge')


@pytest.mark.parametrize('kwargs, message', [
    (dict(d_state=0), 'd_state must be a positive integer'),
    (dict(stride=0), 'stride must be a positive integer'),
    (dict(patch_size=0), 'patch_size must be a positive integer'),
    (dict(in_channels=0), 'in_channels must be a positive integer'),
    (dict(arch=dict(embed_dims=0, num_layers=2)),
     'embed_dims must be a positive integer'),
    (dict(arch=dict(embed_dims=8, num_layers=0)),
     'num_layers must be a positive integer'),
    (dict(arch=dict(embed_dims=8)), 'needs embed_dims and num_layers'),
    (dict(drop_path_rate=1.0), 'drop_path_rate must be in'),
    (dict(out_type='tokens'), 'out_type must be one of'),
    (dict(feature_source='norm'), 'feature_source must be one of'),
    (dict(interpolate_mode='cubic'), 'interpolate_mode must be one of'),
    (dict(feature_source='mixer'), 'set final_norm=False'),
    (dict(out_type='cls_token', with_cls_token=False),
     'needs with_cls_token=True'),
    (dict(img_size=8), 'smaller than one 16x16 patch'),
])
def test_bad_arguments_name_the_argument(tiny_vim, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_vim(**kwargs)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_weights_run_on_a_float32_stream(
        golden, golden_vim, relative_error, dtype):
    """model.half() / .bfloat16(): the mixers run in that dtype, the residual
    stream stays float32, features come back in the weights' dtype."""
    model = golden_vim(golden, out_type='cls_token').eval()
    with torch.no_grad():
        (expected, ) = model(golden['input'])
        (feature, ) = model.to(dtype)(golden['input'])
        (from_low, ) = model(golden['input'].to(dtype))
    assert feature.dtype == dtype and torch.isfinite(feature).all()
    assert relative_error(feature.float(), expected) < 5e-2
    torch.testing.assert_close(from_low, feature)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_training_step_is_finite_on_the_golden_model(
        golden, golden_vim, relative_error, dtype):
    model = golden_vim(golden, out_type='cls_token')
    with torch.autocast('cpu', dtype=dtype):
        (feature, ) = model(golden['input'])
        loss = feature.float().pow(2).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert relative_error(feature.float(), golden['feature']) < 5e-2


def test_gradient_checkpointing_gives_the_same_gradients(tiny_vim):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 48)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(1)
        model = tiny_vim(with_cp=with_cp, feature_source='mixer',
                         final_norm=False, out_indices=(1, 2))
        model.train()
        sum(out.pow(2).mean() for out in model(x)).backward()
        grads.append(model.layers[0].mixer.in_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_declares_its_decay_free_parameters_and_depths(tiny_vim):
    model = tiny_vim()
    no_decay = model.no_weight_decay()
    params = dict(model.named_parameters())
    assert no_decay <= params.keys()
    assert {'pos_embed', 'cls_token', 'layers.2.mixer.A_log',
            'layers.2.mixer.A_b_log', 'layers.0.mixer.D',
            'layers.0.mixer.D_b'} <= no_decay
    assert not any('proj' in name for name in no_decay)
    assert 'cls_token' not in tiny_vim(with_cls_token=False).no_weight_decay()
    depth = {name: model.get_layer_depth(f'backbone.{name}', 'backbone.')
             for name in params}
    assert depth['patch_embed.proj.weight'] == (0, 5)
    assert depth['pos_embed'] == depth['cls_token'] == (0, 5)
    assert depth['layers.0.mixer.in_proj.weight'] == (1, 5)
    assert depth['layers.2.norm.weight'] == (3, 5)
    assert depth['norm_f.weight'] == (4, 5)
    assert model.get_layer_depth('decode_head.conv_seg.weight',
                                 'backbone.') == (4, 5)


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet', 'mmengine'])
def test_builds_from_openmmlab_registries(scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='VisionMamba',
                                arch=dict(embed_dims=16, num_layers=1)))
    assert isinstance(model, VisionMamba)
