"""Loading checkpoints into VisionMamba: checkpoint_filter_fn on its own, and
load_pretrained / init_cfg around it."""
import argparse

import pytest
import torch
from torch import nn

from mmvim.models import VisionMamba
from mmvim.models.backbones import checkpoint_filter_fn


def narrow(img_size, **kwargs):
    return VisionMamba(dict(embed_dims=16, num_layers=1), img_size=img_size,
                       **kwargs)


def released_file(source, save_checkpoint, **args):
    """``source``'s weights as the released Vim files hold them (a plain
    dict, ``args`` the training script's, e.g. ``input_size=224``)."""
    return save_checkpoint({
        'model': {**source.state_dict(),
                  'head.weight': torch.zeros(10, 16),
                  'head.bias': torch.zeros(10)},
        'args': argparse.Namespace(model='vim_tiny', lr=1e-3, **args),
        'epoch': 299}, 'released.pth')


def pretrained(checkpoint, img_size, **kwargs):
    model = narrow(img_size, init_cfg=dict(type='Pretrained',
                                           checkpoint=checkpoint), **kwargs)
    model.init_weights()
    return model


@pytest.mark.parametrize('img_size', [(576, 1024), (224, 400), (64, 160)])
def test_a_saved_model_loads_back_unchanged(img_size, save_checkpoint):
    """Non-square grids whose patch count is a square (36x64 = 48^2) or not:
    the checkpoint's pos_embed is for this model's grid, so it is copied,
    not resized from a grid guessed from its square root."""
    torch.manual_seed(0)
    source = narrow(img_size).eval()
    model = pretrained(save_checkpoint(source.state_dict()), img_size).eval()
    torch.testing.assert_close(model.pos_embed, source.pos_embed,
                               rtol=0, atol=0)
    x = torch.randn(1, 3, *img_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], source(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize('img_size,stride,grid', [((512, 512), 16, (32, 32)),
                                                  ((512, 1024), 16, (32, 64)),
                                                  ((512, 512), 8, (63, 63))])
def test_released_pos_embed_is_resized_keeping_the_class_row(
        save_checkpoint, img_size, stride, grid):
    source = narrow(224, stride=stride)
    src_side = source.patch_grid[0]
    target = pretrained(released_file(source, save_checkpoint), img_size,
                        stride=stride)
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


def test_pretrain_img_size_names_the_checkpoint_grid(save_checkpoint):
    source = narrow((96, 160))  # 6 x 10 grid
    # a plain dict: no _metadata saying the grid (older files, other code)
    path = save_checkpoint(dict(source.state_dict()))
    with pytest.raises(ValueError, match='pretrain_img_size'):
        pretrained(path, (128, 128))  # neither 8x8 nor the released 14x14
    model = pretrained(path, (128, 128), pretrain_img_size=(96, 160))
    expected = checkpoint_filter_fn(
        source.state_dict(),
        narrow((128, 128), pretrain_img_size=(96, 160)))['pos_embed']
    torch.testing.assert_close(model.pos_embed, expected)
    assert model.pos_embed.shape == (1, 8 * 8 + 1, 16)
    # An explicit size that does not fit the file is an error too.
    with pytest.raises(ValueError, match='fits none of the known grids'):
        pretrained(path, (128, 128), pretrain_img_size=224)


def test_a_grid_two_sizes_share_is_never_guessed(save_checkpoint):
    """7x28 (112x448) and the released 14x14 (224x224) both have 196
    patches: unless the file says its grid, that is an error naming
    pretrain_img_size, never the raw 14x14 table read as 7x28."""
    source = narrow(224)
    resized = pretrained(released_file(source, save_checkpoint), (112, 448),
                         pretrain_img_size=224).pos_embed
    # the released 14x14 table interpolated, not copied as it is
    assert not torch.equal(resized, source.pos_embed)
    with pytest.raises(ValueError, match='fits several grids .*7x28 for '
                       'img_size 112x448.*14x14.* Set the backbone.s '
                       'pretrain_img_size'):
        pretrained(released_file(source, save_checkpoint), (112, 448))
    # what the released files' args say settles it
    said = pretrained(released_file(source, save_checkpoint, input_size=224),
                      (112, 448))
    torch.testing.assert_close(said.pos_embed, resized, rtol=0, atol=0)
    # so does the grid mmvim writes into every VisionMamba state dict, also
    # under a prefix in a whole model's checkpoint
    own = source.state_dict()
    assert own._metadata['']['patch_grid'] == [14, 14]
    model = pretrained(save_checkpoint(own), (112, 448))
    torch.testing.assert_close(model.pos_embed, resized, rtol=0, atol=0)
    whole = {'state_dict': nn.ModuleDict({'backbone': source}).state_dict()}
    model = narrow((112, 448), init_cfg=dict(
        type='Pretrained', checkpoint=save_checkpoint(whole),
        prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.pos_embed, resized, rtol=0, atol=0)
    # a pretrain_img_size that contradicts the file is named
    with pytest.raises(ValueError, match='pretrain_img_size .* gives a 8x8 '
                       'grid but the grid the file states is 14x14'):
        pretrained(save_checkpoint(own), (112, 448), pretrain_img_size=128)


def test_filter_is_pure_and_does_what_it_says():
    source = narrow(224)
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state.update({'backbone.head.weight': torch.zeros(10, 16),
                  'neck.conv.weight': torch.zeros(3)})
    before = {k: v.clone() for k, v in state.items()}
    model = narrow(64, final_norm=False, with_cls_token=False)
    filtered = checkpoint_filter_fn(state, model, prefix='backbone')
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], before[k]) for k in state)
    # prefix stripped, neck and head dropped, norm_f dropped (no final norm)
    assert set(filtered) == set(source.state_dict()) - {'norm_f.weight'}
    # 14x14 + class token -> 4x4, class row dropped for a model without one
    assert filtered['pos_embed'].shape == (1, 16, 16)
    # cls_token remains: strict loading reports it as unexpected
    assert 'cls_token' in filtered


