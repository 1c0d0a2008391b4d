"""Training pieces the library registers: the layer-decay optimizer
constructor. The tools' runtime (guards, runner set-up, checkpoint safety)
is in :mod:`mmvim.runtime`, which ``import mmvim`` does not load."""
from .optimizers import VimLayerDecayOptimWrapperConstructor

__all__ = ['VimLayerDecayOptimWrapperConstructor']
