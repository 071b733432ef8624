"""Algebra-preserving graph rewrites of our own, each checked before it is used.

ONNX Runtime's optimizer fuses what it recognizes; Kokoro's vocoder is exported in a
shape it mostly does not recognize. Each rewrite here changes how a value is computed,
never what it is (up to float rounding):

``pow2_mul``
    ``Pow(x, 2)`` -> ``Mul(x, x)`` (50 sites: the Snake activations and the generator).
``instance_norm``
    the exported instance-norm chain ``ReduceMean -> Sub -> Mul(d, d) -> ReduceMean ->
    Add(eps) -> Sqrt -> Div`` over the last axis of a [N, C, T] tensor -> one
    ``InstanceNormalization`` (scale 1, bias 0): 64 sites in the vocoder's AdaIN layers.
``conv1d_as_2d``
    a 1-D ``Conv``/``ConvInteger`` as a height-one 2-D one (``Unsqueeze`` -> Conv 2-D ->
    ``Squeeze``): ORT's CPU provider has blocked (NCHWc) kernels for 2-D convolutions only.
``snake_fold``
    Snake, ``y = x + (1/a) sin(a x)^2``, is five whole-tensor passes (Mul, Sin, Pow, Mul,
    Add). With ``u = a x`` it is ``y = (1/a) (u + sin(u)^2)``: where ``x`` comes from an
    AdaIN affine ``n * g + b`` (g, b per channel), ``a`` folds into ``g`` and ``b`` (tiny
    [1, C, 1] multiplies) so ``u`` comes out of the AdaIN directly; where ``y`` feeds only
    float ``Conv``s, ``1/a`` folds into their weights (per input channel). Both: three
    passes (Sin, square, Add). The int8 graph's convolutions are dynamically quantized,
    so there only the first fold applies (four passes). No single ORT CPU operator
    (standard or contrib) computes Snake, so this is as fused as standard ops get.

:func:`apply` runs rewrites on a model; :func:`check` compares a rewritten model with the
original on real inputs (same audio length, log-spectral distance within a tolerance).
Shapes a rewrite needs (channel counts, which operand is per-channel) come from one
probe run of the original graph on real inputs.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from labkit.quality import lsd_db


# -- a small graph index ------------------------------------------------------------
class Graph:
    """Producer/consumer index over an onnx GraphProto, with constants by value."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, tuple] | None = None):
        self.model = model
        self.g = model.graph
        self.shapes = shapes or {}
        self.inits = {i.name: i for i in self.g.initializer}
        #: standalone copies of the nodes: edited in place, written back by :meth:`commit`
        self.nodes = []
        for n in self.g.node:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            self.nodes.append(c)
        self._counter = 0
        self.reindex()

    def commit(self) -> onnx.ModelProto:
        del self.g.node[:]
        self.g.node.extend(self.nodes)
        return self.model

    def reindex(self) -> None:
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in self.nodes:
            for i in dict.fromkeys(n.input):  # a node reading x twice counts once
                self.consumers[i].append(n)
        self.graph_outputs = {o.name for o in self.g.output}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        p = self.producer.get(name)
        if p is not None and p.op_type == "Constant":
            for a in p.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def only_consumers(self, name: str) -> list:
        """Consumers of a tensor, or [] if it is also a graph output."""
        return [] if name in self.graph_outputs else self.consumers.get(name, [])

    def fresh(self, base: str) -> str:
        self._counter += 1
        return f"{base}__rw{self._counter}"

    def add_init(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.g.initializer.append(numpy_helper.from_array(array, name))
        self.inits[name] = self.g.initializer[-1]
        return name

    def set_init(self, name: str, array: np.ndarray) -> None:
        self.inits[name].CopyFrom(numpy_helper.from_array(array, name))

    def remove(self, nodes) -> None:
        ids = {id(n) for n in nodes}
        self.nodes = [n for n in self.nodes if id(n) not in ids]

    def replace(self, old, new) -> None:
        """Put ``new`` nodes where ``old`` was (keeps topological order)."""
        idx = next(i for i, n in enumerate(self.nodes) if n is old)
        self.nodes[idx:idx + 1] = new


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _is_scalar(g: Graph, name: str, value: float) -> bool:
    v = g.const(name)
    return v is not None and v.size == 1 and float(v.reshape(())) == value


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes whose outputs nobody reads and initializers nobody uses."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    vi = [v for v in g.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(vi)
    return model


# -- the rewrites -----------------------------------------------------------------
def pow2_mul(g: Graph) -> list[str]:
    """Pow(x, 2) -> Mul(x, x). Returns the sites' output names (as every rewrite does)."""
    n_sites = []
    for node in list(g.nodes):
        if node.op_type == "Pow" and _is_scalar(g, node.input[1], 2.0):
            mul = helper.make_node("Mul", [node.input[0], node.input[0]], list(node.output),
                                   name=g.fresh(node.name + "/as_mul"))
            g.replace(node, [mul])
            n_sites.append(node.output[0])
    g.reindex()
    return n_sites


def _reduce_axes(g: Graph, node) -> list[int] | None:
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        v = g.const(node.input[1])
        axes = None if v is None else [int(a) for a in v.ravel()]
    return list(axes) if axes is not None else None


def instance_norm(g: Graph) -> list[str]:
    """ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div over the last axis of [N, C, T] ->
    InstanceNormalization(scale=1, B=0)."""
    n_sites = []
    for rm1 in list(g.nodes):
        if rm1.op_type != "ReduceMean" or _attr(rm1, "keepdims", 1) != 1:
            continue
        x = rm1.input[0]
        shape = g.shapes.get(x)
        if shape is None or len(shape) != 3 or _reduce_axes(g, rm1) not in ([2], [-1]):
            continue
        subs = [c for c in g.only_consumers(rm1.output[0]) if c.op_type == "Sub"
                and list(c.input) == [x, rm1.output[0]]]
        if len(subs) != 1 or len(g.only_consumers(rm1.output[0])) != 1:
            continue
        sub = subs[0]
        d = sub.output[0]
        users = g.only_consumers(d)
        sq = [u for u in users if (u.op_type == "Mul" and list(u.input) == [d, d])
              or (u.op_type == "Pow" and u.input[0] == d and _is_scalar(g, u.input[1], 2.0))]
        div = [u for u in users if u.op_type == "Div" and u.input[0] == d]
        if len(users) != 2 or len(sq) != 1 or len(div) != 1:
            continue
        sq, div = sq[0], div[0]
        chain = [sq]
        try:
            (rm2,) = g.only_consumers(sq.output[0])
            (add,) = g.only_consumers(rm2.output[0])
            (sqrt,) = g.only_consumers(add.output[0])
        except ValueError:
            continue
        if (rm2.op_type != "ReduceMean" or _reduce_axes(g, rm2) not in ([2], [-1])
                or _attr(rm2, "keepdims", 1) != 1 or add.op_type != "Add"
                or sqrt.op_type != "Sqrt" or div.input[1] != sqrt.output[0]
                or len(g.only_consumers(sqrt.output[0])) != 1):
            continue
        eps_name = add.input[1] if add.input[0] == rm2.output[0] else add.input[0]
        eps = g.const(eps_name)
        if eps is None or eps.size != 1:
            continue
        chain += [rm2, add, sqrt, div]
        channels = int(shape[1])
        scale = g.add_init("in_scale", np.ones(channels, np.float32))
        bias = g.add_init("in_bias", np.zeros(channels, np.float32))
        fused = helper.make_node("InstanceNormalization", [x, scale, bias], list(div.output),
                                 name=g.fresh(rm1.name + "/instance_norm"),
                                 epsilon=float(eps.reshape(())))
        g.replace(div, [fused])
        g.remove([rm1, sub] + chain[:-1])
        g.reindex()
        n_sites.append(div.output[0])
    return n_sites


def conv1d_as_2d(g: Graph) -> list[str]:
    """1-D Conv/ConvInteger with an initializer weight -> Unsqueeze, 2-D conv, Squeeze."""
    n_sites = []
    axes = g.add_init("axis2", np.array([2], np.int64))
    for node in list(g.nodes):
        if node.op_type not in ("Conv", "ConvInteger") or node.input[1] not in g.inits:
            continue
        w = g.const(node.input[1])
        if w.ndim != 3 or _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        k = int(w.shape[2])
        w_name = g.add_init(node.input[1] + "_2d", w.reshape(w.shape[0], w.shape[1], 1, k))
        x4, y4 = g.fresh(node.input[0] + "_4d"), g.fresh(node.output[0] + "_4d")
        pads = list(_attr(node, "pads", [0, 0]))
        attrs = {
            "kernel_shape": [1, k],
            "strides": [1] + list(_attr(node, "strides", [1])),
            "dilations": [1] + list(_attr(node, "dilations", [1])),
            "pads": [0, pads[0], 0, pads[1]],
            "group": int(_attr(node, "group", 1)),
        }
        inputs = [x4, w_name] + list(node.input[2:])
        new = [
            helper.make_node("Unsqueeze", [node.input[0], axes], [x4], name=g.fresh(node.name + "/unsq")),
            helper.make_node(node.op_type, inputs, [y4], name=g.fresh(node.name + "/2d"), **attrs),
            helper.make_node("Squeeze", [y4, axes], list(node.output), name=g.fresh(node.name + "/sq")),
        ]
        g.replace(node, new)
        n_sites.append(node.output[0])
    g.reindex()
    return n_sites


@dataclass
class _Snake:
    mul_a: object      # u = Mul(a, x)
    sin: object
    square: object     # Pow(s, 2) or Mul(s, s)
    mul_r: object      # t = Mul(r, p)
    add: object        # y = Add(x, t)
    x: str
    a: np.ndarray
    r_name: str


def _find_snakes(g: Graph) -> list[_Snake]:
    out = []
    for sin in g.nodes:
        if sin.op_type != "Sin":
            continue
        mul_a = g.producer.get(sin.input[0])
        if mul_a is None or mul_a.op_type != "Mul":
            continue
        ci = [i for i, name in enumerate(mul_a.input) if g.const(name) is not None]
        if len(ci) != 1:
            continue
        a_name, x = mul_a.input[ci[0]], mul_a.input[1 - ci[0]]
        a = g.const(a_name)
        try:
            (square,) = g.only_consumers(sin.output[0]) or [None, None]
            (mul_r,) = g.only_consumers(square.output[0])
            (add,) = g.only_consumers(mul_r.output[0])
        except (ValueError, AttributeError):
            continue
        s = sin.output[0]
        if not ((square.op_type == "Mul" and list(square.input) == [s, s])
                or (square.op_type == "Pow" and square.input[0] == s
                    and _is_scalar(g, square.input[1], 2.0))):
            continue
        if mul_r.op_type != "Mul" or add.op_type != "Add":
            continue
        p = square.output[0]
        r_name = mul_r.input[0] if mul_r.input[1] == p else mul_r.input[1]
        r = g.const(r_name)
        if r is None or r.shape != a.shape or not np.allclose(r * a, 1.0, rtol=1e-5):
            continue
        if sorted(add.input) != sorted([x, mul_r.output[0]]):
            continue
        if len(g.only_consumers(mul_a.output[0])) != 1 or len(g.only_consumers(p)) != 1:
            continue
        out.append(_Snake(mul_a, sin, square, mul_r, add, x, a, r_name))
    return out


def _affine_producer(g: Graph, x: str):
    """x = Add(Mul(n, gain), bias) with gain/bias per-channel [1, C, 1] (shapes from the
    probe) and nothing else reading Mul's output: returns (mul, add, gain_idx, bias_idx)."""
    add = g.producer.get(x)
    if add is None or add.op_type != "Add":
        return None
    big = g.shapes.get(x)
    if big is None:
        return None
    for bi in (0, 1):
        mul = g.producer.get(add.input[1 - bi])
        bias_shape = g.shapes.get(add.input[bi], g.const(add.input[bi]).shape
                                  if g.const(add.input[bi]) is not None else None)
        if mul is None or mul.op_type != "Mul" or bias_shape is None:
            continue
        if len(g.only_consumers(mul.output[0])) != 1 or int(np.prod(bias_shape)) >= int(np.prod(big)):
            continue
        for gi in (0, 1):
            gain = mul.input[gi]
            gshape = g.shapes.get(gain, g.const(gain).shape if g.const(gain) is not None else None)
            if gshape is not None and int(np.prod(gshape)) < int(np.prod(big)):
                return mul, add, gi, bi
    return None


def snake_fold(g: Graph) -> list[str]:
    """Snake with its 1/a folded into the following float Convs and/or its a folded into
    the preceding AdaIN affine; sites where neither fold applies are left alone."""
    n_sites = []
    for sn in _find_snakes(g):
        y = sn.add.output[0]
        users = g.only_consumers(y)
        conv_ok = bool(users) and all(
            u.op_type == "Conv" and u.input[0] == y and u.input[1] in g.inits
            and int(_attr(u, "group", 1)) == 1 and u.input[1:].count(y) == 0 for u in users)
        aff = _affine_producer(g, sn.x)
        x_users = g.only_consumers(sn.x)
        aff_ok = aff is not None and len(x_users) == 2  # the snake's Mul(a) and Add only
        if not (conv_ok or aff_ok):
            continue
        a = sn.a.astype(np.float32)
        u = sn.mul_a.output[0]
        removed = [sn.mul_r]
        if aff_ok:
            mul, add, gi, bi = aff
            a_name = g.add_init("snake_a", a)
            g2 = g.fresh(mul.input[gi] + "_xa")
            b2 = g.fresh(add.input[bi] + "_xa")
            new_g = helper.make_node("Mul", [mul.input[gi], a_name], [g2], name=g.fresh(mul.name + "/fold_a"))
            new_b = helper.make_node("Mul", [add.input[bi], a_name], [b2], name=g.fresh(add.name + "/fold_a"))
            mul.input[gi] = g2
            add.input[bi] = b2
            # the affine now produces u = a * x; rename its output to u
            add.output[0] = u
            g.replace(mul, [new_g, mul])
            g.replace(add, [new_b, add])
            removed.append(sn.mul_a)
        # y' = u + sin(u)^2  (= a * y)
        yp = g.fresh(y + "_scaled")
        new_add = helper.make_node("Add", [u, sn.square.output[0]], [yp], name=g.fresh(sn.add.name + "/fold"))
        if conv_ok:
            r = g.const(sn.r_name).astype(np.float32).reshape(-1)
            for conv in users:
                w = g.const(conv.input[1])
                w2 = (w * r.reshape(1, -1, *([1] * (w.ndim - 2)))).astype(w.dtype)
                conv.input[0] = yp
                conv.input[1] = g.add_init(conv.input[1] + "_snake", w2)
            g.replace(sn.add, [new_add])
        else:
            out_mul = helper.make_node("Mul", [yp, sn.r_name], [y], name=g.fresh(sn.mul_r.name + "/fold"))
            g.replace(sn.add, [new_add, out_mul])
        g.remove(removed)
        g.reindex()
        n_sites.extend([u.output[0] for u in users] if conv_ok else [y])
    return n_sites


@dataclass
class Rewrite:
    name: str
    fn: Callable[[Graph], list[str]]
    needs_shapes: bool = False
    doc: str = ""


REWRITES: dict[str, Rewrite] = {
    "pow2_mul": Rewrite("pow2_mul", pow2_mul, doc="Pow(x, 2) -> Mul(x, x)"),
    "instance_norm": Rewrite("instance_norm", instance_norm, needs_shapes=True,
                             doc="decomposed instance-norm chain -> InstanceNormalization"),
    "conv1d_as_2d": Rewrite("conv1d_as_2d", conv1d_as_2d,
                            doc="1-D Conv/ConvInteger as a height-one 2-D convolution"),
    "snake_fold": Rewrite("snake_fold", snake_fold, needs_shapes=True,
                          doc="Snake x + sin(ax)^2/a with a folded into the AdaIN affine "
                              "and 1/a into the next float Conv"),
}


class RewriteError(ValueError):
    pass


def _validate_names(names) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        raise RewriteError(f"unknown rewrite(s) {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(REWRITES)}")
    return names


# -- probing shapes on real inputs ----------------------------------------------------
def probe_shapes(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                 names: list[str] | None = None) -> dict[str, tuple]:
    """Shapes of intermediate tensors from one run of ``model`` (optimizer off).
    ``names`` defaults to every tensor that a rewrite may ask about."""
    import onnxruntime as ort

    g = Graph(model)
    if names is None:
        wanted_ops = {"ReduceMean", "Add", "Mul"}
        names = sorted({i for n in g.nodes if n.op_type in wanted_ops for i in n.input
                        if i and i not in g.inits and g.const(i) is None}
                       | {i for n in g.nodes if n.op_type in wanted_ops for i in n.output})
    m = copy.deepcopy(model)
    existing = {o.name for o in m.graph.output}
    for name in names:
        if name not in existing:
            m.graph.output.append(helper.make_empty_tensor_value_info(name))
    del m.graph.value_info[:]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), sess_options=so,
                                providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    values = sess.run(out_names, feeds)
    return {n: tuple(np.asarray(v).shape) for n, v in zip(out_names, values)}


