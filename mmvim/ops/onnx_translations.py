"""ONNX translations of mmvim's operators, for ``torch.onnx.export(...,
dynamo=True, custom_translation_table=...)``.

Two tables, both covering every backend's forward operators (an exported
program holds whichever backend traced it):

- :func:`portable_table`: standard ONNX operators only. The scan is one ONNX
  ``Scan`` over the tokens (both directions in one node: ``Scan`` reads the
  backward channels' inputs and writes their outputs in reverse), so the graph
  stays the size of the network whatever the sequence length, instead of one
  unrolled node chain per token chunk. The decays and inputs of every token
  are computed before the ``Scan`` in a few large element-wise nodes; its
  body is the recurrence itself: ``h = a h + x``, ``y = sum_n h C``.
- :func:`custom_table`: each op as one node of the ``mmvim`` domain (schemas in
  docs/deployment.md), for runtimes that implement them.

Importing this module imports onnxscript (the deploy extra).
"""
import itertools
from typing import Callable, Dict

import onnx
import onnx_ir as ir
import onnxscript
import torch
from onnxscript import opset18 as op

from .library import NAMESPACE, operator_name
from .portable_conv import segments
from .registry import backend_names

MMVIM_DOMAIN = 'mmvim'
_BODY_NUMBERS = itertools.count()
MMVIM_OPSET = onnxscript.values.Opset(MMVIM_DOMAIN, 1)
FLOAT = ir.DataType.FLOAT


def _forward_operators(op_name: str):
    """Every registered backend's forward operator of ``op_name`` that is
    defined in this process."""
    namespace = getattr(torch.ops, NAMESPACE)
    for backend in backend_names():
        name = operator_name(op_name, backend)
        if hasattr(namespace, name):
            yield getattr(namespace, name).default


def _unused_states(u, A):
    """The forward operator's second output (what training saves), which an
    inference graph never reads: a (b, d, 0, n) placeholder."""
    batch, channels = u.shape[0], u.shape[1]
    return op.ConstantOfShape(
        op.Constant(value_ints=[batch, channels, 0, A.shape[1]]))


def _node_with_outputs(op_type: str, inputs, num_outputs: int, **attributes):
    """A default-domain node with ``num_outputs`` float32 outputs, recorded in
    the exporter's graph. onnxscript's ``op.Scan`` gives one output (its
    schema's outputs are one variadic list), so the node is built here the
    way torch's own translation of ``torch.ops.higher_order.scan`` builds
    it."""
    from torch.onnx._internal.exporter import _core
    tracer = _core.current_tracer
    node = ir.Node('', op_type, inputs,
                   attributes=ir.convenience.convert_attributes(attributes),
                   num_outputs=num_outputs, version=tracer.opset.version)
    for output in node.outputs:
        output.type = ir.TensorType(FLOAT)
    tracer.nodes.append(node)
    return node.outputs


def _shape(*dims):
    return op.Constant(value_ints=list(dims))


def _recurrence_body(directions: int) -> ir.Graph:
    """The ``Scan`` body: per direction, state h (b, g, d/g, n) and the step's
    decay a, input x (b, g, d/g, n) and C (b, g, 1, n):
    ``h' = a h + x``, ``y = sum_n h' C``. Every value is named after the
    body (ONNX names are unique across a model's graphs)."""
    prefix = f'scan_body{next(_BODY_NUMBERS)}'

    def value(name, dtype=FLOAT):
        return ir.Value(name=f'{prefix}_{name}', type=ir.TensorType(dtype))

    def node(op_type, inputs, name, dtype=FLOAT, **attributes):
        return ir.Node('', op_type, inputs,
                       attributes=ir.convenience.convert_attributes(
                           attributes),
                       outputs=[value(name, dtype)])

    reduce_axes = node('Constant', [], 'axes', ir.DataType.INT64,
                       value=ir.tensor([-1], dtype=ir.DataType.INT64))
    nodes, states, steps, new_states, outputs = [reduce_axes], [], [], [], []
    for d in range(directions):
        h, a, x, c = (value(f'{name}{d}') for name in ('h', 'a', 'x', 'c'))
        decayed = node('Mul', [a, h], f'decayed{d}')
        updated = node('Add', [decayed.outputs[0], x], f'h_next{d}')
        read = node('Mul', [updated.outputs[0], c], f'read{d}')
        summed = node('ReduceSum', [read.outputs[0], reduce_axes.outputs[0]],
                      f'y{d}', keepdims=0)
        nodes += [decayed, updated, read, summed]
        states.append(h)
        steps += [a, x, c]
        new_states.append(updated.outputs[0])
        outputs.append(summed.outputs[0])
    return ir.Graph([*states, *steps], [*new_states, *outputs], nodes=nodes,
                    name=prefix)


def _averaged(y, reverse_from: int, average_directions: bool):
    """The operator's y from the full-width one: with
    ``average_directions``, (y[:, :r] + y[:, r:]) / 2 in y's dtype."""
    if not average_directions:
        return y
    halves = op.Split(y, axis=1, num_outputs=2)
    return op.Div(op.Add(halves[0], halves[1]),
                  op.CastLike(op.Constant(value_float=2.), y))


