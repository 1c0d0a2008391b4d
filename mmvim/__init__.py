"""mmvim: Vision Mamba (Vim) for MMSegmentation and MMDetection.

Importing mmvim registers its models, ops and the layer-decay optimizer
constructor in mmengine's root registries, so ``type='VisionMamba'`` builds
from mmseg's, mmdet's or mmengine's MODELS, and registers weights-only
loaders of local and http(s) checkpoints in mmengine's ``CheckpointLoader``,
which also read mmengine's own checkpoints
(:mod:`mmvim.models.utils.mmengine_checkpoints`); mmengine's whole-model
loads of a model built around a VisionMamba (mmseg's ``init_model``, mmdet's
``init_detector``, ``load_from``) then refuse weights that do not fit
(:mod:`mmvim.models.model_loading`). It needs torch and
mmengine only; what the tools need around the Runner is in
:mod:`mmvim.runtime`, which is imported by the tools, not here.
"""
from . import engine, models, ops  # noqa: F401 - register the modules
from .models.model_loading import use_fitting_model_loads
from .models.utils.mmengine_checkpoints import use_safe_mmengine_loaders
from .version import __version__

use_safe_mmengine_loaders()
use_fitting_model_loads()

__all__ = ['__version__']
