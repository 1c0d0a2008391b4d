"""The bidirectional Mamba mixer of Vim ("bimamba v2")."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from mmvim.ops import (bidirectional_causal_conv1d_silu,
                       bidirectional_selective_scan, causal_conv1d_silu,
                       selective_scan)

# Attribute suffix of each direction's own parameters, as the released
# checkpoints name them: conv1d / conv1d_b, A_log / A_b_log, D / D_b, ...
DIRECTIONS = ('', '_b')


class BiMambaMixer(nn.Module):
    """Mamba mixer that scans the token sequence both ways.

    ``in_proj`` and ``out_proj`` are shared; each direction has its own
    depthwise conv, ``x_proj``, ``dt_proj``, ``A_log`` and ``D``. The backward
    direction scans x and z from the last token to the first; the two
    outputs are averaged.

    Args:
        embed_dims: token width D.
        d_state: SSM state size N.
        d_conv: causal conv kernel size.
        expand: inner width = expand * D.
        fuse_directions: run both directions through one scan call
            (:func:`mmvim.ops.bidirectional_selective_scan`: channels
            stacked, B/C grouped per direction, the backward direction read
            in reverse, their average written by the scan) instead of the
            reference's flip-scan-flip per direction; same result, half the
            launches, no flipped copies, no (b, l, 2d) output.
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
            # Only holds the depthwise weights under the released
            # checkpoints' names; the conv itself is the ops' causal conv.
            self.add_module(
                f'conv1d{suffix}',
                nn.Conv1d(self.d_inner, self.d_inner, d_conv,
                          groups=self.d_inner))
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

    def _x_project(self, u, suffix):
        """dt (b, l, dt_rank) and B, C (b, l, n), token-major as x_proj
        makes them, of one direction from its conv output u (b, d, l).

        The product gets zero weight rows up to a multiple of 16 outputs,
        dropped after: MKL's sgemm ran Vim-Ti's 44-output x_proj at 57
        GFLOP/s and a 48-output one at 78 (4097 tokens, one thread, Zen 3),
        so the padded product takes 0.8x the time. The other outputs are
        the same products.
        """
        weight = getattr(self, f'x_proj{suffix}').weight
        padding = -weight.shape[0] % 16
        x_dbl = F.linear(u.transpose(1, 2), F.pad(weight, (0, 0, 0, padding)))
        return x_dbl.split(
            [self.dt_rank, self.d_state, self.d_state, padding], dim=-1)[:3]

    def _ssm_parameters(self, suffixes):
        """A, D and the dt bias of the directions in ``suffixes``, stacked
        along the channels, in float32 as the scan takes them."""
        A_log = torch.cat([getattr(self, f'A{s}_log') for s in suffixes])
        D = torch.cat([getattr(self, f'D{s}') for s in suffixes])
        dt_bias = torch.cat(
            [getattr(self, f'dt_proj{s}').bias for s in suffixes])
        return -torch.exp(A_log.float()), D.float(), dt_bias.float()

    def _scan_one_direction(self, x, z, suffix):
        """The reference's path for one direction: conv, projections, scan
        of x (b, d, l) in its own token order."""
        conv = getattr(self, f'conv1d{suffix}')
        u = causal_conv1d_silu(x, conv.weight[:, 0], conv.bias)
        dt, B, C = self._x_project(u, suffix)
        delta = F.linear(dt, getattr(self, f'dt_proj{suffix}').weight)
        A, D, dt_bias = self._ssm_parameters([suffix])
        return selective_scan(u, delta.transpose(1, 2), A,
                              B.transpose(1, 2).contiguous(),
                              C.transpose(1, 2).contiguous(), D, z, dt_bias,
                              delta_softplus=True)

    def _scan_both_directions(self, hidden, x_weight, z):
        """Both directions in one conv call and one scan call, nothing
        flipped or concatenated: the backward direction's conv looks ahead
        and the scan walks its channels from the last token to the first.
        Returns the directions' average token-major, (b, l, d)."""
        convs = [getattr(self, f'conv1d{s}') for s in DIRECTIONS]
        # u (b, 2d, l), channel-last like x: the conv writes both directions
        # into one tensor, which x_proj and the scan read as it is. x is the
        # conv's argument only, so inference frees it before the scan.
        u = bidirectional_causal_conv1d_silu(
            F.linear(hidden, x_weight).transpose(1, 2),
            torch.cat([conv.weight[:, 0] for conv in convs]),
            torch.cat([conv.bias for conv in convs]))
        A, D, dt_bias = self._ssm_parameters(DIRECTIONS)
        # dt, B, C (b, 2, k, l) as views of token-major (b, 2, l, k) stacks:
        # the layout the compiled scan reads, so it copies nothing more. The
        # scan applies dt_proj itself (delta_weight): no (b, l, 2d) delta is
        # stored, for inference or for the backward.
        dts, Bs, Cs = zip(*[
            self._x_project(u_dir, suffix)
            for u_dir, suffix in zip(u.chunk(2, dim=1), DIRECTIONS)
        ])
        y = bidirectional_selective_scan(
            u, torch.stack(dts, dim=1).transpose(-1, -2), A,
            torch.stack(Bs, dim=1).transpose(-1, -2),
            torch.stack(Cs, dim=1).transpose(-1, -2), D, z, dt_bias,
            delta_softplus=True, average_directions=True,
            delta_weight=torch.cat(
                [getattr(self, f'dt_proj{s}').weight for s in DIRECTIONS]))
        return y.transpose(1, 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (b, l, D) -> (b, l, D)."""
        # x and z from in_proj's two halves, two products rather than one
        # sliced: x need not live as long as z (the gate, read last).
        x_weight, z_weight = self.in_proj.weight.chunk(2)
        z = F.linear(hidden, z_weight).transpose(1, 2)
        if self.fuse_directions:
            return self.out_proj(
                self._scan_both_directions(hidden, x_weight, z))
        x = F.linear(hidden, x_weight).transpose(1, 2)
        y_fwd = self._scan_one_direction(x, z, DIRECTIONS[0])
        y_bwd = self._scan_one_direction(x.flip(-1), z.flip(-1),
                                         DIRECTIONS[1]).flip(-1)
        # Token-major (b, l, d) operands: the average comes out contiguous
        # for out_proj; halved in place, one such buffer instead of two (the
        # sum's backward needs neither operand nor result, so autograd
        # allows it).
        return self.out_proj(
            torch.add(y_fwd.transpose(1, 2), y_bwd.transpose(1, 2)).div_(2))
