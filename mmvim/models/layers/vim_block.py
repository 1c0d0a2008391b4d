from typing import Set, Tuple

import torch
from torch import nn

from .bimamba import DIRECTIONS, BiMambaMixer
from .drop_path import DropPath
from .rms_norm import RMSNorm


class VimBlock(nn.Module):
    """``x + drop_path(mixer(norm(x)))`` on the float32 token stream.

    The reference writes the residual add at the start of the next block
    (and in the final norm for the last one); this is the same function,
    with mixer output i dropped at rate ``linspace(0, rate, depth)[i]``.

    The stream stays float32 whatever the weights' dtype (the reference's
    ``residual_in_fp32``); the mixer reads the normalised stream in its own
    parameters' dtype, so a ``model.half()`` or ``.bfloat16()`` model runs
    its mixers in that dtype and adds their outputs back in float32.
    """

    def __init__(self, embed_dims: int, d_state: int = 16,
                 drop_path_rate: float = 0., fuse_directions: bool = True):
        super().__init__()
        self.norm = RMSNorm(embed_dims)
        self.mixer = BiMambaMixer(embed_dims, d_state=d_state,
                                  fuse_directions=fuse_directions)
        self.drop_path = DropPath(drop_path_rate)

    def no_weight_decay(self) -> Set[str]:
        """The state-space parameters (``A_log``, ``D`` and their backward
        twins): they set the dynamics, they are not projections to shrink."""
        return {
            f'mixer.{name.format(suffix)}'
            for name in ('A{}_log', 'D{}') for suffix in DIRECTIONS
        }

    def forward(self,
                stream: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """stream: (B, L, D) float32 -> (the next stream, the mixer output).

        The mixer output is returned before drop path, as the reference's
        blocks return it (its next block applies the drop path when adding).
        """
        hidden = self.norm(stream).to(self.mixer.in_proj.weight.dtype)
        hidden = self.mixer(hidden)
        return stream + self.drop_path(hidden).float(), hidden
