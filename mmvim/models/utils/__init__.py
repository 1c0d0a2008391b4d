from .checkpoint import (
    RELEASED_VIM_GLOBALS,
    UnreadableCheckpointError,
    load_checkpoint_state_dict,
    safe_torch_load,
)

__all__ = ['RELEASED_VIM_GLOBALS', 'UnreadableCheckpointError',
           'load_checkpoint_state_dict', 'safe_torch_load']
