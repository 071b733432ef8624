"""The cut: Kokoro split into part A (text encoder, duration predictor, alignment: dynamic,
LSTM) and part B (decoder/vocoder: convolutions), with the tensors between them as A's
outputs and B's inputs.

The boundary is found in the graph, not typed in: the non-constant tensors that the
decoder's nodes read from outside the decoder (the aligned features ``asr`` [1, 512, F],
the F0 and N curves [1, 2F]); a ``DynamicQuantizeLinear`` on the boundary (int8) stays
in B; graph inputs B needs (``style``) become B's inputs too. :func:`split` checks that B
reaches no other graph input. Part B made to run on pieces is labkit.optimize.part_b; the
files and their check are labkit.optimize.split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import onnx
from onnx import TensorProto, helper


class SplitError(ValueError):
    """The graph cannot be cut as asked; the message says where."""


def is_decoder(name: str) -> bool:
    """Node names of Kokoro's decoder (``/decoder/...`` from the export, ``decoder.`` from
    the quantizer's bias nodes)."""
    return name.startswith("/decoder/") or name.startswith("decoder.")


def _dynamic(g: onnx.GraphProto) -> set[str]:
    """Tensors that depend on a graph input (everything else is a constant)."""
    inits = {i.name for i in g.initializer}
    dyn = {i.name for i in g.input if i.name not in inits}
    for n in g.node:
        if any(i in dyn for i in n.input):
            dyn.update(n.output)
    return dyn


def find_boundary(model: onnx.ModelProto) -> list[str]:
    """The tensors between part A and part B, in graph order (see the module's doc)."""
    g = model.graph
    dyn = _dynamic(g)
    prod = {o: n for n in g.node for o in n.output}
    graph_inputs = {i.name for i in g.input}
    below = set()  # non-constant tensors downstream of a decoder node (not the style split)
    for n in g.node:
        seed = is_decoder(n.name) and not any(i in graph_inputs for i in n.input)
        if seed or any(i in below for i in n.input):
            below.update(o for o in n.output if o in dyn)
    out: list[str] = []
    for n in g.node:
        if not is_decoder(n.name):
            continue
        for i in n.input:
            p = prod.get(i)
            if i not in dyn or p is None or is_decoder(p.name) or i in below:
                continue
            if p.op_type == "DynamicQuantizeLinear":  # int8: quantize inside B
                i = p.input[0]
            if i not in out:
                out.append(i)
    if not out:
        raise SplitError("no decoder nodes (names /decoder/... or decoder.) read from the "
                         "encoder: not a Kokoro graph this cut knows")
    order = {o: k for k, n in enumerate(g.node) for o in n.output}
    return sorted(out, key=lambda t: order.get(t, -1))


def closure(g: onnx.GraphProto, outputs: Iterable[str], stop: set[str]) -> tuple[list, set[str]]:
    """Nodes needed for ``outputs`` when ``stop`` tensors are given, and the graph inputs
    reached."""
    prod = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    graph_inputs = {i.name for i in g.input}
    need: set[int] = set()
    reached: set[str] = set()
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        t = stack.pop()
        if not t or t in seen or t in stop:
            continue
        seen.add(t)
        if t in inits:
            continue
        p = prod.get(t)
        if p is None:
            if t in graph_inputs:
                reached.add(t)
            continue
        if id(p) not in need:
            need.add(id(p))
            stack.extend(p.input)
            for a in p.attribute:  # subgraphs read outer tensors by name
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.extend(i for sn in a.g.node for i in sn.input)
    return [n for n in g.node if id(n) in need], reached


def value_info(name: str, elem: int, dims: Sequence[Any] | None) -> onnx.ValueInfoProto:
    """A tensor's description as a graph input or output (dims None: shape unknown)."""
    return helper.make_tensor_value_info(name, elem, dims)


def extract(model: onnx.ModelProto, inputs: Sequence[str], outputs: Sequence[str],
            input_info: dict[str, onnx.ValueInfoProto], output_info: dict[str, onnx.ValueInfoProto],
            name: str) -> onnx.ModelProto:
    """The subgraph computing ``outputs`` from ``inputs`` (and the initializers): a new
    model with the same opsets. Raises :class:`SplitError` if it needs any other graph input."""
    g = model.graph
    nodes, reached = closure(g, outputs, set(inputs))
    extra = reached - set(inputs)
    if extra:
        raise SplitError(f"{name}: needs graph input(s) {sorted(extra)} beyond {list(inputs)}")
    used = {i for n in nodes for i in n.input} | set(outputs)
    inits = [t for t in g.initializer if t.name in used]
    graph = helper.make_graph(list(nodes), name, [input_info[i] for i in inputs],
                              [output_info[o] for o in outputs], initializer=inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import),
                            producer_name="labkit.optimize.split")
    out.ir_version = model.ir_version
    return out


@dataclass
class Parts:
    a: onnx.ModelProto
    b: onnx.ModelProto
    boundary: list[str]
    b_inputs: list[str]


def split(model: onnx.ModelProto) -> Parts:
    """Part A (graph inputs -> boundary) and part B (boundary + graph inputs it needs -> audio)."""
    g = model.graph
    boundary = find_boundary(model)
    inits = {i.name for i in g.initializer}
    graph_inputs = [i for i in g.input if i.name not in inits]
    audio = g.output[0].name
    _, reached = closure(g, [audio], set(boundary))
    b_inputs = boundary + [i.name for i in graph_inputs if i.name in reached]
    bad = [i for i in reached if i not in ("style",)]
    if bad:
        raise SplitError(f"part B would need graph input(s) {bad}: the boundary "
                         f"{boundary} does not separate the decoder")
    outs = {o.name: o for o in g.output}
    info = {i.name: i for i in graph_inputs}
    for t in boundary:
        info[t] = value_info(t, TensorProto.FLOAT, None)
    b_out = {audio: outs[audio]}
    a_outputs = boundary + [o.name for o in g.output if o.name != audio]  # durations, if any
    a_info = {**{t: info[t] for t in boundary}, **outs}
    a = extract(model, [i.name for i in graph_inputs], a_outputs, info, a_info, "kokoro_part_a")
    b = extract(model, b_inputs, [audio], info, b_out, "kokoro_part_b")
    return Parts(a, b, boundary, b_inputs)
