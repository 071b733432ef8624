"""Cut Kokoro into fixed-shape stages: part A (text encoder, duration predictor, alignment:
dynamic, LSTM) and part B (decoder/vocoder: convolutions), with the tensors between them
as A's outputs and B's inputs. Native CoreML ports of Kokoro cut it this way: A stays off
the Neural Engine, B runs there with fixed-length buckets.

The boundary is found in the graph, not typed in: the non-constant tensors that the
decoder's nodes read from outside the decoder (the aligned features ``asr`` [1, 512, F],
the F0 and N curves [1, 2F]); a ``DynamicQuantizeLinear`` on the boundary (int8) stays
in B; graph inputs B needs (``style``) become B's inputs too. :func:`split` checks
that B reaches no other graph input; :func:`check_split` that A then B gives the whole
graph's audio.

Buckets (:func:`bucket_model`): B padded along the frame axis to a fixed length and
trimmed after. Padding alone is not exact: the vocoder's AdaIN layers normalize over the
whole time axis, so padded frames move every frame's statistics. The bucketed B takes the
valid frame count as an extra input (``frames``) and computes each instance norm over
the valid samples only (:func:`mask_instance_norms`); every ``Conv``'s input is zeroed
past the valid length, so the valid region sees the zeros it saw unpadded.
:func:`check_split` measures the standard LSD of split and bucketed audio to the whole graph.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from labkit import files, progress
from labkit.config import SessionConfig
from labkit.engine import rewrites, runtime, split_runtime
from labkit.engine.sessions import n_tokens, new_session, probe_config, probe_feeds
from labkit.engine.rewrites.graph import Graph, prune
from labkit.engine.rewrites.instance_norm import reduce_axes
from labkit.engine.split_runtime import (FRAMES, PHASE0, SplitMissing, SplitParts, bucket_for,
                                         pad_frames, split_paths)
from labkit.quality import lsd_db

#: longest time axis a bucketed part B masks (its finest resolution is 120 steps per frame:
#: 2^19 covers 4,369 frames, 109 s; a 510-token piece at speed 0.5 is about 2,500)
MAX_TIME = 1 << 19


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


def _closure(g: onnx.GraphProto, outputs: Iterable[str], stop: set[str]) -> tuple[list, set[str]]:
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


def _vi(name: str, elem: int, dims: Sequence[Any] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def extract(model: onnx.ModelProto, inputs: Sequence[str], outputs: Sequence[str],
            input_info: dict[str, onnx.ValueInfoProto], output_info: dict[str, onnx.ValueInfoProto],
            name: str) -> onnx.ModelProto:
    """The subgraph computing ``outputs`` from ``inputs`` (and the initializers): a new
    model with the same opsets. Raises :class:`SplitError` if it needs any other graph input."""
    g = model.graph
    nodes, reached = _closure(g, outputs, set(inputs))
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
    _, reached = _closure(g, [audio], set(boundary))
    b_inputs = boundary + [i.name for i in graph_inputs if i.name in reached]
    bad = [i for i in reached if i not in ("style",)]
    if bad:
        raise SplitError(f"part B would need graph input(s) {bad}: the boundary "
                         f"{boundary} does not separate the decoder")
    outs = {o.name: o for o in g.output}
    info = {i.name: i for i in graph_inputs}
    for t in boundary:
        info[t] = _vi(t, TensorProto.FLOAT, None)
    b_out = {audio: outs[audio]}
    a_outputs = boundary + [o.name for o in g.output if o.name != audio]  # durations, if any
    a_info = {**{t: info[t] for t in boundary}, **outs}
    a = extract(model, [i.name for i in graph_inputs], a_outputs, info, a_info, "kokoro_part_a")
    b = extract(model, b_inputs, [audio], info, b_out, "kokoro_part_b")
    return Parts(a, b, boundary, b_inputs)


# -- buckets -------------------------------------------------------------------------------
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
    """The exported instance-norm chain (ReduceMean -> Sub -> square -> ReduceMean -> Add ->
    Sqrt -> Div over the last axis) computed over the valid samples only."""
    sites = []
    for rm1 in list(g.nodes):
        if rm1.op_type != "ReduceMean" or reduce_axes(g, rm1) not in ([2], [-1]):
            continue
        x = rm1.input[0]
        users = g.consumers.get(rm1.output[0], [])
        if len(users) != 1 or users[0].op_type != "Sub" or list(users[0].input) != [x, rm1.output[0]]:
            continue
        sub = users[0]
        d = sub.output[0]
        sq = [u for u in g.consumers.get(d, []) if u.op_type in ("Mul", "Pow") and u.input[0] == d]
        if len(sq) != 1:
            continue
        rm2s = g.consumers.get(sq[0].output[0], [])
        if len(rm2s) != 1 or rm2s[0].op_type != "ReduceMean" or reduce_axes(g, rm2s[0]) not in ([2], [-1]):
            continue
        rm2 = rm2s[0]
        m, vf = masks.mask(x)
        axes = _const_i64(g, "axes", [-1])

        def masked_mean(src: str, out: str, base: str) -> list:
            xm, s = g.fresh(base + "_m"), g.fresh(base + "_sum")
            return [helper.make_node("Mul", [src, m], [xm], name=xm),
                    helper.make_node("ReduceSum", [xm, axes], [s], name=s, keepdims=1),
                    helper.make_node("Div", [s, vf], [out], name=g.fresh(base + "_div"))]

        g.replace(rm1, masked_mean(x, rm1.output[0], "mean"))
        g.replace(rm2, masked_mean(rm2.input[0], rm2.output[0], "var"))
        g.reindex()
        sites.append(rm1.output[0])
    return sites


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
    model.graph.input.append(_vi(FRAMES, TensorProto.FLOAT, [1]))
    del model.graph.value_info[:]
    prune(model)
    return model, {"masked_norms": len(norms), "masked_convs": len(convs)}


# -- windows: part B continuing the harmonic source's phase -------------------------------
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
        _, reached = _closure(g, [n.output[0]], set())
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
    info = {f0: _vi(f0, TensorProto.FLOAT, None), running: _vi(running, TensorProto.FLOAT, None)}
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
    go.input.append(_vi(PHASE0, TensorProto.FLOAT, None))
    return out, phase, {"phase_of": f0, "phase_axis": axis}


# -- files, cached by input hash ---------------------------------------------------------
def samples_per_frame(parts: Parts, feeds_list: Sequence[dict[str, np.ndarray]],
                      shapes: dict[str, list[int]] | None = None) -> int:
    """Audio samples part B makes per frame, measured (never assumed): the same whole
    number on every input, or :class:`SplitError`. ``shapes`` gets each boundary tensor's
    shape with its last axis as a multiple of the frames (asr [1, 512, 1], F0 [1, 2])."""
    sa, sb = new_session(parts.a, probe_config()), new_session(parts.b, probe_config())
    seen = set()
    for feeds in feeds_list:
        bound = dict(zip(parts.boundary, sa.run(parts.boundary, feeds)))
        frames0 = bound[parts.boundary[0]].shape[-1]
        if shapes is not None:
            for name, v in bound.items():
                shapes[name] = list(v.shape[:-1]) + [v.shape[-1] // frames0]
        b_feeds = {n: bound[n] if n in bound else feeds[n] for n in parts.b_inputs}
        audio = sb.run(None, b_feeds)[0]
        frames = bound[parts.boundary[0]].shape[-1]
        if audio.size % frames:
            raise SplitError(f"{audio.size} samples for {frames} frames: not a whole number "
                             "per frame; part B cannot be trimmed exactly")
        seen.add(audio.size // frames)
    if len(seen) != 1:
        raise SplitError(f"samples per frame differ between inputs: {sorted(seen)}")
    return seen.pop()


def split_files(model_path: str | os.PathLike, cache_dir: str | os.PathLike,
                b_rewrites: Sequence[str] = ()) -> SplitParts:
    """Part A, part B and the bucketed part B of ``model_path``, written once under
    ``cache_dir`` (:func:`labkit.engine.split_runtime.split_paths`: keyed by the model's
    sha256, the edit version and ``b_rewrites``, graph rewrites for part B from
    :mod:`labkit.engine.rewrites` such as ``reflect_pad``, checked against the unrewritten
    part B before use)."""
    paths = split_paths(model_path, cache_dir, b_rewrites)
    try:
        return SplitParts.locate(model_path, cache_dir, b_rewrites)
    except SplitMissing:
        pass
    with progress.task(f"split build of {Path(model_path).name}", total=4) as bar:
        return _build_split(model_path, cache_dir, b_rewrites, paths, bar)


def _build_split(model_path, cache_dir, b_rewrites: Sequence[str], paths: dict[str, Path],
                 bar: progress.Task) -> SplitParts:
    model = onnx.load(str(model_path))
    parts = split(model)
    bar.advance("parts A and B cut")
    feeds = [probe_feeds(24), probe_feeds(60, seed=1)]
    shapes: dict[str, list[int]] = {}
    spf = samples_per_frame(parts, feeds, shapes)
    bar.advance("samples per frame probed")
    b = parts.b
    checks: dict[str, Any] = {}
    if b_rewrites:
        b, found = rewrites.apply(b, list(b_rewrites))
        sites = [t for v in found.values() for t in v]
        sa = new_session(parts.a, probe_config())
        b_feeds = []
        for f in feeds:
            bound = dict(zip(parts.boundary, sa.run(parts.boundary, f)))
            b_feeds.append({n: bound[n] if n in bound else f[n] for n in parts.b_inputs})
        res = rewrites.check(parts.b, b, b_feeds, sites=sites)
        if not res.passed:
            raise rewrites.RewriteError(f"part B rewrites {list(b_rewrites)} failed their check: "
                                        f"{res.reason}; not used")
        checks = {"sites": {k: len(v) for k, v in found.items()}, "check": res.to_dict()}
    bucketed, masked = bucket_model(b, parts.boundary[0])
    phased = phase_models(b, parts.boundary)
    b_phase, phase, phase_meta = phased or (None, None, {"phase_of": None})
    bar.advance("bucketed and phase models made")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    for k, m in (("a", parts.a), ("b", b), ("b_bucketed", bucketed), ("b_phase", b_phase),
                 ("phase", phase)):
        if m is None:
            continue
        with files.atomic_path(paths[k]) as tmp:
            onnx.save(m, str(tmp))
    meta = {"source": str(Path(model_path).resolve()), "boundary": parts.boundary,
            "b_inputs": parts.b_inputs, "a_outputs": [o.name for o in parts.a.graph.output],
            "samples_per_frame": spf, "boundary_shapes": shapes,
            "nodes": {"whole": len(model.graph.node), "a": len(parts.a.graph.node),
                      "b": len(b.graph.node), "b_bucketed": len(bucketed.graph.node)},
            "b_rewrites": checks, **masked, **phase_meta}
    files.write_json(paths["meta"], meta)
    bar.advance("saved")
    return SplitParts.locate(model_path, cache_dir, b_rewrites)


def ensure_for(cfg: Any) -> SplitParts | None:
    """The split parts a LabConfig runs on (``split.enabled`` or ``chunking.prosody:
    sentence``, e.g. from best.json), built once into its split cache when missing (a
    machine with the journal's best.json and a fresh cache); None when it runs whole."""
    if not split_runtime.uses_split(cfg):
        return None
    return split_files(runtime.timed_model(cfg), split_runtime.split_dir(cfg), cfg.split.b_rewrites)


# -- the check: split and bucketed audio against the whole graph --------------------------
def check_split(whole: Any, parts: SplitParts, feeds_list: Sequence[dict[str, np.ndarray]],
                buckets: Sequence[int], session_cfg: SessionConfig | None = None,
                every_fitting: bool = False) -> dict[str, Any]:
    """Standard LSD (dB) of the split audio (A then B at the exact length) and of the
    bucketed audio at the bucket the engine would use (``every_fitting``: at every bucket
    that fits), to the whole graph's audio, per
    input (its token count and frames); ``max_lsd_db`` over all of them and
    ``max_lsd_db_by_bucket``. Lengths must match exactly (a trimmed bucket that does not
    is a failed check, reported as such)."""
    s = session_cfg or SessionConfig()
    whole_s = new_session(whole, s)
    sa, sb = new_session(parts.a, s), new_session(parts.b, s)
    sbb = new_session(parts.b_bucketed, s)
    boundary, b_inputs = parts.meta["boundary"], parts.meta["b_inputs"]
    spf = int(parts.meta["samples_per_frame"])
    rows: list[dict[str, Any]] = []
    by_bucket: dict[str, float] = {}
    failures: list[str] = []
    for feeds in feeds_list:
        ref = np.asarray(whole_s.run(None, feeds)[0], np.float32).ravel()
        bound = [np.asarray(v) for v in sa.run(boundary, feeds)]
        frames = int(bound[0].shape[-1])
        extra = {n: feeds[n] for n in b_inputs if n not in boundary}
        split_audio = np.asarray(sb.run(None, {**dict(zip(boundary, bound)), **extra})[0],
                                 np.float32).ravel()
        row: dict[str, Any] = {"tokens": n_tokens(feeds), "frames": frames,
                               "split_lsd_db": _lsd(ref, split_audio, failures, "split")}
        fits = sorted({bucket_for(frames, buckets)}
                      | ({b for b in buckets if b >= frames} if every_fitting else set()))
        row["buckets"] = {}
        for fb in fits:
            padded = pad_frames(bound, frames, fb)
            out = np.asarray(sbb.run(None, {**dict(zip(boundary, padded)), **extra,
                                            FRAMES: np.array([frames], np.float32)})[0],
                             np.float32).ravel()
            if out.size != fb * spf:
                failures.append(f"bucket {fb}: {out.size} samples, expected {fb * spf}")
                continue
            d = _lsd(ref, out[: frames * spf], failures, f"bucket {fb}")
            row["buckets"][str(fb)] = d
            if d is not None:
                by_bucket[str(fb)] = max(by_bucket.get(str(fb), 0.0), d)
        rows.append(row)
    all_d = [r["split_lsd_db"] for r in rows if r["split_lsd_db"] is not None] + list(by_bucket.values())
    return {"by_input": rows, "max_split_lsd_db": max((r["split_lsd_db"] or 0.0) for r in rows),
            "max_lsd_db_by_bucket": by_bucket, "max_lsd_db": max(all_d) if all_d else None,
            "failures": failures}


def _lsd(ref: np.ndarray, out: np.ndarray, failures: list[str], what: str) -> float | None:
    if ref.size != out.size:
        failures.append(f"{what}: {out.size} samples, the whole graph gave {ref.size}")
        return None
    return round(float(lsd_db(ref, out)), 4)


def static_bucket_models(parts: SplitParts, buckets: Sequence[int], out_dir: str | os.PathLike,
                         budget: Any = None) -> dict[int, Path]:
    """For each bucket, a copy of the bucketed part B with every input shape fixed (frames
    axis = the bucket), for CoreML's ``RequireStaticInputShapes``; with ``budget`` (a
    :class:`labkit.optimize.coreml.StaticBudget`) only within it. Written once per bucket."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes

    out: dict[int, Path] = {}
    model = None
    for fb in sorted(int(b) for b in buckets):
        dest = Path(out_dir) / f"{parts.b_bucketed.stem}.static{fb}.onnx"
        out[fb] = dest
        if dest.exists():
            if budget is not None and dest not in budget.written:
                budget.track(dest, 0)
            continue
        reserved = parts.b_bucketed.stat().st_size
        if budget is not None:
            budget.reserve(reserved, dest.name)
        model = model or onnx.load(str(parts.b_bucketed))
        m = copy.deepcopy(model)
        for inp in m.graph.input:
            tt = inp.type.tensor_type
            tt.ClearField("shape")  # the cut left boundary inputs without a shape
            for d in static_shape(inp.name, parts.meta, fb):
                tt.shape.dim.add().dim_value = d
        fix_output_shapes(m)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_path(dest) as tmp:
            onnx.save(m, str(tmp))
        if budget is not None:
            budget.track(dest, reserved)
    return out


def static_shape(name: str, meta: dict[str, Any], bucket: int) -> list[int]:
    """The fixed shape of part B's input ``name`` at ``bucket`` frames, from the shapes the
    split recorded (``boundary_shapes``: per boundary tensor, its dims with the frame axis
    as a multiple of frames)."""
    if name == FRAMES:
        return [1]
    if name == "style":
        return [1, 256]
    spec = meta.get("boundary_shapes", {}).get(name)
    if spec is None:
        raise SplitError(f"static part B: no recorded shape for input {name!r}")
    return [int(d) for d in spec[:-1]] + [int(spec[-1]) * int(bucket)]
