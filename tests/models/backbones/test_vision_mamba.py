import argparse
import json
from pathlib import Path

import pytest
import torch

from mmvim.models import VisionMamba

DATA = Path(__file__).parents[2] / 'data'
GOLDEN = ['vim_ref_d4_e64_s16.pth', 'vim_ref_d2_e64_s8.pth']


def tiny(**kwargs):
    kwargs.setdefault('arch', dict(embed_dims=32, num_layers=3))
    kwargs.setdefault('img_size', 64)
    return VisionMamba(**kwargs)


def golden_model(golden, **kwargs):
    cfg = golden['config']
    return VisionMamba(
        arch=dict(embed_dims=cfg['embed_dim'], num_layers=cfg['depth']),
        img_size=cfg['img_size'], patch_size=cfg['patch_size'],
        stride=cfg['stride'], d_state=cfg['d_state'], **kwargs)


def relative_error(actual, expected):
    return ((actual - expected).norm() / expected.norm()).item()


DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a GPU'))]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', GOLDEN)
def test_matches_reference_features_and_gradients(name, device):
    golden = torch.load(DATA / name, map_location=device, weights_only=True)
    model = golden_model(golden, out_type='cls_token').to(device)
    state = golden['state_dict']
    model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith('head.')},
        strict=True)
    head = torch.nn.Linear(*state['head.weight'].shape[::-1]).to(device)
    head.load_state_dict({'weight': state['head.weight'],
                          'bias': state['head.bias']})
    (feature, ) = model(golden['input'])
    assert feature.shape == golden['feature'].shape
    assert relative_error(feature, golden['feature']) < 1e-4
    logits = head(feature)
    assert relative_error(logits, golden['logits']) < 1e-4
    logits.pow(2).mean().backward()
    params = {**dict(model.named_parameters()),
              **{f'head.{k}': v for k, v in head.named_parameters()}}
    assert golden['grads']
    for key, grad in golden['grads'].items():
        assert relative_error(params[key].grad, grad) < 1e-3, key


@pytest.mark.parametrize('name', GOLDEN)
def test_two_call_path_equals_fused_directions(name):
    golden = torch.load(DATA / name, weights_only=True)
    state = {k: v for k, v in golden['state_dict'].items()
             if not k.startswith('head.')}
    outs = []
    for fuse in (True, False):
        model = golden_model(golden, out_type='cls_token',
                             fuse_directions=fuse)
        model.load_state_dict(state)
        outs.append(model(golden['input'])[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


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


def test_reference_initialisation():
    model = tiny()
    mixer = model.layers[0].mixer
    states = torch.arange(1, 17.).log()
    for name in ('A_log', 'A_b_log'):
        torch.testing.assert_close(getattr(mixer, name)[3], states)
    assert (mixer.D == 1).all() and (mixer.D_b == 1).all()
    assert (mixer.dt_proj_b.bias == 0).all()
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert model.pos_embed.std() < 0.05 and model.pos_embed.abs().max() > 0


def test_featmap_outputs_are_contiguous_patch_maps():
    model = tiny(out_indices=(0, -1), final_norm=False)
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 6)] * 2
    assert all(o.is_contiguous() for o in outs)


def test_featmap_is_the_token_stream_in_raster_order():
    model = tiny(arch=dict(embed_dims=32, num_layers=1), final_norm=True)
    model.eval()
    captured = {}
    model.norm_f.register_forward_hook(
        lambda mod, inp, out: captured.setdefault('tokens', out))
    (featmap, ) = model(torch.randn(1, 3, 48, 64))  # 3 x 4 grid, cls at 6
    tokens = captured['tokens'][0]
    assert tokens.shape[0] == 13
    patches = torch.cat([tokens[:6], tokens[7:]])
    torch.testing.assert_close(featmap[0].flatten(1).T, patches)
    (cls_feature, ) = tiny(arch=dict(embed_dims=32, num_layers=1),
                           out_type='cls_token').eval().requires_grad_(False)(
                               torch.zeros(1, 3, 48, 64))
    assert cls_feature.shape == (1, 32)


def test_pos_embed_is_unchanged_for_the_trained_grid():
    model = tiny()
    assert model._pos_embed_for(model.patch_grid) is model.pos_embed


@pytest.mark.parametrize('img_size,stride,grid', [((512, 512), 16, (32, 32)),
                                                  ((512, 1024), 16, (32, 64)),
                                                  ((512, 512), 8, (63, 63))])
