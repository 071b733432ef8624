"""Reflect ``Pad`` on the last axis -> ``Slice`` (step -1) + ``Concat``.

CoreML's EP leaves reflect padding to the CPU, which cuts the vocoder into several
partitions (onnxruntime#28022: written as Slice + Concat it became one MLProgram
partition). Kokoro has two: the STFT's centre padding of the harmonic source and the
generator's ``reflection_pad`` (1, 0). For pads ``(l, r)`` on the last axis of ``x``
(length T): ``left = x[..., l:0:-1]``, ``right = x[..., T-2:T-2-r:-1]`` and the result is
``Concat(left, x, right)`` -- the same values, copied instead of padded.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from labkit.engine.rewrites.graph import Graph, attr


def _pads(g: Graph, node) -> np.ndarray | None:
    """The pads as constants: an initializer, a Constant, or a Cast of either."""
    if len(node.input) < 2 or not node.input[1]:
        v = attr(node, "pads")
        return None if v is None else np.asarray(v, np.int64)
    name = node.input[1]
    v = g.const(name)
    p = g.producer.get(name)
    if v is None and p is not None and p.op_type == "Cast":
        v = g.const(p.input[0])
    return None if v is None else np.asarray(v).astype(np.int64).ravel()


def reflect_pad(g: Graph) -> list[str]:
    """Reflect Pad on the last axis only -> Slice + Concat. Returns the sites' outputs."""
    sites = []
    for node in list(g.nodes):
        if node.op_type != "Pad" or attr(node, "mode", b"constant") not in (b"reflect", "reflect"):
            continue
        if len(node.input) > 3 and node.input[3]:  # explicit axes: not handled
            continue
        pads = _pads(g, node)
        if pads is None or pads.size % 2 or pads.size < 2:
            continue
        rank = pads.size // 2
        begin, end = pads[:rank], pads[rank:]
        if np.any(begin[:-1]) or np.any(end[:-1]) or np.any(pads < 0):
            continue  # only the last axis padded
        left, right = int(begin[-1]), int(end[-1])
        x, y = node.input[0], node.output[0]
        parts, new = [], []
        if left:
            out = g.fresh(y + "/left")
            new.append(helper.make_node(
                "Slice", [x, g.add_init("starts", np.array([left], np.int64)),
                          g.add_init("ends", np.array([0], np.int64)),
                          g.add_init("axes", np.array([-1], np.int64)),
                          g.add_init("steps", np.array([-1], np.int64))], [out], name=out))
            parts.append(out)
        parts.append(x)
        if right:
            out = g.fresh(y + "/right")
            new.append(helper.make_node(
                "Slice", [x, g.add_init("starts", np.array([-2], np.int64)),
                          g.add_init("ends", np.array([-2 - right], np.int64)),
                          g.add_init("axes", np.array([-1], np.int64)),
                          g.add_init("steps", np.array([-1], np.int64))], [out], name=out))
            parts.append(out)
        new.append(helper.make_node("Concat", parts, [y], name=g.fresh(node.name + "/as_concat"),
                                    axis=-1))
        g.replace(node, new)
        sites.append(y)
    g.reindex()
    return sites
