"""mmvim: Vision Mamba (Vim) for MMSegmentation and MMDetection.

Importing mmvim registers its modules in mmengine's root registries, so
``type='VisionMamba'`` builds from mmseg's, mmdet's or mmengine's MODELS.
"""
from . import engine, models, ops  # noqa: F401 - register the modules
from .version import __version__

__all__ = ['__version__']
