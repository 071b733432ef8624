"""Part B (labkit.optimize.split_cut) made to run on pieces of an utterance.

Buckets (:func:`bucket_model`): B padded along the frame axis to a fixed length and
trimmed after. Padding alone is not exact: the vocoder's AdaIN layers normalize over the
whole time axis, so padded frames move every frame's statistics. The bucketed B takes the
valid frame count as an extra input (``frames``) and computes each instance norm over the
valid samples only (:func:`mask_instance_norms`); every ``Conv``'s input is zeroed past
the valid length, so the valid region sees the zeros it saw unpadded.

Windows (:func:`phase_models`): B with an extra input that continues the harmonic
source's phase, and the model that computes that phase, for vocoding a window of frames.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from labkit.engine.rewrites.graph import Graph, prune
from labkit.engine.rewrites.instance_norm import reduce_axes
from labkit.engine.split_runtime import FRAMES, PHASE0
from labkit.optimize.split_cut import SplitError, closure, extract, value_info

#: longest time axis a bucketed part B masks (its finest resolution is 120 steps per frame:
#: 2^19 covers 4,369 frames, 109 s; a 510-token piece at speed 0.5 is about 2,500)
MAX_TIME = 1 << 19


def _const_i64(g: Graph, base: str, values) -> str:
    return g.add_init(base, np.asarray(values, dtype=np.int64))


class _Masks:
    """Valid-length masks built in the graph, one per tensor whose time axis is masked:
    ``valid = T - (T // Fb) * (Fb - frames)`` for a time axis of length ``T = k Fb + c``
    (``c`` the few samples a reflection pad adds), so every resolution of the vocoder
    (frames, 2x for F0, x10, x60 after the upsamplers) gets its own exact valid length.

    Built from ops CoreML's tables hold (Shape, Cast, Div, Mul, Sub, Slice, Clip: no Range,
    no Less): ``mask = Clip(valid - idx, 0, 1)`` with ``idx`` a slice of a constant
    0, 1, 2, ... of :data:`MAX_TIME`; with static input shapes the shape arithmetic folds
    away and only the multiply by the mask is left."""

    def __init__(self, g: Graph, frames_axis_tensor: str, frames_axis: int):
        self.g = g
        self.new: list = []
        self.idx = g.add_init("time_index", np.arange(MAX_TIME, dtype=np.float32))
        self.zero = g.add_init("zero", np.array([0], np.int64))
        self.fzero = g.add_init("fzero", np.array(0.0, np.float32))
        self.fone = g.add_init("fone", np.array(1.0, np.float32))
        fb = g.fresh("bucket_frames")
        fbf = g.fresh("bucket_frames_f")
        self.spare = g.fresh("spare_frames")
        self.new += [helper.make_node("Shape", [frames_axis_tensor], [fb], name=fb,
                                      start=frames_axis, end=frames_axis + 1),
                     helper.make_node("Cast", [fb], [fbf], name=fbf, to=TensorProto.FLOAT),
                     helper.make_node("Sub", [fbf, FRAMES], [self.spare], name=self.spare)]
        self.fb = fb
        self.memo: dict[str, tuple[str, str]] = {}

    def mask(self, x: str) -> tuple[str, str]:
        """(mask [T] float, valid count float [1]) for the last axis of ``x``; the nodes go
        right after ``x``'s producer (they read only its shape), once per tensor."""
        if x in self.memo:
            return self.memo[x]
        g, n = self.g, []
        t, k, tf, kf, lost, valid, idx, d, m = (g.fresh(s) for s in (
            "T", "k", "T_f", "k_f", "lost", "valid", "idx", "valid_minus_idx", "mask"))
        n += [helper.make_node("Shape", [x], [t], name=t, start=-1),
              helper.make_node("Div", [t, self.fb], [k], name=k),
              helper.make_node("Cast", [t], [tf], name=tf, to=TensorProto.FLOAT),
              helper.make_node("Cast", [k], [kf], name=kf, to=TensorProto.FLOAT),
              helper.make_node("Mul", [kf, self.spare], [lost], name=lost),
              helper.make_node("Sub", [tf, lost], [valid], name=valid),
              helper.make_node("Slice", [self.idx, self.zero, t], [idx], name=idx),
              helper.make_node("Sub", [valid, idx], [d], name=d),
              helper.make_node("Clip", [d, self.fzero, self.fone], [m], name=m)]
        p = g.producer.get(x)
        pos = 0 if p is None else next(i for i, node in enumerate(g.nodes) if node is p) + 1
        g.nodes[pos:pos] = n
        self.memo[x] = (m, valid)
        return m, valid


