"""``Pow(x, 2)`` -> ``Mul(x, x)`` (50 sites: the Snake activations and the generator)."""
from __future__ import annotations

from onnx import helper

from labkit.engine.rewrites.graph import Graph, is_scalar


def pow2_mul(g: Graph) -> list[str]:
    """Pow(x, 2) -> Mul(x, x). Returns the sites' output names (as every rewrite does)."""
    n_sites = []
    for node in list(g.nodes):
        if node.op_type == "Pow" and is_scalar(g, node.input[1], 2.0):
            mul = helper.make_node("Mul", [node.input[0], node.input[0]], list(node.output),
                                   name=g.fresh(node.name + "/as_mul"))
            g.replace(node, [mul])
            n_sites.append(node.output[0])
    g.reindex()
    return n_sites