def _full_delta(delta, delta_weight, channels: int):
    """delta (b, d, l) from the operator's argument, as
    :func:`mmvim.ops.library.full_delta` makes it."""
    if delta_weight is None:
        return delta
    batch, groups, rank, length = (int(s) for s in delta.shape)
    weight = op.Reshape(op.CastLike(delta_weight, delta),
                        _shape(groups, channels // groups, rank))
    return op.Reshape(op.MatMul(weight, delta),
                      _shape(batch, channels, length))


def _portable_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus: bool = False, reverse_from: int = 0,
                   delta_weight=None, average_directions: bool = False,
                   save_states: bool = True):
    """The selective scan in standard ONNX operators (see the module
    docstring); float32 state whatever u's dtype."""
    batch, channels, length = (int(s) for s in u.shape)
    delta = _full_delta(delta, delta_weight, channels)
    groups, d_state = int(B.shape[1]), int(B.shape[2])
    group_width = channels // groups
    forward_groups = reverse_from // group_width
    dtype = u.dtype
    u32, dt = op.Cast(u, to=FLOAT), op.Cast(delta, to=FLOAT)
    if delta_bias is not None:
        dt = op.Add(dt, op.Unsqueeze(op.Cast(delta_bias, to=FLOAT),
                                     _shape(1)))
    if delta_softplus:
        dt = op.Softplus(dt)

    def token_major(tensor, width):
        """(b, k, l) with k = g * width -> (l, b, g, width)."""
        return op.Transpose(op.Reshape(tensor, _shape(batch, groups, width,
                                                      length)),
                        perm=[3, 0, 1, 2])

    A_grouped = op.Reshape(op.Cast(A, to=FLOAT),
                           _shape(groups, group_width, d_state))
    decays = op.Exp(op.Mul(op.Unsqueeze(token_major(dt, group_width),
                                        _shape(4)), A_grouped))
    B_steps, C_steps = (op.Unsqueeze(
        op.Transpose(op.Cast(t, to=FLOAT), perm=[3, 0, 1, 2]), _shape(3))
        for t in (B, C))  # (l, b, g, 1, n)
    inputs = op.Mul(op.Unsqueeze(token_major(op.Mul(dt, u32), group_width),
                                 _shape(4)), B_steps)
    parts = [(0, forward_groups), (forward_groups, groups)]
    parts = [(first, end) for first, end in parts if end > first]
    initial, sequences = [], []
    for first, end in parts:
        initial.append(op.ConstantOfShape(
            _shape(batch, end - first, group_width, d_state)))
        for tensor in (decays, inputs, C_steps):
            sequences.append(op.Slice(tensor, _shape(first), _shape(end),
                                      _shape(2)))
    directions = [0 if first < forward_groups else 1 for first, _ in parts]
    results = _node_with_outputs(
        'Scan', [*initial, *sequences], 2 * len(parts),
        body=_recurrence_body(len(parts)),
        num_scan_inputs=len(sequences),
        scan_input_directions=[d for d in directions for _ in range(3)],
        scan_output_directions=directions)
    outputs = results[len(parts):]  # (l, b, g_part, d/g) each
    y = outputs[0] if len(outputs) == 1 else op.Concat(*outputs, axis=2)
    y = op.Reshape(op.Transpose(y, perm=[1, 2, 3, 0]),
                   _shape(batch, channels, length))
    if D is not None:
        y = op.Add(y, op.Mul(op.Unsqueeze(op.Cast(D, to=FLOAT), _shape(1)),
                             u32))
    if z is not None:
        gate = op.Cast(z, to=FLOAT)
        if int(z.shape[1]) != channels:
            gate = op.Concat(gate, gate, axis=1)
        y = op.Mul(y, op.Mul(gate, op.Sigmoid(gate)))
    return (_averaged(op.Cast(y, to=dtype), reverse_from, average_directions),
            _unused_states(u, A))


def _portable_conv(x, weight, bias=None, reverse_from: int = 0):
    """Depthwise causal conv + SiLU per segment of output channels (one
    direction, consecutive input channels; see
    :func:`mmvim.ops.portable_conv.segments`): Slice, Pad, Conv (group =
    channels), x sigmoid(x); a look-ahead segment pads on the right and
    mirrors its taps. The segments' outputs are concatenated."""
    d_in, d_out = int(x.shape[1]), int(weight.shape[0])
    width = int(weight.shape[1])
    x32, weight32 = op.Cast(x, to=FLOAT), op.Cast(weight, to=FLOAT)
    bias32 = None if bias is None else op.Cast(bias, to=FLOAT)
    outputs = []
    for segment in segments(d_in, d_out, int(reverse_from)):
        channels = segment.end - segment.first
        source = op.Slice(x32, _shape(segment.source),
                          _shape(segment.source + channels), _shape(1))
        taps = op.Slice(weight32, _shape(segment.first), _shape(segment.end),
                        _shape(0))
        if segment.reverse:
            taps = op.Slice(taps, _shape(width - 1), _shape(-width - 1),
                            _shape(1), _shape(-1))
        pads = [0, 0, 0, 0, 0, width - 1] if segment.reverse else \
            [0, 0, width - 1, 0, 0, 0]
        conv_inputs = [op.Pad(source, _shape(*pads)),
                       op.Unsqueeze(taps, _shape(1))]
        if bias32 is not None:
            conv_inputs.append(op.Slice(bias32, _shape(segment.first),
                                        _shape(segment.end), _shape(0)))
        out = op.Conv(*conv_inputs, group=channels)
        outputs.append(op.Mul(out, op.Sigmoid(out)))
    out = outputs[0] if len(outputs) == 1 else op.Concat(*outputs, axis=1)
    return op.Cast(out, to=x.dtype)


def _schemas():
    """The ``mmvim`` domain's operators, as registered with onnx (so that
    onnxscript can call them and ``onnx.checker`` checks their nodes).
    docs/deployment.md states them for runtime implementers."""
    schema, parameter = onnx.defs.OpSchema, onnx.defs.OpSchema.FormalParameter
    optional = dict(
        param_option=onnx.defs.OpSchema.FormalParameterOption.Optional)
    activations = ('T', ['tensor(float)', 'tensor(float16)',
                         'tensor(bfloat16)', 'tensor(double)'],
                   'u, delta, B, C, z, x and the outputs')
    weights = ('W', ['tensor(float)', 'tensor(float16)', 'tensor(bfloat16)',
                     'tensor(double)'], 'A, D, delta_bias, weight, bias')
    integer = onnx.defs.OpSchema.AttrType.INT
    return [
        schema(
            'SelectiveScan', MMVIM_DOMAIN, 1,
            'Mamba selective scan, mmvim.ops.selective_scan semantics: '
            'y = (scan(u) + D u) * silu(z); channels from reverse_from on '
            'scan from the last token to the first.',
            inputs=[parameter('u', 'T'), parameter('delta', 'T'),
                    parameter('A', 'W'), parameter('B', 'T'),
                    parameter('C', 'T'), parameter('D', 'W', **optional),
                    parameter('z', 'T', **optional),
                    parameter('delta_bias', 'W', **optional)],
            outputs=[parameter('y', 'T')],
            type_constraints=[activations, weights],
            attributes=[
                onnx.defs.OpSchema.Attribute(
                    'delta_softplus', integer, 'softplus(delta + bias)',
                    required=True),
                onnx.defs.OpSchema.Attribute(
                    'reverse_from', integer,
                    'first channel scanned backwards (d: none)',
                    required=True)
            ]),
        schema(
            'CausalConv1dSilu', MMVIM_DOMAIN, 1,
            'silu(depthwise causal conv1d(x)): output channel c reads input '
            'channel c % d_in, as mmvim.ops.bidirectional_causal_conv1d_silu '
            '(or causal_conv1d_silu for d_out = d_in).',
            inputs=[parameter('x', 'T'), parameter('weight', 'W'),
                    parameter('bias', 'W', **optional)],
            outputs=[parameter('y', 'T')],
            type_constraints=[activations, weights],
            attributes=[
                onnx.defs.OpSchema.Attribute(
                    'reverse_from', integer,
                    'first output channel that looks ahead instead of back '
                    '(d_out: none)', required=True)
            ]),
    ]


def register_schemas() -> None:
    """Register the ``mmvim`` domain's schemas with onnx (once)."""
    for schema in _schemas():
        if not onnx.defs.has(schema.name, schema.domain):
            onnx.defs.register_schema(schema)


def _custom_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                 delta_softplus: bool = False, reverse_from: int = 0,
                 delta_weight=None, average_directions: bool = False,
                 save_states: bool = True):
    """One ``mmvim::SelectiveScan`` node (inference: y only), a low-rank
    delta's product before it and the directions' average after it in
    standard operators."""
    delta = _full_delta(delta, delta_weight, int(u.shape[1]))
    y = MMVIM_OPSET.SelectiveScan(u, delta, A, B, C, D, z, delta_bias,
                                  delta_softplus=int(delta_softplus),
                                  reverse_from=int(reverse_from))
    return (_averaged(y, int(reverse_from), average_directions),
            _unused_states(u, A))


def _custom_conv(x, weight, bias=None, reverse_from: int = 0):
    """One ``mmvim::CausalConv1dSilu`` node."""
    return MMVIM_OPSET.CausalConv1dSilu(x, weight, bias,
                                        reverse_from=int(reverse_from))


def _table(scan: Callable, conv: Callable) -> Dict[Callable, Callable]:
    table = {operator: scan
             for operator in _forward_operators('selective_scan')}
    table.update({operator: conv
                  for operator in _forward_operators('causal_conv1d_silu')})
    return table


def portable_table() -> Dict[Callable, Callable]:
    """Every defined forward operator -> its standard-ONNX translation."""
    return _table(_portable_scan, _portable_conv)


def custom_table() -> Dict[Callable, Callable]:
    """Every defined forward operator -> one node of the ``mmvim`` domain."""
    register_schemas()
    return _table(_custom_scan, _custom_conv)
