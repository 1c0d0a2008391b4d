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
    # No exporter debugging records (stack traces...): they were 14% of
    # UperNet + Vim-Ti's file.
    assert not any(node.metadata_props for node in model.graph.node)


def test_backbone_alone_exports_its_feature_maps(tool_main, tiny_config,
                                                 tiny_checkpoint, tmp_path,
                                                 capsys):
    out = tmp_path / 'backbone.onnx'
    errors = tool_main(SCRIPT, tiny_config, tiny_checkpoint, '--out', out,
                       '--shape', 32, 32, '--backbone-only', '--batch-size',
                       2, '--time-runs', 1)
    assert len(errors) == 4 and max(errors) < 1e-4
    printed = capsys.readouterr().out
    assert 'standard operators' in printed
    assert 'median of 1 runs, 1 CPU thread(s)' in printed
    assert 'onnxruntime' in printed and 'PyTorch (torch backend)' in printed
    assert not list(tmp_path.glob('*.partial*'))
    _, shapes = graph_of(out)
    assert shapes['pictures'] == [2, 3, 32, 32]
    assert [shapes[f'features_{i}'] for i in range(4)] == [[2, 16, 2, 2]] * 4


def test_the_graph_does_not_grow_with_the_tokens(tool_main, tiny_config,
                                                 tmp_path):
    # One ONNX Scan per layer whatever the sequence length: 9 patches and
    # 16 patches (both resizing pos_embed) give graphs of the same nodes
    # (the unrolled loops of the portable scan grew with the tokens).
    counts = []
    for side in (48, 64):
        out = tmp_path / f'backbone_{side}.onnx'
        tool_main(SCRIPT, tiny_config, '--out', out, '--shape', side, side,
                  '--backbone-only', '--skip-check')
        model, _ = graph_of(out)
        kinds = [node.op_type for node in model.graph.node]
        counts.append(len(kinds))
        assert kinds.count('Scan') == 4  # one per layer, both directions
    assert counts[0] == counts[1]


def test_custom_ops_write_one_mmvim_node_per_scan_and_conv(
        tool_main, tiny_config, tmp_path, capsys):
    out = tmp_path / 'custom.onnx'
    assert tool_main(SCRIPT, tiny_config, '--out', out, '--shape', 32, 32,
                     '--backbone-only', '--custom-ops') is None
    assert 'onnx.checker (with the mmvim schemas): ok' in \
        capsys.readouterr().out
    model, _ = graph_of(out)
    custom = [(node.domain, node.op_type) for node in model.graph.node
              if node.domain not in ('', 'ai.onnx')]
    assert custom.count(('mmvim', 'SelectiveScan')) == 4
    # one conv node per layer: both directions' convs in one call
    assert custom.count(('mmvim', 'CausalConv1dSilu')) == 4
    assert len(custom) == 8
    assert ('mmvim', 1) in {(entry.domain, entry.version)
                            for entry in model.opset_import}


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
    assert result.returncode != 0 and 'none.pth: no such file' in result.stderr


def test_an_opset_torch_cannot_write_is_an_error(run_tool, tiny_config,
                                                 tmp_path):
    # torch's exporter writes opset 18 and falls back to it when it cannot
    # convert; the tool refuses instead of writing another opset than asked.
    out = tmp_path / 'old.onnx'
    result = run_tool([SCRIPT, tiny_config, '--out', out, '--shape', 32, 32,
                       '--opset', 17, '--skip-check'])
    assert result.returncode != 0
    assert 'could not convert the graph to opset 17' in result.stderr
    assert not out.exists() and not list(tmp_path.glob('*.partial*'))


def test_weights_that_do_not_fit_are_refused_before_exporting(
        tool_main, tiny_config, random_checkpoint, tmp_path):

    def five_classes(state_dict):
        state_dict['decode_head.conv_seg.weight'] = torch.zeros(5, 16, 1, 1)
        state_dict['decode_head.conv_seg.bias'] = torch.zeros(5)

    def head_missing_and_an_extra_key(state_dict):
        for key in [key for key in state_dict if key.startswith(
                'decode_head.conv_seg')]:
            del state_dict[key]
        state_dict['decode_head.classifier.weight'] = torch.zeros(5)

    def backbone_only(state_dict):
        for key in [key for key in state_dict
                    if not key.startswith('backbone.')]:
            del state_dict[key]

    out = tmp_path / 'refused.onnx'
    for edit, named in ((five_classes, 'decode_head.conv_seg.weight '
                         '(5, 16, 1, 1) vs (150, 16, 1, 1)'),
                        (head_missing_and_an_extra_key,
                         'decode_head.conv_seg.bias'),
                        (backbone_only, 'decode_head.* (')):
        checkpoint = random_checkpoint(f'{edit.__name__}.pth', edit)
        with pytest.raises(SystemExit) as stop:
            tool_main(SCRIPT, tiny_config, checkpoint, '--out', out,
                      '--shape', 32, 32)
        assert f'{checkpoint} does not fit this model' in str(stop.value.code)
        assert named in str(stop.value.code)
        assert not list(tmp_path.glob('*.onnx*'))
    # the backbone alone takes the backbone's weights of any of them
    tool_main(SCRIPT, tiny_config, random_checkpoint(
        'backbone.pth', backbone_only), '--out', out, '--shape', 32, 32,
              '--backbone-only', '--skip-check')
    assert out.exists()


@pytest.mark.parametrize('shape', [(16, 16), (15, 15), (33, 17)])
def test_a_shape_the_model_cannot_take_is_named(run_tool, tiny_config,
                                                tmp_path, shape):
    result = run_tool([SCRIPT, tiny_config, '--out', tmp_path / 'small.onnx',
                       '--shape', *shape])
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()
    assert message == [
        f'error: --shape {shape[0]} {shape[1]} is too small: this model '
        'needs at least 32 pixels per side (its patches and the neck '
        f'coarsest level); pass --shape {max(32, shape[0])} '
        f'{max(32, shape[1])} or larger'], result.stderr
    assert not list(tmp_path.iterdir())


def test_a_file_beside_the_output_is_never_touched(tool_main, tiny_config,
                                                    tmp_path):
    out = tmp_path / 'tiny.onnx'
    beside = tmp_path / 'tiny.onnx.partial'
    beside.write_bytes(b'a file of the user')
    tool_main(SCRIPT, tiny_config, '--out', out, '--shape', 32, 32,
              '--backbone-only', '--skip-check')
    assert beside.read_bytes() == b'a file of the user'
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        'tiny.onnx', 'tiny.onnx.partial']
