import torch
from torch import nn

from .bimamba import BiMambaMixer
from .drop_path import DropPath
from .rms_norm import RMSNorm


class VimBlock(nn.Module):
    """``x + drop_path(mixer(norm(x)))`` on the float32 token stream.

    The reference writes the residual add at the start of the next block
    (and in the final norm for the last one); this is the same function,
    with mixer output i dropped at rate ``linspace(0, rate, depth)[i]``.
    """

    def __init__(self, embed_dims: int, d_state: int = 16,
                 drop_path_rate: float = 0., fuse_directions: bool = True):
        super().__init__()
        self.norm = RMSNorm(embed_dims)
        self.mixer = BiMambaMixer(embed_dims, d_state=d_state,
                                  fuse_directions=fuse_directions)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, stream: torch.Tensor) -> torch.Tensor:
        return stream + self.drop_path(self.mixer(self.norm(stream))).float()
