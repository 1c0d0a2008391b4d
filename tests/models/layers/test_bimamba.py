"""The bidirectional mixer against a hand computation of the reference's
flip-scan-flip, written from the Vim paper's equations with the token loop."""
import pytest
import torch
import torch.nn.functional as F

from mmvim import ops
from mmvim.models.layers.bimamba import DIRECTIONS, BiMambaMixer


def reference_direction(mixer, x, z, suffix):
    """One direction as the reference computes it, on x, z (b, d, l) already
    in that direction's token order."""
    conv = getattr(mixer, f'conv1d{suffix}')
    width = conv.weight.shape[-1]
    u = F.silu(F.conv1d(F.pad(x, (width - 1, 0)), conv.weight, conv.bias,
                        groups=x.shape[1]))
    x_dbl = getattr(mixer, f'x_proj{suffix}')(u.transpose(1, 2))
    dt, B, C = x_dbl.split([mixer.dt_rank, mixer.d_state, mixer.d_state],
                           dim=-1)
    dt_proj = getattr(mixer, f'dt_proj{suffix}')
    delta = F.softplus(dt_proj(dt)).transpose(1, 2)  # bias inside
    A = -torch.exp(getattr(mixer, f'A{suffix}_log'))
    h = x.new_zeros(x.shape[0], x.shape[1], mixer.d_state)
    ys = []
    for t in range(x.shape[-1]):
        h = torch.exp(delta[..., t, None] * A) * h + \
            (delta[..., t] * u[..., t])[..., None] * B[:, None, t]
        ys.append((h * C[:, None, t]).sum(-1))
    y = torch.stack(ys, -1) + getattr(mixer, f'D{suffix}')[:, None] * u
    return y * F.silu(z)


@pytest.fixture
def mixer():
    torch.manual_seed(0)
    module = BiMambaMixer(embed_dims=8, d_state=4).double()
    with torch.no_grad():  # away from the init's zero backward dt bias
        module.dt_proj_b.bias.normal_(std=0.5)
    return module


@pytest.mark.parametrize('fuse', [True, False])
@pytest.mark.parametrize('backend', ['sequential', 'torch', 'cpu'])
def test_matches_the_reference_flip_scan_flip(mixer, fuse, backend):
    if backend not in [s.name for s in ops.list_backends() if s.available]:
        pytest.skip(f'{backend} backend unavailable here')
    mixer.fuse_directions = fuse
    hidden = torch.randn(2, 11, 8, dtype=torch.float64)
    x, z = mixer.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)
    forward = reference_direction(mixer, x, z, DIRECTIONS[0])
    backward = reference_direction(mixer, x.flip(-1), z.flip(-1),
                                   DIRECTIONS[1]).flip(-1)
    expected = mixer.out_proj(((forward + backward) / 2).transpose(1, 2))
    with ops.use_backend(backend):
        out = mixer(hidden)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_each_direction_reads_the_other_way(mixer):
    """Changing the last token changes earlier outputs only through the
    backward direction: with its output projection zeroed, the first tokens
    stay put."""
    hidden = torch.randn(1, 9, 8, dtype=torch.float64)
    changed = hidden.clone()
    changed[:, -1] += 1
    with torch.no_grad():
        for suffix in DIRECTIONS[1:]:
            getattr(mixer, f'D{suffix}').zero_()
            getattr(mixer, f'x_proj{suffix}').weight.zero_()
            getattr(mixer, f'conv1d{suffix}').weight.zero_()
            getattr(mixer, f'conv1d{suffix}').bias.zero_()
        out, out_changed = mixer(hidden), mixer(changed)
    torch.testing.assert_close(out[:, :-1], out_changed[:, :-1])
    assert not torch.allclose(out[:, -1], out_changed[:, -1])


def test_keeps_the_checkpoint_names_and_shapes():
    mixer = BiMambaMixer(embed_dims=192)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes['conv1d.weight'] == shapes['conv1d_b.weight'] == (384, 1, 4)
    assert shapes['A_b_log'] == (384, 16) and shapes['D_b'] == (384, )
    assert shapes['x_proj.weight'] == (12 + 32, 384)
    assert shapes['in_proj.weight'] == (768, 192)
    # S4D-real init: A = -(1..N) in every channel.
    torch.testing.assert_close(mixer.A_log[0].exp().detach(),
                               torch.arange(1., 17.))