def test_a_file_without_class_token_loads_into_a_model_without_one(
        save_checkpoint):
    source = narrow(224, with_cls_token=False)
    model = pretrained(save_checkpoint(source.state_dict()), 64,
                       with_cls_token=False)
    assert model.pos_embed.shape == (1, 16, 16)


def test_loading_errors_list_the_problem(tiny_vim, save_checkpoint):
    model = tiny_vim()
    state = model.state_dict()
    wrong = tiny_vim(arch=dict(embed_dims=48, num_layers=3)).state_dict()
    with pytest.raises(ValueError, match='shape mismatch'):
        model.load_pretrained(save_checkpoint({'model': wrong}))
    partial = {k: v for k, v in state.items() if 'layers.2.' not in k}
    with pytest.raises(ValueError,
                       match=r'missing keys: layers\.2\.mixer\.A_b_log'):
        model.load_pretrained(save_checkpoint(partial))
    extra = {**state, 'layers.3.norm.weight': torch.ones(32)}
    with pytest.raises(ValueError, match='unexpected keys: layers.3'):
        model.load_pretrained(save_checkpoint(extra))
    not_a_checkpoint = save_checkpoint(None, 'notes.pth')
    with open(not_a_checkpoint, 'w') as file:
        file.write('hello')
    with pytest.raises(ValueError, match='could not be read'):
        model.load_pretrained(not_a_checkpoint)
    with pytest.raises(ValueError, match='holds no state dict'):
        model.load_pretrained(save_checkpoint([1, 2, 3]))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        model.load_pretrained(save_checkpoint(None) + '.missing')
    # Nothing was half-loaded by the failures above.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


class Payload:

    def __reduce__(self):
        return (print, ('pickle code ran', ))


def test_refuses_to_unpickle_arbitrary_objects(tiny_vim, save_checkpoint,
                                               capsys):
    path = save_checkpoint({'model': tiny_vim().state_dict(), 'x': Payload()})
    with pytest.raises(ValueError, match='weights_only'):
        tiny_vim().load_pretrained(path)
    assert 'pickle code ran' not in capsys.readouterr().out


def test_loads_mmengine_checkpoint_with_prefix(tiny_vim, save_checkpoint):
    source = tiny_vim()
    path = save_checkpoint({'state_dict': {f'backbone.{k}': v for k, v in
                                           source.state_dict().items()},
                            'meta': {}})
    model = tiny_vim(init_cfg=dict(type='Pretrained', checkpoint=path,
                                   prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.layers[1].mixer.A_b_log,
                               source.layers[1].mixer.A_b_log)


def test_mismatched_shapes_raise_even_through_a_lenient_loader(tiny_vim):
    """mmengine's loader (behind mmseg's init_model and mmdet's
    init_detector) uses strict=False and only warns; the backbone raises."""
    from mmengine.runner.checkpoint import load_state_dict

    class Segmentor(torch.nn.Module):

        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

    model = Segmentor(tiny_vim())
    state = {f'backbone.{k}': v.clone()
             for k, v in model.backbone.state_dict().items()}
    load_state_dict(model, state, strict=False)  # fits: loads
    state['backbone.layers.1.mixer.in_proj.weight'] = torch.zeros(3, 3)
    with pytest.raises(ValueError,
                       match=r'backbone\.layers\.1\.mixer\.in_proj\.weight'
                       r' \(3, 3\) vs'):
        load_state_dict(model, state, strict=False)
