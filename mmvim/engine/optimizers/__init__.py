from .layer_decay_optim_wrapper_constructor import (
    VimLayerDecayOptimWrapperConstructor,
)

__all__ = ['VimLayerDecayOptimWrapperConstructor']
