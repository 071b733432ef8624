"""fp32-recon: an fp32 graph rebuilt from the shipped int8 model's dequantized weights.

Where the fp32 original can't be downloaded, this is the quality reference. It is exact
for the int8 model's weights (the int8 rounding of weights stays; the run-time
re-quantization of activations goes):

- ``MatMulInteger(DQL(x), Wq) -> Cast -> Mul(x_scale * w_scale)``  ->  ``MatMul(x, W)``
  with ``W = (Wq - zp) * scale`` per column;
- ``ConvInteger(DQL(x), Wq) [+ re-quantized bias] -> Cast -> Mul(x_scale * w_scale)``
  -> ``Conv(x, W, bias)``, the float bias found by walking back from the bias Add through
  Reshape <- Cast <- Floor <- Div(bias, scale);
- ``com.microsoft.DynamicQuantizeLSTM`` -> ``LSTM`` (weights dequantized per direction
  and transposed from [dir, in, 4h] to ONNX's [dir, 4h, in]);
- ``Gather(Wq) -> DequantizeLinear`` -> ``Gather`` of the dequantized table;

then dead nodes and initializers are removed, dequantized weights shared by several
nodes are stored once, and stale ``value_info`` is dropped (later tools mis-type tensors
otherwise).
"""
from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from labkit import files


class ReconError(RuntimeError):
    pass


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self.inits = {i.name: i for i in self.g.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.consumers: dict[str, list] = collections.defaultdict(list)
        for n in self.g.node:
            for i in n.input:
                self.consumers[i].append(n)
        self.new_inits: dict[str, onnx.TensorProto] = {}
        self.replace: dict[int, list] = {}  # id(node) -> replacement nodes (at its position)
        self.drop: set[int] = set()  # ids of nodes whose output a replacement now produces

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            if name not in self.inits:
                raise ReconError(f"expected an initializer, got a computed tensor {name!r}")
            self._arrays[name] = numpy_helper.to_array(self.inits[name])
        return self._arrays[name]

    def only_consumer(self, name: str, op: str):
        cons = self.consumers.get(name, [])
        if len(cons) != 1 or cons[0].op_type != op:
            raise ReconError(f"{name}: expected one {op} consumer, got {[c.op_type for c in cons]}")
        return cons[0]

    def add_init(self, name: str, array: np.ndarray) -> str:
        if name not in self.new_inits and name not in self.inits:
            self.new_inits[name] = numpy_helper.from_array(array.astype(np.float32), name)
        return name

    def scale_init(self, mul_node) -> np.ndarray:
        """The weight scale of ``Mul(x_scale, w_scale)``: its initializer input."""
        found = [i for i in mul_node.input if i in self.inits]
        if len(found) != 1:
            raise ReconError(f"{mul_node.name}: expected one initializer scale input")
        return self.array(found[0]).astype(np.float32)


def _dequant(q: np.ndarray, zp: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) - zp.astype(np.float32)) * scale.astype(np.float32)


def _matmul_integer(G: _Graph, n) -> None:
    dql = G.producer[n.input[0]]
    if dql.op_type != "DynamicQuantizeLinear":
        raise ReconError(f"{n.name}: activation not from DynamicQuantizeLinear")
    cast = G.only_consumer(n.output[0], "Cast")
    mul = G.only_consumer(cast.output[0], "Mul")
    scale_mul = G.producer[[i for i in mul.input if i != cast.output[0]][0]]
    w_scale = G.scale_init(scale_mul)
    wq, wzp = G.array(n.input[1]), G.array(n.input[3])
    W = _dequant(wq, wzp.reshape(1, -1), w_scale.reshape(1, -1))
    wname = G.add_init(n.input[1] + "_dequantized", W)
    G.drop.update((id(cast), id(mul)))
    G.replace[id(n)] = [helper.make_node("MatMul", [dql.input[0], wname], [mul.output[0]],
                                         name=n.name.replace("_quant", "") + "_fp32")]