def apply(model: onnx.ModelProto, names, feeds: dict[str, np.ndarray] | None = None,
          shapes: dict[str, tuple] | None = None) -> tuple[onnx.ModelProto, dict[str, list[str]]]:
    """A rewritten copy of ``model`` and, per rewrite, the output names of the sites it
    changed (same names as in the original: :func:`check` compares them).
    Rewrites that need shapes get them from ``shapes`` or one probe run on ``feeds``."""
    names = _validate_names(names)
    model = copy.deepcopy(model)
    if shapes is None and any(REWRITES[n].needs_shapes for n in names):
        if feeds is None:
            raise RewriteError(f"rewrites {names} need tensor shapes: pass feeds (real inputs)")
        shapes = probe_shapes(model, feeds)
    g = Graph(model, shapes)
    sites = {}
    for name in names:
        sites[name] = REWRITES[name].fn(g)
    g.commit()
    del model.graph.value_info[:]  # stale after rewriting; ORT re-infers
    prune(model)
    return model, sites


def rewrite_file(src: str | Path, dest: str | Path, names,
                 feeds: dict[str, np.ndarray] | None = None) -> dict[str, list[str]]:
    model = onnx.load(str(src))
    out, sites = apply(model, names, feeds=feeds)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(dest))
    return sites


