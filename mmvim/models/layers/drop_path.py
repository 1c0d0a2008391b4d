import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability
    ``drop_prob`` during training, rescaling the kept ones.

    Ours rather than mmcv's ``mmcv.cnn.bricks.DropPath`` (the same function):
    the backbone must import with torch and mmengine alone, and neither has
    one (torchvision's ``StochasticDepth`` would add a dependency).
    """

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.dim() - 1))
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