def _conv_integer(G: _Graph, n) -> None:
    dql = G.producer[n.input[0]]
    if dql.op_type != "DynamicQuantizeLinear":
        raise ReconError(f"{n.name}: activation not from DynamicQuantizeLinear")
    nxt = G.consumers[n.output[0]]
    if len(nxt) != 1:
        raise ReconError(f"{n.name}: expected one consumer")
    bias_name = None
    if nxt[0].op_type == "Add":
        add = nxt[0]
        other = [i for i in add.input if i != n.output[0]][0]
        node = G.producer[other]
        while node.op_type in ("Reshape", "Cast", "Floor"):
            node = G.producer[node.input[0]]
        if node.op_type != "Div":
            raise ReconError(f"{n.name}: bias path ends at {node.op_type}, expected Div")
        bias = G.array(node.input[0]).astype(np.float32)
        bias_name = G.add_init(node.input[0] + "_fp32", bias)
        cast = G.only_consumer(add.output[0], "Cast")
        G.drop.add(id(add))
    else:
        cast = G.only_consumer(n.output[0], "Cast")
    mul = G.only_consumer(cast.output[0], "Mul")
    scale_mul = G.producer[[i for i in mul.input if i != cast.output[0]][0]]
    w_scale = G.scale_init(scale_mul)
    wq, wzp = G.array(n.input[1]), G.array(n.input[3])
    shape = (-1,) + (1,) * (wq.ndim - 1)
    W = _dequant(wq, wzp.reshape(shape) if wzp.ndim else wzp, w_scale.reshape(shape) if w_scale.ndim else w_scale)
    wname = G.add_init(n.input[1] + "_dequantized", W)
    G.drop.update((id(cast), id(mul)))
    inputs = [dql.input[0], wname] + ([bias_name] if bias_name else [])
    conv = helper.make_node("Conv", inputs, [mul.output[0]], name=n.name.replace("_quant", "") + "_fp32")
    conv.attribute.extend(n.attribute)
    G.replace[id(n)] = [conv]


def _dynamic_quantize_lstm(G: _Graph, n) -> None:
    x, wq, rq, b, seq, h0, c0, p, ws, wzp, rs, rzp = (list(n.input) + [""] * 12)[:12]
    W = _dequant(G.array(wq), G.array(wzp).reshape(-1, 1, 1), G.array(ws).reshape(-1, 1, 1))
    R = _dequant(G.array(rq), G.array(rzp).reshape(-1, 1, 1), G.array(rs).reshape(-1, 1, 1))
    wname = G.add_init(wq + "_dequantized", np.ascontiguousarray(W.transpose(0, 2, 1)))
    rname = G.add_init(rq + "_dequantized", np.ascontiguousarray(R.transpose(0, 2, 1)))
    inputs = [x, wname, rname, b, seq, h0, c0, p]
    while inputs and inputs[-1] == "":
        inputs.pop()
    lstm = helper.make_node("LSTM", inputs, list(n.output), name=n.name.replace("_quant", "") + "_fp32")
    lstm.attribute.extend(n.attribute)
    G.replace[id(n)] = [lstm]


def _dequantize_linear(G: _Graph, n) -> None:
    gather = G.producer.get(n.input[0])
    if gather is None or gather.op_type != "Gather" or gather.input[0] not in G.inits:
        raise ReconError(f"{n.name}: expected Gather of an int8 table before it")
    table = _dequant(G.array(gather.input[0]), G.array(n.input[2]), G.array(n.input[1]))
    tname = G.add_init(gather.input[0] + "_dequantized", table)
    new = helper.make_node("Gather", [tname, gather.input[1]], [n.output[0]],
                           name=gather.name.replace("_quant", "") + "_fp32")
    new.attribute.extend(gather.attribute)
    G.replace[id(n)] = [new]


_REWRITES = {
    "MatMulInteger": _matmul_integer,
    "ConvInteger": _conv_integer,
    "DynamicQuantizeLSTM": _dynamic_quantize_lstm,
    "DequantizeLinear": _dequantize_linear,
}


def _prune(graph: onnx.GraphProto) -> int:
    """Remove nodes whose outputs nobody needs; returns how many were removed."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(i for i in node.input if i)
    removed = len(graph.node) - len(keep)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return removed


def rebuild_fp32(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    G = _Graph(model)
    counts = collections.Counter()
    for n in list(G.g.node):
        fn = _REWRITES.get(n.op_type)
        if fn is not None:
            fn(G, n)
            counts[n.op_type] += 1
    nodes = []
    for n in G.g.node:
        if id(n) not in G.drop:
            nodes.extend(G.replace.get(id(n), [n]))
    del G.g.node[:]
    G.g.node.extend(nodes)
    G.g.initializer.extend(G.new_inits.values())
    removed = _prune(G.g)
    del G.g.value_info[:]
    names = [i.name for i in G.g.initializer]
    if len(names) != len(set(names)):
        raise ReconError("duplicate initializer names after rebuild")
    left = [n.op_type for n in G.g.node if n.op_type in _REWRITES or n.op_type == "DynamicQuantizeLinear"]
    if left:
        raise ReconError(f"quantized nodes left after rebuild: {collections.Counter(left)}")
    stats = {"replaced": dict(counts), "pruned_nodes": removed, "nodes": len(G.g.node)}
    return model, stats


def build_fp32_recon(int8_path: str | os.PathLike, out_path: str | os.PathLike) -> dict:
    """Rebuild and save atomically; returns statistics (replaced ops, node count)."""
    model = onnx.load(str(int8_path))
    model, stats = rebuild_fp32(model)
    onnx.checker.check_model(model)
    out = Path(out_path)
    with files.atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    stats["bytes"] = out.stat().st_size
    return stats
