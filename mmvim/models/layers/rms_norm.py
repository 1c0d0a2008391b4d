import torch
from torch import nn


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` in float32 (or wider), no bias (Vim's norm).

    Normalising in at least float32 keeps the fp32 residual stream's
    precision under autocast and with half weights; the output keeps the
    input's dtype.
    """

    def __init__(self, embed_dims: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(embed_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        wide = x.to(dtype)
        out = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight.to(dtype)).to(x.dtype)
