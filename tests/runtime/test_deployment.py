"""What the deployment tools share: the backend deployed graphs call, the
export's errors, the check of a deployed file."""
import numpy as np
import pytest
import torch

from mmvim.ops import list_backends
from mmvim.runtime import RunSetupError, deployment


def test_deployed_graphs_call_the_compiled_operators_where_they_run():
    available = {s.name for s in list_backends() if s.available}
    expected = 'cpu' if 'cpu' in available else 'torch'
    assert deployment.deployment_backend() == expected


def test_a_model_that_cannot_be_exported_names_the_reason():

    class DataDependent(torch.nn.Module):

        def forward(self, x):
            if x.sum() > 0:  # control flow on a value: not traceable
                return x + 1
            return x - 1

    with pytest.raises(RunSetupError,
                       match='torch.export cannot export this model: .*'):
        deployment.export_program(DataDependent(), torch.ones(1, 3, 8, 8))


def test_pictures_are_normalised_inside_the_network():
    network = deployment.Normalised(torch.nn.Identity(), (1., 2., 3.),
                                    (2., 2., 2.))
    pictures = torch.full((1, 3, 2, 2), 5.)
    out = network(pictures)
    assert out[0, :, 0, 0].tolist() == [2., 1.5, 1.]


def test_relative_errors_and_shape_mismatches():
    want = [np.array([1., -2.]), np.array([[4.]])]
    got = [np.array([1., -1.]), np.array([[4.]])]
    assert deployment.max_relative_errors(want, got) == [0.5, 0.]
    with pytest.raises(RunSetupError, match='returned'):
        deployment.max_relative_errors(want, [np.zeros(3), np.zeros(1)])
