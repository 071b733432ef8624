"""This machine's measured ceiling for the arithmetic a convolution does: a square matrix
product through ONNX Runtime's own CPU kernels at the session's threads (issue #33).

* fp32: ``MatMul`` of float matrices (MLAS's SGEMM: FMA on x86, NEON on ARM64);
* int8: ``MatMulInteger`` of uint8 activations by int8 weights (MLAS's u8s8 integer GEMM:
  AVX2, AVX-512 or VNNI on x86 as the CPU has them, the dot-product instructions on ARM64),
  the kernel family ORT's int8 convolutions run on.

:func:`gemm_peak` returns operations per second (2 per multiply-add) for each, what a
profile's ``conv_work`` (labkit.measure.profile) is set against: a convolution at 90 % of
the fp32 figure has little left to gain in fp32.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from labkit import timing
from labkit.config import SessionConfig
from labkit.engine.sessions import new_session

#: the matrices' side: big enough that the kernel, not the call, is timed (2.1 GOP a run)
SIDE = 1024
#: the arithmetics measured, by the name labkit.measure.profile.conv_work uses
PRECISIONS = ("fp32", "int8")


def gemm_model(precision: str, side: int = SIDE) -> onnx.ModelProto:
    """A one-node model: ``A (side x side) @ B`` with B a constant, in ``precision``."""
    rng = np.random.default_rng(0)
    if precision == "fp32":
        b = rng.standard_normal((side, side)).astype(np.float32)
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type, extra = TensorProto.FLOAT, TensorProto.FLOAT, []
    elif precision == "int8":
        b = rng.integers(-127, 128, (side, side), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        extra = [numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
                 numpy_helper.from_array(np.array(0, np.int8), "b_zero")]
    else:
        raise ValueError(f"precision {precision!r}: one of {PRECISIONS}")
    graph = helper.make_graph([node], f"gemm-{precision}",
                              [helper.make_tensor_value_info("A", a_type, [side, side])],
                              [helper.make_tensor_value_info("Y", y_type, [side, side])],
                              [numpy_helper.from_array(b, "B"), *extra])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def gemm_peak(session_cfg: SessionConfig, repeats: int = 10, side: int = SIDE) -> dict[str, Any]:
    """Per precision: the median time of one ``side``-cubed product and the operations per
    second it reached (``gops_per_s``: GFLOP/s for fp32, GOP/s for int8), through the lab's
    session factory with ``session_cfg``'s threads."""
    rng = np.random.default_rng(1)
    inputs = {"fp32": rng.standard_normal((side, side)).astype(np.float32),
              "int8": rng.integers(0, 256, (side, side), dtype=np.uint8)}
    ops = 2.0 * side ** 3
    out: dict[str, Any] = {"side": side}
    for precision in PRECISIONS:
        sess = new_session(gemm_model(precision, side), session_cfg)
        t, _ = timing.measure(lambda s=sess, a=inputs[precision]: s.run(None, {"A": a}),
                              repeats=repeats, warmup=2)
        out[precision] = {"median_s": t.median, "gops_per_s": ops / t.median / 1e9}
    return out


def of_peak(conv_work: dict[str, dict], peak: dict[str, Any]) -> dict[str, float]:
    """Per precision a profile's convolutions ran in, their achieved rate as a fraction of
    the measured peak for that precision."""
    return {k: v["gops_per_s"] / peak[k]["gops_per_s"] for k, v in conv_work.items()
            if k in peak and peak[k].get("gops_per_s")}
