"""A small graph index the rewrites edit through, and dead-node pruning."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper


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


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def is_scalar(g: Graph, name: str, value: float) -> bool:
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
