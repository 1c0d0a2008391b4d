"""mmengine's whole-model loads of a Vim model refuse weights that do not
fit, from ``import mmvim`` on.

mmseg's ``init_model``, mmdet's ``init_detector``, mmengine's inferencers
and a Runner's ``load_from`` put a checkpoint into the whole model through
``mmengine.runner.checkpoint.load_state_dict`` with ``strict=False``: a head
of another shape or missing weights only log a warning, and the model then
runs with random weights there. mmengine has no registry for that step, so
:func:`use_fitting_model_loads` wraps that one function: when the module is
a whole model (an mmengine ``BaseModel``) holding a :class:`VisionMamba`,
weights that do not fit raise
:class:`~mmvim.models.utils.weights_fit.CheckpointMismatchError` naming the
keys. Every other load (a backbone's ``init_cfg``, models without Vim,
``strict=True``) stays mmengine's own.
"""
import functools

from mmengine.model import BaseModel
from mmengine.runner import checkpoint as mmengine_checkpoint

from .backbones import VisionMamba
from .utils.weights_fit import check_weights_fit, unwrapped_model


def holds_vision_mamba(module) -> bool:
    """Whether ``module`` is a whole model with a VisionMamba inside."""
    model = unwrapped_model(module)
    return isinstance(model, BaseModel) and any(
        isinstance(part, VisionMamba) for part in model.modules())


def use_fitting_model_loads() -> None:
    """Makes mmengine's lenient ``load_state_dict`` check that the weights
    fit a whole Vim model first (``import mmvim`` does, once)."""
    lenient = mmengine_checkpoint.load_state_dict
    if getattr(lenient, 'checks_vim_models', False):
        return

    @functools.wraps(lenient)
    def load_state_dict(module, state_dict, strict=False, logger=None):
        if not strict and holds_vision_mamba(module):
            check_weights_fit(module, state_dict)
        return lenient(module, state_dict, strict, logger)

    load_state_dict.checks_vim_models = True
    mmengine_checkpoint.load_state_dict = load_state_dict
