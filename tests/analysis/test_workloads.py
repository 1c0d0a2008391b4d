import pytest
import torch

from mmvim.analysis.workloads import build_workload, parse_model


def test_model_names_parse_and_unknown_ones_fail():
    spec = parse_model('vim-small-twocall@sequential')
    assert (spec.family, spec.arch, spec.two_call,
            spec.backend) == ('vim', 'small', True, 'sequential')
    assert parse_model('vim-tiny@cpu').backend == 'cpu'
    assert parse_model('vim-base').backend == ''
    assert parse_model('vim-tiny-compiled@cpu').compiled
    assert not parse_model('vim-tiny-twocall').compiled
    assert parse_model('deit-tiny').family == 'deit'
    assert parse_model('deit-small-compiled').compiled
    assert not parse_model('deit-small').compiled
    assert parse_model('config:a/b.py@cuda').config == 'a/b.py'
    for bad in ('vim-huge', 'vim-tiny-fast', 'vim-tiny-twocall-twocall',
                'vim-tiny-compiled-compiled',
                'deit-base', 'deit-tiny@cuda', 'deit-tiny-twocall',
                'deit-tiny-compiled-compiled', 'vim-tiny@gpu',
                'vim-tiny-sequential', 'resnet50'):
        with pytest.raises(ValueError):
            parse_model(bad)


def test_bf16_train_step_runs_on_the_named_backend():
    from mmvim import ops
    try:  # build_workload chooses for the (measuring) process
        workload = build_workload(parse_model('vim-tiny-twocall@torch'), 32,
                                  batch=1, dtype='bf16', mode='train',
                                  device=torch.device('cpu'))
        assert ops.requested_backend() == 'torch'
        workload.step()
    finally:
        ops.set_backend(None)
    assert workload.implementation == 'mmvim two-call'
    assert workload.backend == 'torch'


def test_inference_step_of_deit_has_no_backend():
    workload = build_workload(parse_model('deit-tiny'), 32, batch=2,
                              dtype='fp32', mode='inference',
                              device=torch.device('cpu'))
    assert workload.backend == '-'
    workload.step()