def mask_instance_norms(g: Graph, masks: _Masks) -> list[str]:
    """Every instance norm over the last axis computed over the valid samples only: the
    exported chain (ReduceMean -> Sub -> square -> ReduceMean -> Add -> Sqrt -> Div), and
    the one ``InstanceNormalization`` it becomes in a graph rewritten by
    labkit.engine.rewrites.instance_norm (what a variant with its tail rewritten ships)."""
    axes = _const_i64(g, "axes", [-1])  # (pruned with the graph where no norm reads it)
    sites = []
    for node in list(g.nodes):
        if node.op_type == "ReduceMean":
            site = _mask_norm_chain(g, masks, node, axes)
        elif node.op_type == "InstanceNormalization":
            site = _mask_norm_op(g, masks, node, axes)
        else:
            continue
        if site is not None:
            g.reindex()
            sites.append(site)
    return sites


def _masked_mean(g: Graph, masks: _Masks, x: str, src: str, out: str, axes: str) -> list:
    """Nodes computing ``out`` = the mean of ``src`` over the valid samples of ``x``'s last
    axis (``src`` has ``x``'s shape)."""
    m, vf = masks.mask(x)
    xm, s = g.fresh(out + "_m"), g.fresh(out + "_sum")
    return [helper.make_node("Mul", [src, m], [xm], name=xm),
            helper.make_node("ReduceSum", [xm, axes], [s], name=s, keepdims=1),
            helper.make_node("Div", [s, vf], [out], name=g.fresh(out + "_div"))]


def _mask_norm_chain(g: Graph, masks: _Masks, rm1, axes: str) -> str | None:
    if reduce_axes(g, rm1) not in ([2], [-1]):
        return None
    x = rm1.input[0]
    users = g.consumers.get(rm1.output[0], [])
    if len(users) != 1 or users[0].op_type != "Sub" or list(users[0].input) != [x, rm1.output[0]]:
        return None
    d = users[0].output[0]
    sq = [u for u in g.consumers.get(d, []) if u.op_type in ("Mul", "Pow") and u.input[0] == d]
    if len(sq) != 1:
        return None
    rm2s = g.consumers.get(sq[0].output[0], [])
    if len(rm2s) != 1 or rm2s[0].op_type != "ReduceMean" or reduce_axes(g, rm2s[0]) not in ([2], [-1]):
        return None
    rm2 = rm2s[0]
    g.replace(rm1, _masked_mean(g, masks, x, x, rm1.output[0], axes))
    g.replace(rm2, _masked_mean(g, masks, x, rm2.input[0], rm2.output[0], axes))
    return rm1.output[0]


def _mask_norm_op(g: Graph, masks: _Masks, norm, axes: str) -> str | None:
    """``InstanceNormalization(x, scale, B)`` over [N, C, T] as the masked chain, then the
    per-channel scale and bias (left out where they are the rewrite's 1 and 0)."""
    x, scale, bias = norm.input[0], g.const(norm.input[1]), g.const(norm.input[2])
    if scale is None or bias is None:
        return None
    eps = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
    y = norm.output[0]
    mean, d, sq, var, ve, sd = (g.fresh(y + s) for s in ("_mean", "_d", "_sq", "_var", "_ve", "_sd"))
    normed = y if (np.all(scale == 1) and np.all(bias == 0)) else g.fresh(y + "_n")
    new = [*_masked_mean(g, masks, x, x, mean, axes),
           helper.make_node("Sub", [x, mean], [d], name=d),
           helper.make_node("Mul", [d, d], [sq], name=sq),
           *_masked_mean(g, masks, x, sq, var, axes),
           helper.make_node("Add", [var, g.add_init("eps", np.array(eps, np.float32))], [ve], name=ve),
           helper.make_node("Sqrt", [ve], [sd], name=sd),
           helper.make_node("Div", [d, sd], [normed], name=g.fresh(y + "_div"))]
    if normed != y:
        scaled = g.fresh(y + "_scaled")
        col = lambda v, n: g.add_init(n, v.astype(np.float32).reshape(1, -1, 1))  # noqa: E731
        new += [helper.make_node("Mul", [normed, col(scale, "in_scale")], [scaled], name=scaled),
                helper.make_node("Add", [scaled, col(bias, "in_bias")], [y], name=g.fresh(y + "_bias"))]
    g.replace(norm, new)
    return y


def mask_conv_inputs(g: Graph, masks: _Masks) -> list[str]:
    """Zero every float ``Conv``/``ConvTranspose`` input past its valid length (time last):
    the valid region's edge then sees zeros, as unpadded. (``ConvInteger`` reads uint8:
    :func:`bucket_model` masks the float tensor before its DynamicQuantizeLinear.)"""
    sites = []
    memo: dict[str, str] = {}
    for node in list(g.nodes):
        if node.op_type not in ("Conv", "ConvTranspose", "ConvInteger"):
            continue
        x = node.input[0]
        if g.const(x) is not None:
            continue
        if node.op_type == "ConvInteger":
            continue
        if x not in memo:
            m, _ = masks.mask(x)
            xm = g.fresh(x + "_masked")
            idx = next(i for i, n in enumerate(g.nodes) if n is node)
            g.nodes[idx:idx] = [helper.make_node("Mul", [x, m], [xm], name=xm)]
            memo[x] = xm
        node.input[0] = memo[x]
        sites.append(node.output[0])
    g.reindex()
    return sites


