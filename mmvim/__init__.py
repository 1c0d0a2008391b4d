"""mmvim: Vision Mamba (Vim) for MMSegmentation and MMDetection.

Importing mmvim registers its models, ops and the layer-decay optimizer
constructor in mmengine's root registries, so ``type='VisionMamba'`` builds
from mmseg's, mmdet's or mmengine's MODELS, and registers weights-only
loaders of local and http(s) checkpoints in mmengine's ``CheckpointLoader``,
which also read mmengine's own checkpoints
(:mod:`mmvim.models.utils.mmengine_checkpoints`). It needs torch and
mmengine only; what the tools need around the Runner is in
:mod:`mmvim.runtime`, which is imported by the tools, not here.
"""
from . import engine, models, ops  # noqa: F401 - register the modules
from .models.utils.mmengine_checkpoints import use_safe_mmengine_loaders
from .version import __version__

use_safe_mmengine_loaders()

__all__ = ['__version__']
