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
``reflect_pad``
    reflect ``Pad`` on the last axis -> ``Slice`` (step -1) + ``Concat`` (2 sites: the
    STFT's centre padding and the generator's reflection pad), for CoreML.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from labkit import files
from labkit.config import SessionConfig
from labkit.engine.sessions import new_session, probe_config
from labkit.engine.rewrites.conv1d_as_2d import conv1d_as_2d
from labkit.engine.rewrites.graph import Graph, prune
from labkit.engine.rewrites.instance_norm import instance_norm
from labkit.engine.rewrites.pow2_mul import pow2_mul
from labkit.engine.rewrites.reflect_pad import reflect_pad
from labkit.engine.rewrites.snake_fold import snake_fold
from labkit.quality import lsd_db


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
    "reflect_pad": Rewrite("reflect_pad", reflect_pad,
                           doc="reflect Pad on the last axis -> Slice(step -1) + Concat "
                               "(CoreML runs it; reflect Pad falls back to the CPU)"),
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
    sess = new_session(m, probe_config())
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
    with files.atomic_path(dest) as tmp:
        onnx.save(out, str(tmp))
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
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    m = _with_outputs(model, extra)
    sess = new_session(m, session_cfg)
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