def bucket_model(b: onnx.ModelProto, frames_input: str, frames_axis: int = 2,
                 mask_convs: bool = True) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Part B for padded inputs: an extra ``frames`` input (valid frames, float [1]);
    instance norms over the valid samples; with ``mask_convs`` every float convolution's
    input (and every quantized one's, before quantization) zeroed past the valid length."""
    model = copy.deepcopy(b)
    g = Graph(model)
    masks = _Masks(g, frames_input, frames_axis)
    norms = mask_instance_norms(g, masks)
    if not norms:
        raise SplitError("bucketing: no instance-norm chain over the time axis found in part B")
    convs: list[str] = []
    if mask_convs:
        convs = mask_conv_inputs(g, masks)
        # int8: the DynamicQuantizeLinear in front of ConvInteger sees the masked tensor
        for node in list(g.nodes):
            if node.op_type != "DynamicQuantizeLinear" or g.const(node.input[0]) is not None:
                continue
            users = g.consumers.get(node.output[0], [])
            if not users or not all(u.op_type == "ConvInteger" for u in users):
                continue
            m, _ = masks.mask(node.input[0])
            xm = g.fresh(node.input[0] + "_masked")
            g.replace(node, [helper.make_node("Mul", [node.input[0], m], [xm], name=xm), node])
            node.input[0] = xm
            convs.append(node.output[0])
        g.reindex()
    g.nodes[0:0] = masks.new
    g.commit()
    model.graph.input.append(value_info(FRAMES, TensorProto.FLOAT, [1]))
    del model.graph.value_info[:]
    prune(model)
    return model, {"masked_norms": len(norms), "masked_convs": len(convs)}


def _const_value(g: onnx.GraphProto, name: str) -> np.ndarray | None:
    for t in g.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in g.node:
        if n.output and n.output[0] == name and n.op_type == "Constant":
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def phase_models(b: onnx.ModelProto, boundary: Sequence[str]
                 ) -> tuple[onnx.ModelProto, onnx.ModelProto, dict[str, Any]] | None:
    """For vocoding a window of frames (labkit.engine.prosody): part B with an extra
    input ``phase0`` added to the harmonic source's running phase, and the ``phase``
    model (the F0 curve in, that running phase out).

    Kokoro's source is sin(2 pi x cumsum(f0 x harmonic / sample rate)) over the whole
    input, so part B run on frames [s, e) starts every harmonic at phase 0, where the
    whole run had reached cumsum[s - 1]: the two sides of a seam would be out of phase.
    ``phase0`` = the phase model's output just before the window (taken along the CumSum
    axis) makes the window continue the whole run's source. The CumSum is found by
    structure: the one in part B that reads a single boundary tensor (the F0 curve);
    None when part B has no such source (a window then needs nothing continued)."""
    g = b.graph
    found = []
    for n in g.node:
        if n.op_type != "CumSum":
            continue
        _, reached = closure(g, [n.output[0]], set())
        reads = [t for t in boundary if t in reached]
        if len(reads) == 1 and reached <= set(boundary):
            found.append((n, reads[0]))
    if not found:
        return None
    if len(found) > 1:
        raise SplitError(f"part B: {len(found)} CumSum nodes read one boundary tensor alone "
                         "(expected one: the harmonic source's phase)")
    cs, f0 = found[0]
    axis = _const_value(g, cs.input[1])
    if axis is None:
        raise SplitError(f"{cs.name}: the CumSum axis is not a constant")
    axis = int(np.asarray(axis).ravel()[0])
    running = cs.output[0]
    info = {f0: value_info(f0, TensorProto.FLOAT, None), running: value_info(running, TensorProto.FLOAT, None)}
    phase = extract(b, [f0], [running], info, info, "kokoro_source_phase")
    out = copy.deepcopy(b)
    go = out.graph
    cont = running + "_from_phase0"
    for n in go.node:
        for k, i in enumerate(n.input):
            if i == running:
                n.input[k] = cont
    nodes = list(go.node)
    at = next(k for k, n in enumerate(nodes) if running in n.output)
    nodes.insert(at + 1, helper.make_node("Add", [running, PHASE0], [cont], name=cont))
    del go.node[:]
    go.node.extend(nodes)
    go.input.append(value_info(PHASE0, TensorProto.FLOAT, None))
    return out, phase, {"phase_of": f0, "phase_axis": axis}