def test_pretrained_pos_embed_is_resized_keeping_the_class_row(
        tmp_path, img_size, stride, grid):
    source = VisionMamba(dict(embed_dims=16, num_layers=1), img_size=224,
                         stride=stride)
    src_side = source.patch_grid[0]
    checkpoint = tmp_path / 'released.pth'
    torch.save({'model': {**source.state_dict(),
                          'head.weight': torch.zeros(10, 16),
                          'head.bias': torch.zeros(10)},
                'args': argparse.Namespace(model='vim_tiny', lr=1e-3),
                'epoch': 299}, checkpoint)
    target = VisionMamba(dict(embed_dims=16, num_layers=1), img_size=img_size,
                         stride=stride,
                         init_cfg=dict(type='Pretrained',
                                       checkpoint=str(checkpoint)))
    target.init_weights()
    assert target.patch_grid == grid
    assert target.pos_embed.shape == (1, grid[0] * grid[1] + 1, 16)
    src_cls = source.pos_embed[0, src_side * src_side // 2]
    torch.testing.assert_close(target.pos_embed[0, grid[0] * grid[1] // 2],
                               src_cls)
    # Corners of a bicubic resize with align_corners=False stay close to the
    # source corners; a misplaced class row would break this.
    assert torch.allclose(target.pos_embed[0, 0], source.pos_embed[0, 0],
                          atol=0.02)
    torch.testing.assert_close(target.cls_token, source.cls_token)
    (out, ) = target(torch.randn(1, 3, *img_size))
    assert out.shape == (1, 16, *grid)


def test_without_final_norm_every_parameter_gets_a_gradient(tmp_path):
    source = tiny(out_type='cls_token')
    model = tiny(out_indices=(1, 2), final_norm=False)
    assert not hasattr(model, 'norm_f')
    # A released file's norm_f is not an error, just unused.
    model.load_pretrained(save(tmp_path, {'model': source.state_dict()}))
    sum(out.sum() for out in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_run_time_resize_for_other_inputs():
    model = tiny(img_size=64)  # 4 x 4 grid
    pos = model._pos_embed_for((2, 8))
    assert pos.shape == (1, 17, 32)
    torch.testing.assert_close(pos[:, 8], model.pos_embed[:, 8])
    assert model(torch.randn(1, 3, 32, 128))[0].shape == (1, 32, 2, 8)


def test_bad_inputs_are_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match='smaller than one 16x16 patch'):
        model(torch.randn(1, 3, 8, 64))
    with pytest.raises(ValueError, match=r'expects \(B, 3, H, W\)'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match='out of range'):
        tiny(out_indices=5)
    with pytest.raises(ValueError, match='Unknown arch'):
        VisionMamba('huge')


def save(tmp_path, obj, name='ckpt.pth'):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def test_loading_errors_list_the_problem(tmp_path):
    model = tiny()
    state = model.state_dict()
    wrong = tiny(arch=dict(embed_dims=48, num_layers=3)).state_dict()
    with pytest.raises(ValueError, match='shape mismatch'):
        model.load_pretrained(save(tmp_path, {'model': wrong}))
    partial = {k: v for k, v in state.items() if 'layers.2.' not in k}
    with pytest.raises(ValueError,
                       match=r'missing keys: layers\.2\.mixer\.A_b_log'):
        model.load_pretrained(save(tmp_path, partial))
    extra = {**state, 'layers.3.norm.weight': torch.ones(32)}
    with pytest.raises(ValueError, match='unexpected keys: layers.3'):
        model.load_pretrained(save(tmp_path, extra))
    not_a_checkpoint = tmp_path / 'notes.pth'
    not_a_checkpoint.write_text('hello')
    with pytest.raises(ValueError, match='could not be read'):
        model.load_pretrained(str(not_a_checkpoint))
    with pytest.raises(ValueError, match='holds no state dict'):
        model.load_pretrained(save(tmp_path, [1, 2, 3]))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        model.load_pretrained(str(tmp_path / 'missing.pth'))
    # Nothing was half-loaded by the failures above.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


class Payload:

    def __reduce__(self):
        return (print, ('pickle code ran', ))


def test_refuses_to_unpickle_arbitrary_objects(tmp_path, capsys):
    path = save(tmp_path, {'model': tiny().state_dict(), 'x': Payload()})
    with pytest.raises(ValueError, match='weights_only'):
        tiny().load_pretrained(path)
    assert 'pickle code ran' not in capsys.readouterr().out


def test_loads_mmengine_checkpoint_with_prefix(tmp_path):
    source = tiny()
    path = save(tmp_path, {'state_dict': {f'backbone.{k}': v for k, v in
                                          source.state_dict().items()},
                           'meta': {}})
    model = tiny(init_cfg=dict(type='Pretrained', checkpoint=path,
                               prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.layers[1].mixer.A_b_log,
                               source.layers[1].mixer.A_b_log)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 48)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(1)
        model = tiny(with_cp=with_cp)
        model.train()
        model(x)[0].pow(2).mean().backward()
        grads.append(model.layers[0].mixer.in_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet', 'mmengine'])
def test_builds_from_openmmlab_registries(scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='VisionMamba',
                                arch=dict(embed_dims=16, num_layers=1)))
    assert isinstance(model, VisionMamba)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_training_step_is_finite_on_the_golden_model(dtype):
    golden = torch.load(DATA / GOLDEN[0], weights_only=True)
    model = golden_model(golden, out_type='cls_token')
    model.load_state_dict({k: v for k, v in golden['state_dict'].items()
                           if not k.startswith('head.')})
    with torch.autocast('cpu', dtype=dtype):
        (feature, ) = model(golden['input'])
        loss = feature.float().pow(2).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert relative_error(feature.float(), golden['feature']) < 5e-2
