"""tools/deployment/pytorch2onnx.py on a tiny UperNet + Vim: the file passes
onnx.checker, holds only standard ONNX operators, and onnxruntime on the CPU
agrees with PyTorch."""
import pytest
import torch

onnx = pytest.importorskip(
    'onnx', reason='the deploy extras: pip install -r requirements/deploy.txt')
pytest.importorskip(
    'onnxruntime',
    reason='the deploy extras: pip install -r requirements/deploy.txt')

pytestmark = pytest.mark.slow  # each export traces for tens of seconds

SCRIPT = 'tools/deployment/pytorch2onnx.py'


@pytest.fixture
def tiny_checkpoint(tiny_config, tmp_path):
    """The tiny segmentor's freshly built weights, saved as a checkpoint."""
    from mmseg.apis import init_model
    model = init_model(str(tiny_config), device='cpu')
    path = tmp_path / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def graph_of(path):
    model = onnx.load(str(path))
    shapes = {
        value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*model.graph.input, *model.graph.output]
    }
    return model, shapes


def test_segmentor_exports_and_onnxruntime_matches(tool_main, tiny_config,
                                                   tiny_checkpoint, tmp_path):
    out = tmp_path / 'tiny.onnx'
    # Not square: a 2x3 patch grid, pos_embed interpolated inside the graph.
    errors = tool_main(SCRIPT, tiny_config, tiny_checkpoint, '--out', out,
                       '--shape', 32, 48)
    assert len(errors) == 1 and errors[0] < 1e-4
    model, shapes = graph_of(out)
    assert shapes == {'pictures': [1, 3, 32, 48], 'logits': [1, 150, 32, 48]}
    # Plain ONNX operators only: no PythonOp or custom-domain node that a
    # runtime other than PyTorch could not run.
    assert {node.domain for node in model.graph.node} <= {'', 'ai.onnx'}


def test_backbone_alone_exports_its_feature_maps(tool_main, tiny_config,
                                                 tiny_checkpoint, tmp_path,
                                                 capsys):
    out = tmp_path / 'backbone.onnx'
    errors = tool_main(SCRIPT, tiny_config, tiny_checkpoint, '--out', out,
                       '--shape', 32, 32, '--backbone-only', '--batch-size',
                       2, '--backend', 'sequential', '--time-runs', 1)
    assert len(errors) == 4 and max(errors) < 1e-4
    printed = capsys.readouterr().out
    assert 'backend sequential' in printed
    assert 'median of 1 runs, 1 CPU thread(s)' in printed
    assert 'onnxruntime' in printed and 'PyTorch (sequential backend)' in (
        printed)
    assert not (tmp_path / 'backbone.onnx.partial').exists()
    _, shapes = graph_of(out)
    assert shapes['pictures'] == [2, 3, 32, 32]
    assert [shapes[f'features_{i}'] for i in range(4)] == [[2, 16, 2, 2]] * 4


def test_refuses_to_replace_a_file_or_read_a_missing_checkpoint(
        run_tool, tiny_config, tmp_path):
    out = tmp_path / 'kept.onnx'
    out.write_bytes(b'earlier export')
    result = run_tool([SCRIPT, tiny_config, '--out', out])
    assert result.returncode != 0 and 'already exists' in result.stderr
    assert out.read_bytes() == b'earlier export'
    result = run_tool(
        [SCRIPT, tiny_config, tmp_path / 'none.pth', '--out',
         tmp_path / 'new.onnx'])
    assert result.returncode != 0 and 'no such checkpoint' in result.stderr


def test_an_opset_torch_cannot_write_is_an_error(run_tool, tiny_config,
                                                 tmp_path):
    # torch's exporter writes opset 18 and falls back to it when it cannot
    # convert; the tool refuses instead of writing another opset than asked.
    out = tmp_path / 'old.onnx'
    result = run_tool([SCRIPT, tiny_config, '--out', out, '--shape', 32, 32,
                       '--opset', 17, '--skip-check'])
    assert result.returncode != 0
    assert 'could not convert the graph to opset 17' in result.stderr
    assert not out.exists() and not list(tmp_path.glob('*.partial'))
