from .bimamba import BiMambaMixer
from .drop_path import DropPath
from .layer_norm_2d import LayerNorm2d
from .pos_embed import resize_pos_embed
from .rms_norm import RMSNorm
from .vim_block import VimBlock

__all__ = [
    'BiMambaMixer', 'DropPath', 'LayerNorm2d', 'RMSNorm', 'VimBlock',
    'resize_pos_embed'
]
