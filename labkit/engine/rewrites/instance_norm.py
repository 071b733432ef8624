"""The exported instance-norm chain ``ReduceMean -> Sub -> Mul(d, d) -> ReduceMean -> Add(eps)
-> Sqrt -> Div`` over the last axis of a [N, C, T] tensor -> one ``InstanceNormalization``
(scale 1, bias 0): 64 sites in the vocoder's AdaIN layers."""
from __future__ import annotations

import numpy as np
from onnx import helper

from labkit.engine.rewrites.graph import Graph, attr, is_scalar


def reduce_axes(g: Graph, node) -> list[int] | None:
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        v = g.const(node.input[1])
        axes = None if v is None else [int(a) for a in v.ravel()]
    return list(axes) if axes is not None else None


def instance_norm(g: Graph) -> list[str]:
    """ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div over the last axis of [N, C, T] ->
    InstanceNormalization(scale=1, B=0)."""
    n_sites = []
    for rm1 in list(g.nodes):
        if rm1.op_type != "ReduceMean" or attr(rm1, "keepdims", 1) != 1:
            continue
        x = rm1.input[0]
        shape = g.shapes.get(x)
        if shape is None or len(shape) != 3 or reduce_axes(g, rm1) not in ([2], [-1]):
            continue
        subs = [c for c in g.only_consumers(rm1.output[0]) if c.op_type == "Sub"
                and list(c.input) == [x, rm1.output[0]]]
        if len(subs) != 1 or len(g.only_consumers(rm1.output[0])) != 1:
            continue
        sub = subs[0]
        d = sub.output[0]
        users = g.only_consumers(d)
        sq = [u for u in users if (u.op_type == "Mul" and list(u.input) == [d, d])
              or (u.op_type == "Pow" and u.input[0] == d and is_scalar(g, u.input[1], 2.0))]
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
        if (rm2.op_type != "ReduceMean" or reduce_axes(g, rm2) not in ([2], [-1])
                or attr(rm2, "keepdims", 1) != 1 or add.op_type != "Add"
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
