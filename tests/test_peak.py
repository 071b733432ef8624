"""Against the physical limit (issue #33): the convolutions' operations counted from ORT's own
profile of a real run, and the machine's GEMM peak measured through ORT's kernels."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labkit.config import SessionConfig
from labkit.engine.sessions import new_session
from labkit.measure import peak, profile


def _conv_model() -> onnx.ModelProto:
    """x (1, 8, 100) -> Conv 8->16, k=3 (no padding: 98 frames) -> ConvTranspose 16->4,
    k=4, stride 2 (the vocoder's upsampling kind) -> y."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8, 3)).astype(np.float32), "w")
    wt = numpy_helper.from_array(rng.standard_normal((16, 4, 4)).astype(np.float32), "wt")
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
             helper.make_node("ConvTranspose", ["h", "wt"], ["y"], name="up", strides=[2])]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 100])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, wt])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_the_convolutions_operations_are_counted_from_a_real_profile(tmp_path):
    path = tmp_path / "convs.onnx"
    onnx.save(_conv_model(), str(path))
    feeds = {"x": np.ones((1, 8, 100), np.float32)}
    prof = profile.profile_session(path, SessionConfig(intra_op_threads=1), feeds, runs=2,
                                   out_dir=tmp_path)
    work = prof["conv_work"]["fp32"]
    conv = 2 * (16 * 98) * (8 * 3)        # each output element: Cin x k multiply-adds
    up = 2 * (16 * 98) * (4 * 4)          # each input element scattered to Cout x k outputs
    # ORT's profile leaves out the ConvTranspose's packed weight: the graph gives its shape
    assert work["kernels"] == 2 and work["skipped"] == 0
    assert work["gops"] == pytest.approx((conv + up) / 1e9)
    assert work["gops_per_s"] == pytest.approx(work["gops"] / work["seconds"])
    assert set(prof["conv_work"]) == {"fp32"}  # no int8 kernel ran


def test_an_int8_convolution_reads_its_weight_where_qlinearconv_has_it():
    event = {"args": {"op_name": "QLinearConv",
                      "input_type_shape": [{"uint8": [1, 8, 50]}, {"float": [1]}, {"uint8": [1]},
                                           {"int8": [16, 8, 3]}, {"float": [16]}, {"int8": [16]},
                                           {"float": [1]}, {"uint8": [1]}, {"int32": [16]}],
                      "output_type_shape": [{"uint8": [1, 16, 48]}]}, "dur": 10}
    assert profile.conv_ops(event) == 2 * 16 * 48 * 8 * 3
    assert profile.conv_work([event])["int8"]["kernels"] == 1
    # onnxruntime 1.31 packs the int8 weight ahead and its profile leaves it out: the inputs
    # after it move up a place (what stage 03's profile of a QDQ variant recorded on
    # 2026-12-04), so the weight's shape comes from the graph
    packed = {"name": "/g/convs1.0/Conv_fp32_kernel_time", "dur": 10,
              "args": {"op_name": "QLinearConv",
                       "input_type_shape": [{"uint8": [1, 8, 50]}, {"float": []}, {"uint8": []},
                                            {"float": [16]}, {"int8": [16]}, {"float": []},
                                            {"uint8": []}, {"int32": [16]}],
                       "output_type_shape": [{"uint8": [1, 16, 48]}]}}
    assert profile.conv_ops(packed) is None  # without the graph: not counted, never guessed
    assert profile.conv_ops(packed, {"/g/convs1.0/Conv_fp32": [16, 8, 3]}) == 2 * 16 * 48 * 8 * 3
    assert profile.conv_ops({"args": {"op_name": "Relu"}, "dur": 1}) is None
    assert profile.conv_ops({"args": {"op_name": "Conv", "input_type_shape": []}, "dur": 1}) is None


def test_the_gemm_peak_is_measured_through_onnxruntime_in_both_arithmetics():
    got = peak.gemm_peak(SessionConfig(intra_op_threads=1), repeats=2, side=128)
    assert got["side"] == 128
    for precision in peak.PRECISIONS:
        r = got[precision]
        assert r["median_s"] > 0 and r["gops_per_s"] == pytest.approx(2 * 128 ** 3 / r["median_s"] / 1e9)
    # the int8 model computes what numpy does (uint8 with its zero point, by int8)
    sess = new_session(peak.gemm_model("int8", 4), SessionConfig(intra_op_threads=1))
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    b = numpy_helper.to_array(next(i for i in peak.gemm_model("int8", 4).graph.initializer if i.name == "B"))
    assert (sess.run(None, {"A": a})[0] == (a.astype(np.int32) - 128) @ b.astype(np.int32)).all()
    assert peak.of_peak({"int8": {"gops_per_s": 5.0}}, {"int8": {"gops_per_s": 20.0}}) == {"int8": 0.25}
