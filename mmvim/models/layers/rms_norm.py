import torch
from torch import nn

from mmvim.ops import rms_norm


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` in float32 (or wider), no bias (Vim's norm).

    Normalising in at least float32 keeps the fp32 residual stream's
    precision under autocast and with half weights; the output keeps the
    input's dtype. :func:`mmvim.ops.rms_norm` computes it (a compiled
    operator on CPUs).
    """

    def __init__(self, embed_dims: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(embed_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)
