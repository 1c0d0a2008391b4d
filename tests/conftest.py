"""Helpers shared by the model, config and engine tests: small VisionMamba
models, the golden reference outputs in tests/data, checkpoint files; and
read-only folders."""
import os
import subprocess
from pathlib import Path

# The `triton` ops backend runs in Triton's CPU interpreter on machines
# without a GPU. triton reads this when mmvim's kernels are defined, which a
# test module may trigger at collection (listing the backends), so it is set
# before any is collected. TRITON_INTERPRET=0 tests the compiled kernels.
os.environ.setdefault('TRITON_INTERPRET', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

DATA = Path(__file__).resolve().parent / 'data'
# Outputs of the public reference Vim (see /work/shared/golden/README.md):
# depth 4 at stride 16, depth 2 at stride 8 (overlapping patches).
GOLDEN_FILES = ('vim_ref_d4_e64_s16.pth', 'vim_ref_d2_e64_s8.pth')


@pytest.fixture
def relative_error():
    """||actual - expected|| / ||expected||, as a float."""

    def error(actual: torch.Tensor, expected: torch.Tensor) -> float:
        return ((actual - expected).norm() / expected.norm()).item()

    return error


@pytest.fixture
def tiny_vim():
    """Builds a 3-layer, 32-wide VisionMamba for 64x64 inputs; keyword
    arguments override."""
    from mmvim.models import VisionMamba

    def build(**kwargs):
        kwargs.setdefault('arch', dict(embed_dims=32, num_layers=3))
        kwargs.setdefault('img_size', 64)
        return VisionMamba(**kwargs)

    return build


@pytest.fixture(params=GOLDEN_FILES)
def golden(request):
    """Each golden reference file, loaded on the CPU."""
    return torch.load(DATA / request.param, map_location='cpu',
                      weights_only=True)


@pytest.fixture
def golden_vim():
    """Builds the VisionMamba of a golden file with its weights loaded;
    keyword arguments (out_type, ...) are passed on. The weights go through
    checkpoint_filter_fn (head dropped, norm_f without final_norm) and load
    strictly."""
    from mmvim.models import VisionMamba
    from mmvim.models.backbones import checkpoint_filter_fn

    def build(golden, **kwargs):
        cfg = golden['config']
        model = VisionMamba(
            arch=dict(embed_dims=cfg['embed_dim'], num_layers=cfg['depth']),
            img_size=cfg['img_size'], patch_size=cfg['patch_size'],
            stride=cfg['stride'], d_state=cfg['d_state'], **kwargs)
        model.load_state_dict(
            checkpoint_filter_fn(golden['state_dict'], model), strict=True)
        return model

    return build


@pytest.fixture
def save_checkpoint(tmp_path):
    """Saves an object with torch.save under tmp_path, returns the path."""

    def save(obj, name='ckpt.pth'):
        path = tmp_path / name
        torch.save(obj, path)
        return str(path)

    return save


@pytest.fixture
def read_only(tmp_path):
    """Makes a folder read-only: by its mode, or, for root (whom modes do
    not stop), with the immutable attribute; undone afterwards."""
    made = []

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        made.append(folder)
        if os.access(folder, os.W_OK):
            result = subprocess.run(['chattr', '+i', str(folder)],
                                    capture_output=True)
            if result.returncode != 0:
                pytest.skip('cannot make a folder read-only for root here '
                            f'(chattr: {result.stderr.decode().strip()})')
        return folder

    yield make
    for folder in made:
        subprocess.run(['chattr', '-i', str(folder)], capture_output=True)
        folder.chmod(0o755)