# -- the check -------------------------------------------------------------------------
@dataclass
class CheckResult:
    """``passed``: every output has the same length as the original's and the first
    rewritten site (upstream of it the graphs are identical) agrees within ``site_rtol``
    (relative L2 error) on every input. Audio figures are reported beside it: this
    vocoder's waveform drifts in phase under any rounding change, and in the int8 graph a
    rounding change can flip a dynamic-quantization level, so only the spectral distance
    says how far the sound moved."""

    passed: bool
    site_rel_err: list[float] = field(default_factory=list)
    last_site_rel_err: list[float] = field(default_factory=list)
    lsd_db: list[float] = field(default_factory=list)
    max_abs: list[float] = field(default_factory=list)
    same_length: list[bool] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict:
        return {"passed": self.passed, "site_rel_err": self.site_rel_err,
                "last_site_rel_err": self.last_site_rel_err, "lsd_db": self.lsd_db,
                "max_abs": self.max_abs, "same_length": self.same_length,
                "reason": self.reason}


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(n))
    return m


def _run(model, feeds_list, session_cfg, extra: list[str]):
    import onnxruntime as ort

    from labkit.engine.runtime import providers_for, session_options

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    m = _with_outputs(model, extra)
    sess = ort.InferenceSession(m.SerializeToString(), sess_options=session_options(session_cfg),
                                providers=providers_for(session_cfg))
    names = [m.graph.output[0].name] + list(extra)
    out = []
    for f in feeds_list:
        vals = sess.run(names, f)
        out.append([np.asarray(v, dtype=np.float64) for v in vals])
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-12))


