"""Each rewrite preserves the computation: small synthetic graphs (exact within float
rounding) and one check on the real int8 model."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from labkit.engine import assets, rewrites
from labkit.engine import sessions

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "t", inputs, outputs,
                              [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _run(m, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def _same(m, names, feeds, atol=1e-5):
    out, sites = rewrites.apply(m, names, feeds=feeds)
    onnx.checker.check_model(out)
    a, b = _run(m, feeds), _run(out, feeds)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)
    return out, sites


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_pow2_becomes_mul():
    m = _model([helper.make_node("Pow", ["x", "two"], ["y"])], [_vi("x", [2, 5])], [_vi("y", [2, 5])],
               [("two", np.array(2.0, np.float32))])
    out, sites = _same(m, ["pow2_mul"], {"x": RNG.normal(size=(2, 5)).astype(np.float32)})
    assert len(sites["pow2_mul"]) == 1
    assert [n.op_type for n in out.graph.node] == ["Mul"]


def _instance_norm_chain():
    nodes = [
        helper.make_node("ReduceMean", ["x", "ax"], ["m"], keepdims=1),
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceMean", ["d2", "ax"], ["v"], keepdims=1),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["s"]),
        helper.make_node("Div", ["d", "s"], ["y"]),
    ]
    return _model(nodes, [_vi("x", [1, 4, "T"])], [_vi("y", [1, 4, "T"])],
                  [("ax", np.array([2], np.int64)), ("eps", np.array(1e-5, np.float32))])


def test_instance_norm_chain_fuses():
    feeds = {"x": RNG.normal(size=(1, 4, 37)).astype(np.float32) * 3 + 1}
    out, sites = _same(_instance_norm_chain(), ["instance_norm"], feeds, atol=1e-4)
    assert len(sites["instance_norm"]) == 1
    assert [n.op_type for n in out.graph.node] == ["InstanceNormalization"]


@pytest.mark.parametrize("stride,dilation,pads,group", [(1, 1, [1, 1], 1), (2, 3, [2, 0], 2)])
def test_conv1d_as_2d(stride, dilation, pads, group):
    w = RNG.normal(size=(6, 4 // group, 3)).astype(np.float32)
    b = RNG.normal(size=(6,)).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3], strides=[stride],
                            dilations=[dilation], pads=pads, group=group)
    m = _model([conv], [_vi("x", [1, 4, "T"])], [_vi("y", [1, 6, "U"])], [("w", w), ("b", b)])
    out, sites = _same(m, ["conv1d_as_2d"], {"x": RNG.normal(size=(1, 4, 29)).astype(np.float32)})
    assert len(sites["conv1d_as_2d"]) == 1
    assert [n.op_type for n in out.graph.node] == ["Unsqueeze", "Conv", "Squeeze"]


def test_conv_integer_1d_as_2d():
    w = RNG.integers(0, 255, size=(5, 3, 3)).astype(np.uint8)
    conv = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], kernel_shape=[3], pads=[1, 1])
    m = _model([conv], [_vi("x", [1, 3, "T"], TensorProto.UINT8)], [_vi("y", [1, 5, "U"], TensorProto.INT32)],
               [("w", w), ("xz", np.array(7, np.uint8)), ("wz", np.array(128, np.uint8))])
    x = RNG.integers(0, 255, size=(1, 3, 11)).astype(np.uint8)
    out, _ = rewrites.apply(m, ["conv1d_as_2d"])
    np.testing.assert_array_equal(_run(m, {"x": x}), _run(out, {"x": x}))


def _snake_block(with_conv: bool):
    """AdaIN affine n * g + b (g, b per channel at run time), Snake, then a Conv."""
    C = 4
    alpha = RNG.uniform(0.3, 2.0, size=(1, C, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["n", "g"], ["ng"]),
        helper.make_node("Add", ["ng", "b"], ["x"]),
        helper.make_node("Mul", ["alpha", "x"], ["u"]),
        helper.make_node("Sin", ["u"], ["s"]),
        helper.make_node("Pow", ["s", "two"], ["p"]),
        helper.make_node("Mul", ["r", "p"], ["t"]),
        helper.make_node("Add", ["x", "t"], ["y"]),
    ]
    inits = [("alpha", alpha), ("r", (1.0 / alpha).astype(np.float32)), ("two", np.array(2.0, np.float32))]
    out = "y"
    if with_conv:
        nodes.append(helper.make_node("Conv", ["y", "w"], ["z"], kernel_shape=[3], pads=[1, 1]))
        inits.append(("w", RNG.normal(size=(5, C, 3)).astype(np.float32)))
        out = "z"
    m = _model(nodes, [_vi("n", [1, C, "T"]), _vi("g", [1, C, 1]), _vi("b", [1, C, 1])],
               [_vi(out, [1, "C2", "T"])], inits)
    feeds = {"n": RNG.normal(size=(1, C, 23)).astype(np.float32),
             "g": RNG.normal(1, 0.2, size=(1, C, 1)).astype(np.float32),
             "b": RNG.normal(size=(1, C, 1)).astype(np.float32)}
    return m, feeds


@pytest.mark.parametrize("with_conv,expected_big_ops", [(True, 3), (False, 4)])
def test_snake_fold(with_conv, expected_big_ops):
    m, feeds = _snake_block(with_conv)
    out, sites = _same(m, ["snake_fold"], feeds, atol=1e-4)
    assert len(sites["snake_fold"]) == 1
    ops = [n.op_type for n in out.graph.node]
    assert "Pow" in ops or ops.count("Mul") >= 1
    # whole-tensor passes of the Snake itself: 5 before; 3 (conv fold) or 4 after
    snake_ops = [n for n in out.graph.node if n.op_type in ("Sin", "Pow", "Add", "Mul")
                 and "/fold_a" not in n.name and n.output[0] not in ("ng", "u")]
    assert len(snake_ops) == expected_big_ops


def test_unknown_rewrite_is_named():
    with pytest.raises(rewrites.RewriteError, match="known: pow2_mul"):
        rewrites.apply(_instance_norm_chain(), ["nope"])


def test_shape_needing_rewrite_wants_feeds():
    with pytest.raises(rewrites.RewriteError, match="feeds"):
        rewrites.apply(_instance_norm_chain(), ["instance_norm"])


@pytest.mark.model
def test_real_model_rewrites_preserve_output(cfg):
    """pow2_mul and conv1d_as_2d on the shipped int8 graph, on a real input: the first
    rewritten site agrees to float rounding and the audio keeps its length."""
    path = assets.model_path(cfg, "int8")
    if not path.exists():
        pytest.skip(f"{path} not provisioned")
    model = onnx.load(str(path))
    out, sites = rewrites.apply(model, ["pow2_mul", "conv1d_as_2d"])
    assert len(sites["pow2_mul"]) == 50 and len(sites["conv1d_as_2d"]) >= 87
    feeds = sessions.probe_feeds(12)
    res = rewrites.check(model, out, [feeds], sites=[s for v in sites.values() for s in v])
    assert res.passed, res.reason
    assert res.same_length == [True]
    assert res.site_rel_err[0] < 1e-4


def test_reflect_pad_becomes_slice_concat():
    """Kokoro's pads come through a Cast of a constant; both sides on the last axis."""
    nodes = [helper.make_node("Cast", ["pads_f"], ["pads"], to=TensorProto.INT64),
             helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")]
    m = _model(nodes, [_vi("x", [1, 3, 9])], [_vi("y", [1, 3, 14])],
               [("pads_f", np.array([0, 0, 2, 0, 0, 3], np.float32))])
    out, sites = _same(m, ["reflect_pad"], {"x": RNG.normal(size=(1, 3, 9)).astype(np.float32)}, atol=0)
    assert sites["reflect_pad"] == ["y"]
    assert "Pad" not in {n.op_type for n in out.graph.node}


def test_reflect_pad_leaves_other_axes_and_modes_alone():
    nodes = [helper.make_node("Pad", ["x", "p1"], ["a"], mode="reflect"),
             helper.make_node("Pad", ["a", "p2"], ["y"], mode="constant")]
    m = _model(nodes, [_vi("x", [1, 4, 6])], [_vi("y", [1, 6, 8])],
               [("p1", np.array([0, 1, 0, 0, 1, 0], np.int64)),
                ("p2", np.array([0, 0, 1, 0, 0, 1], np.int64))])
    out, sites = _same(m, ["reflect_pad"], {"x": RNG.normal(size=(1, 4, 6)).astype(np.float32)})
    assert sites["reflect_pad"] == []
    assert [n.op_type for n in out.graph.node] == ["Pad", "Pad"]


# -- the check itself can fail, on each of its grounds --------------------------------------
def _checked(w=1.0, b=0.0, gain=1.0, extra=0):
    """x -> site = x * w -> y = (site + b) * gain [, then ``extra`` zeros appended]."""
    nodes = [helper.make_node("Mul", ["x", "w"], ["site"]), helper.make_node("Add", ["site", "b"], ["s2"]),
             helper.make_node("Mul", ["s2", "gain"], ["y" if not extra else "y0"])]
    inits = [("w", np.array(w, np.float32)), ("b", np.array(b, np.float32)),
             ("gain", np.array(gain, np.float32))]
    if extra:
        nodes.append(helper.make_node("Concat", ["y0", "pad"], ["y"], axis=-1))
        inits.append(("pad", np.zeros((1, extra), np.float32)))
    return _model(nodes, [_vi("x", [1, 4800])], [_vi("y", [1, 4800 + extra])], inits)


@pytest.mark.parametrize("rewritten,kwargs,reason", [
    (_checked(w=1.01), {}, "first rewritten site 'site': relative error"),
    (_checked(extra=240), {}, "output length 5040 != 4800"),
    (_checked(gain=2.0), {"max_lsd_db": 1.0}, "log-spectral distance 6.0"),
    (_checked(b=0.01), {"audio": False}, "max |diff| 0.01"),
])
def test_check_fails_each_way_a_rewrite_can_go_wrong(rewritten, kwargs, reason):
    feeds = [{"x": RNG.normal(size=(1, 4800)).astype(np.float32)}]
    assert rewrites.check(_checked(), _checked(), feeds, sites=["site"], max_lsd_db=1.0).passed
    res = rewrites.check(_checked(), rewritten, feeds, sites=["site"], **kwargs)
    assert not res.passed and res.reason.startswith(reason), res.reason
