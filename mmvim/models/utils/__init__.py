from .checkpoint import load_checkpoint_state_dict

__all__ = ['load_checkpoint_state_dict']
