"""The reference model's golden outputs and gradients on every backend that
runs on this machine: on the CPU, and on the GPU when there is one (the GPU
script, tools/analysis_tools/gpu_check.sh, runs this file there)."""
import pytest
import torch

from mmvim import ops

DEVICES = ('cpu', 'cuda') if torch.cuda.is_available() else ('cpu', )
# Triton on the CPU is its interpreter, seconds per model: those cases run
# in the full suite (test_triton_backend.py keeps the quick set's check).
BACKENDS = [
    pytest.param(s.name, device, marks=pytest.mark.slow)
    if (s.name, device) == ('triton', 'cpu') else (s.name, device)
    for device in DEVICES for s in ops.list_backends()
    if s.available and (s.device_types is None or device in s.device_types)
]


@pytest.mark.parametrize('fuse', [True, False])
@pytest.mark.parametrize('backend,device', BACKENDS)
def test_golden_features_and_gradients(golden, golden_vim, relative_error,
                                       backend, device, fuse, monkeypatch):
    # cuDNN convolutions default to TF32 on a GPU: 1e-3, not float32.
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    model = golden_vim(golden, out_type='cls_token',
                       fuse_directions=fuse).to(device)
    state = golden['state_dict']
    head = torch.nn.Linear(*state['head.weight'].shape[::-1])
    head.load_state_dict({'weight': state['head.weight'],
                          'bias': state['head.bias']})
    head.to(device)
    with ops.use_backend(backend):
        (feature, ) = model(golden['input'].to(device))
        logits = head(feature)
        logits.pow(2).mean().backward()
    assert relative_error(feature.cpu(), golden['feature']) < 1e-4
    assert relative_error(logits.cpu(), golden['logits']) < 1e-4
    params = {**dict(model.named_parameters()),
              **{f'head.{k}': v for k, v in head.named_parameters()}}
    assert golden['grads']
    for key, grad in golden['grads'].items():
        assert relative_error(params[key].grad.cpu(), grad) < 1e-3, key
