"""The bidirectional Mamba mixer of Vim ("bimamba v2")."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from mmvim.ops import causal_conv1d_silu, selective_scan

# Attribute suffix of each direction's own parameters, as the released
# checkpoints name them: conv1d / conv1d_b, A_log / A_b_log, D / D_b, ...
DIRECTIONS = ('', '_b')


class BiMambaMixer(nn.Module):
    """Mamba mixer that scans the token sequence both ways.

    ``in_proj`` and ``out_proj`` are shared; each direction has its own
    depthwise conv, ``x_proj``, ``dt_proj``, ``A_log`` and ``D``. The backward
    direction scans the flipped x and z; the two outputs are averaged.

    Args:
        embed_dims: token width D.
        d_state: SSM state size N.
        d_conv: causal conv kernel size.
        expand: inner width = expand * D.
        fuse_directions: run both directions through one conv and one scan
            call (channels stacked, the scan's B/C grouped per direction)
            instead of one call each; same result, half the kernel launches.
    """

    def __init__(self,
                 embed_dims: int,
                 d_state: int = 16,
                 d_conv: int = 4,
                 expand: int = 2,
                 dt_min: float = 1e-3,
                 dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4,
                 fuse_directions: bool = True):
        super().__init__()
        self.d_inner = expand * embed_dims
        self.d_state = d_state
        self.dt_rank = math.ceil(embed_dims / 16)
        self.fuse_directions = fuse_directions
        self.in_proj = nn.Linear(embed_dims, 2 * self.d_inner, bias=False)
        for suffix in DIRECTIONS:
            self.add_module(
                f'conv1d{suffix}',
                nn.Conv1d(self.d_inner, self.d_inner, d_conv,
                          groups=self.d_inner, padding=d_conv - 1))
            self.add_module(
                f'x_proj{suffix}',
                nn.Linear(self.d_inner, self.dt_rank + 2 * d_state,
                          bias=False))
            self.add_module(f'dt_proj{suffix}',
                            nn.Linear(self.dt_rank, self.d_inner))
            self.register_parameter(f'A{suffix}_log',
                                    nn.Parameter(torch.empty(self.d_inner,
                                                             d_state)))
            self.register_parameter(f'D{suffix}',
                                    nn.Parameter(torch.empty(self.d_inner)))
        self.out_proj = nn.Linear(self.d_inner, embed_dims, bias=False)
        self.reset_ssm_parameters(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min, dt_max, dt_init_floor):
        """The reference initialisation of the SSM parameters.

        A = -(1..N) per channel (S4D-real), D = 1, dt_proj weights uniform in
        +-dt_rank^-0.5 and the forward bias the inverse softplus of a
        log-uniform dt in [dt_min, dt_max]. The reference leaves the backward
        direction's dt bias at 0; kept so training from scratch matches it.
        """
        states = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) +
            math.log(dt_min)).clamp(min=dt_init_floor)
        for suffix in DIRECTIONS:
            getattr(self, f'A{suffix}_log').copy_(
                states.log().expand(self.d_inner, -1))
            getattr(self, f'D{suffix}').fill_(1.)
            dt_proj = getattr(self, f'dt_proj{suffix}')
            nn.init.uniform_(dt_proj.weight, -self.dt_rank**-0.5,
                             self.dt_rank**-0.5)
            dt_proj.bias.zero_()
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _scan(self, x, z, suffixes):
        """Conv, projections and scan of the directions in ``suffixes``,
        whose inputs are stacked along the channels of x and z (b, k*d, l)."""
        convs = [getattr(self, f'conv1d{s}') for s in suffixes]
        u = causal_conv1d_silu(x, torch.cat([c.weight[:, 0] for c in convs]),
                               torch.cat([c.bias for c in convs]))
        deltas, Bs, Cs = [], [], []
        for u_dir, suffix in zip(u.chunk(len(suffixes), dim=1), suffixes):
            x_dbl = F.linear(u_dir.transpose(1, 2),
                             getattr(self, f'x_proj{suffix}').weight)
            dt, B, C = x_dbl.split(
                [self.dt_rank, self.d_state, self.d_state], dim=-1)
            deltas.append(
                F.linear(dt, getattr(self, f'dt_proj{suffix}').weight))
            Bs.append(B.transpose(1, 2))
            Cs.append(C.transpose(1, 2))
        params = {
            name: torch.cat([getattr(self, name.format(s)) for s in suffixes])
            for name in ('A{}_log', 'D{}')
        }
        dt_bias = torch.cat(
            [getattr(self, f'dt_proj{s}').bias for s in suffixes])
        return selective_scan(
            u,
            torch.cat(deltas, dim=-1).transpose(1, 2),
            -torch.exp(params['A{}_log'].float()),
            torch.stack(Bs, dim=1).contiguous(),
            torch.stack(Cs, dim=1).contiguous(),
            params['D{}'].float(),
            z,
            dt_bias.float(),
            delta_softplus=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (b, l, D) -> (b, l, D)."""
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)
        if self.fuse_directions:
            y = self._scan(
                torch.cat([x, x.flip(-1)], dim=1),
                torch.cat([z, z.flip(-1)], dim=1), DIRECTIONS)
            y_fwd, y_bwd = y.chunk(2, dim=1)
        else:
            y_fwd = self._scan(x, z, DIRECTIONS[:1])
            y_bwd = self._scan(x.flip(-1), z.flip(-1), DIRECTIONS[1:])
        return self.out_proj(((y_fwd + y_bwd.flip(-1)) / 2).transpose(1, 2))