def check(original, rewritten, feeds_list: list[dict], sites: list[str] | None = None,
          session_cfg=None, site_rtol: float = 1e-4, max_lsd_db: float | None = None,
          audio: bool = True) -> CheckResult:
    """Run both graphs (same session settings) on every feed and compare: the first
    and last of ``sites`` (tensor names both graphs keep), the output length, and for
    audio its log-spectral distance (gating only when ``max_lsd_db`` is given)."""
    from labkit.config import SessionConfig

    session_cfg = session_cfg or SessionConfig()
    if not isinstance(original, onnx.ModelProto):
        original = onnx.load(str(original))
    order = {o: i for i, n in enumerate(original.graph.node) for o in n.output}
    sites = sorted((s for s in (sites or []) if s in order), key=order.get)
    probe = [sites[0], sites[-1]] if sites else []
    probe = list(dict.fromkeys(probe))
    ref = _run(original, feeds_list, session_cfg, probe)
    new = _run(rewritten, feeds_list, session_cfg, probe)
    res = CheckResult(passed=True)
    for a, b in zip(ref, new):
        if probe:
            res.site_rel_err.append(_rel(a[1], b[1]))
            res.last_site_rel_err.append(_rel(a[-1], b[-1]))
            if not res.site_rel_err[-1] <= site_rtol:
                res.passed = False
                res.reason = (f"first rewritten site {probe[0]!r}: relative error "
                              f"{res.site_rel_err[-1]:.3g} > {site_rtol}")
        ya, yb = a[0].ravel(), b[0].ravel()
        same = ya.size == yb.size
        res.same_length.append(same)
        if not same:
            res.passed = False
            res.reason = f"output length {yb.size} != {ya.size}"
            continue
        res.max_abs.append(float(np.max(np.abs(ya - yb))) if ya.size else 0.0)
        if audio:
            d = lsd_db(ya.astype(np.float32), yb.astype(np.float32))
            res.lsd_db.append(d)
            if max_lsd_db is not None and not d <= max_lsd_db:
                res.passed = False
                res.reason = f"log-spectral distance {d:.3f} dB > {max_lsd_db} dB"
        elif not np.allclose(ya, yb, atol=1e-4, rtol=1e-4):
            res.passed = False
            res.reason = f"max |diff| {res.max_abs[-1]:.3g} > 1e-4"
    return res
