"""Snake, ``y = x + (1/a) sin(a x)^2``, folded: ``u = a x`` comes out of the AdaIN affine
and ``1/a`` goes into the next float Conv's weights (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import helper

from labkit.engine.rewrites.graph import Graph, attr, is_scalar


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
                    and is_scalar(g, square.input[1], 2.0))):
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
            and int(attr(u, "group", 1)) == 1 and u.input[1:].count(y) == 0 for u in users)
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
