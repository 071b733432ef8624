"""A 1-D ``Conv``/``ConvInteger`` as a height-one 2-D one (``Unsqueeze`` -> Conv 2-D ->
``Squeeze``): ORT's CPU provider has blocked (NCHWc) kernels for 2-D convolutions only."""
from __future__ import annotations

import numpy as np
from onnx import helper

from labkit.engine.rewrites.graph import Graph, attr


def conv1d_as_2d(g: Graph) -> list[str]:
    """1-D Conv/ConvInteger with an initializer weight -> Unsqueeze, 2-D conv, Squeeze."""
    n_sites = []
    axes = g.add_init("axis2", np.array([2], np.int64))
    for node in list(g.nodes):
        if node.op_type not in ("Conv", "ConvInteger") or node.input[1] not in g.inits:
            continue
        w = g.const(node.input[1])
        if w.ndim != 3 or attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        k = int(w.shape[2])
        w_name = g.add_init(node.input[1] + "_2d", w.reshape(w.shape[0], w.shape[1], 1, k))
        x4, y4 = g.fresh(node.input[0] + "_4d"), g.fresh(node.output[0] + "_4d")
        pads = list(attr(node, "pads", [0, 0]))
        attrs = {
            "kernel_shape": [1, k],
            "strides": [1] + list(attr(node, "strides", [1])),
            "dilations": [1] + list(attr(node, "dilations", [1])),
            "pads": [0, pads[0], 0, pads[1]],
            "group": int(attr(node, "group", 1)),
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
