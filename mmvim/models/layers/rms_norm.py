import torch
from torch import nn


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` in float32, no bias (Vim's norm).

    Normalising in float32 keeps the fp32 residual stream's precision under
    autocast; the output keeps the input's dtype.
    """

    def __init__(self, embed_dims: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(embed_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        out = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight.float()).to(x.dtype)
