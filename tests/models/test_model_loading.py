"""After ``import mmvim``, mmengine's whole-model loads (what mmseg's
init_model, mmdet's init_detector and the inferencers call) refuse weights
that do not fit a model built around a VisionMamba; other loads stay
mmengine's."""
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import load_checkpoint

import mmvim  # noqa: F401 - wraps mmengine's load_state_dict
from mmvim.models.utils.weights_fit import CheckpointMismatchError


class Classifier(BaseModel):
    """A whole mmengine model: a backbone and a linear head."""

    def __init__(self, backbone: torch.nn.Module, width: int, classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(width, classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.head(self.backbone(inputs)[-1].mean((2, 3)))


@pytest.fixture
def vim_classifier(tiny_vim):
    return lambda classes: Classifier(tiny_vim(), 32, classes)


def test_fitting_weights_load(vim_classifier, save_checkpoint):
    source, target = vim_classifier(5), vim_classifier(5)
    path = save_checkpoint({'state_dict': source.state_dict()})
    load_checkpoint(target, path, map_location='cpu')
    assert torch.equal(target.head.weight, source.head.weight)


def test_a_head_of_another_shape_is_refused(vim_classifier, save_checkpoint):
    path = save_checkpoint({'state_dict': vim_classifier(5).state_dict()})
    target = vim_classifier(150)
    before = target.head.weight.clone()
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(target, path, map_location='cpu')
    assert 'head.weight (5, 32) vs (150, 32)' in str(error.value)
    assert 'head.bias (5,) vs (150,)' in str(error.value)
    assert torch.equal(target.head.weight, before)  # nothing loaded


def test_missing_and_extra_weights_are_refused(vim_classifier,
                                               save_checkpoint):
    weights = vim_classifier(5).state_dict()
    weights.pop('head.bias')
    weights['neck.extra'] = torch.zeros(1)
    path = save_checkpoint({'state_dict': weights})
    with pytest.raises(CheckpointMismatchError,
                       match=r'1 weights missing: head\.bias; 1 weights the '
                       r'model does not have: neck\.extra'):
        load_checkpoint(vim_classifier(5), path, map_location='cpu')


def test_models_without_vim_and_backbones_stay_lenient(tiny_vim,
                                                      save_checkpoint):
    path = save_checkpoint(
        {'state_dict': Classifier(torch.nn.Identity(), 32, 5).state_dict()})
    plain = Classifier(torch.nn.Identity(), 32, 150)
    load_checkpoint(plain, path, map_location='cpu')  # mmengine warns only
    assert plain.head.weight.shape == (150, 32)
    # A bare backbone (what an init_cfg loads into) is not a whole model.
    source, backbone = tiny_vim(), tiny_vim()
    weights = source.state_dict()
    weights.pop('cls_token')
    load_checkpoint(backbone, save_checkpoint(weights, 'backbone.pth'),
                    map_location='cpu')
    assert torch.equal(backbone.pos_embed, source.pos_embed)
    assert not torch.equal(backbone.cls_token, source.cls_token)


def test_strict_loads_are_mmengine_own(vim_classifier, save_checkpoint):
    path = save_checkpoint({'state_dict': vim_classifier(5).state_dict()})
    with pytest.raises(RuntimeError, match='size mismatch'):
        load_checkpoint(vim_classifier(150), path, map_location='cpu',
                        strict=True)
