"""ONNX Runtime's profiler: where the time of an inference goes. The one profile parser.

``SessionOptions.enable_profiling`` makes ORT write a Chrome-trace JSON with one
``"cat": "Node"`` event per kernel run (``dur`` in microseconds, ``args.op_name``,
``args.provider``). :func:`summarize` reads it every way the lab asks: by operator type
(Conv, Sin, Mul, ...), by node-name prefix (``/decoder/decoder/generator`` is the vocoder,
``/decoder`` the whole decoder, ``/encoder``, ``/text_encoder``, ``/predictor`` the rest),
by module family (a caller's grouping, e.g. labkit.optimize.families.family_of) and by
execution provider (a CoreML partition runs as one fused node). :func:`speed_bound` reads two
profiles as Amdahl's bound on what int8 kernels can give.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import onnx

from labkit.engine.graph_cache import onnx_graph_of
from labkit.engine.sessions import for_session, new_session

#: node-name prefixes reported as shares of total kernel time
DEFAULT_PREFIXES = {
    "vocoder": "/decoder/decoder/generator",
    "decoder": "/decoder",
    "predictor": "/predictor",
    "text_encoder": "/text_encoder",
    "bert": "/encoder",
}
CPU = "CPUExecutionProvider"


def _events(trace: str | os.PathLike | list[dict]) -> list[dict]:
    if isinstance(trace, list):
        return trace
    data = json.loads(Path(trace).read_text())
    return data if isinstance(data, list) else data.get("traceEvents", [])


def read_trace(trace: str | os.PathLike | list[dict], last_runs: int | None = None) -> list[dict]:
    """Kernel events (``cat == "Node"``, ``*_kernel_time``) of an ORT profile (a path or
    its events). With ``last_runs``, only those inside the last ``last_runs``
    ``model_run`` spans (warm-up runs are in the same trace)."""
    events = _events(trace)
    kernels = [e for e in events if e.get("cat") == "Node" and "dur" in e
               and str(e.get("name", "")).endswith("_kernel_time")]
    if last_runs:
        spans = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
                       if e.get("cat") == "Session" and e.get("name") == "model_run")
        spans = spans[-last_runs:]
        if spans:
            kernels = [e for e in kernels
                       if any(a <= float(e.get("ts", -1)) <= b for a, b in spans)]
    return kernels


def node_name(event: dict) -> str:
    name = event.get("name", "")
    return name[: -len("_kernel_time")] if name.endswith("_kernel_time") else name


def summarize(events: list[dict], prefixes: dict[str, str] | None = None, top: int = 12,
              runs: int = 1, family_of: Callable[[str], str] | None = None,
              weights: dict[str, list[int]] | None = None) -> dict:
    """Kernel time of ``events`` (from :func:`read_trace`), per inference (``runs``
    divides the totals): ``kernel_seconds``; ``top_ops`` and ``by_op`` (seconds by operator
    type); ``share`` (fraction of time under each name prefix); ``by_family`` (seconds by
    ``family_of(node name)``, when given); ``by_provider`` ({nodes, kernel_us, time_share});
    ``cpu_top_ops_us`` (the CPU provider's slowest operator types, µs); ``conv_work``
    (:func:`conv_work`, with ``weights`` from :func:`conv_weight_shapes`)."""
    prefixes = DEFAULT_PREFIXES if prefixes is None else prefixes
    runs = max(int(runs), 1)
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    by_prefix: dict[str, float] = defaultdict(float)
    by_family: dict[str, float] = defaultdict(float)
    providers: dict[str, dict] = {}
    cpu_ops: dict[str, float] = defaultdict(float)
    total = 0.0
    for e in events:
        dur = float(e["dur"]) / 1e6
        args = e.get("args", {})
        op = args.get("op_name", "?")
        node = node_name(e)
        by_op[op] += dur
        count[op] += 1
        total += dur
        for label, prefix in prefixes.items():
            if node.startswith(prefix):
                by_prefix[label] += dur
        if family_of is not None:
            by_family[family_of(node)] += dur
        ep = args.get("provider", "unknown")
        entry = providers.setdefault(ep, {"nodes": set(), "seconds": 0.0})
        entry["nodes"].add(node)
        entry["seconds"] += dur
        if ep == CPU:
            cpu_ops[op] += dur
    denom = max(total, 1e-12)
    ranked = sorted(by_op.items(), key=lambda kv: kv[1], reverse=True)
    out = {
        "kernel_seconds": total / runs,
        "top_ops": [{"op": op, "seconds": s / runs, "share": s / denom,
                     "calls": count[op] // runs} for op, s in ranked[:top]],
        "by_op": {op: s / runs for op, s in ranked},
        "share": {label: by_prefix.get(label, 0.0) / denom for label in prefixes},
        "by_provider": {ep: {"nodes": len(e["nodes"]),
                             "kernel_us": round(e["seconds"] * 1e6 / runs, 1),
                             "time_share": round(e["seconds"] / denom, 4)}
                        for ep, e in sorted(providers.items())},
        "cpu_top_ops_us": {op: round(s * 1e6 / runs, 1)
                           for op, s in sorted(cpu_ops.items(), key=lambda kv: -kv[1])[:10]},
    }
    if family_of is not None:
        out["by_family"] = {k: v / runs for k, v in sorted(by_family.items(), key=lambda kv: -kv[1])}
    out["conv_work"] = conv_work(events, runs, weights)
    return out


#: convolution kernels -> (the weight's input index, float or int8 arithmetic)
CONV_OPS = {"Conv": (1, "fp32"), "FusedConv": (1, "fp32"), "ConvTranspose": (1, "fp32"),
            "ConvInteger": (1, "int8"), "QLinearConv": (3, "int8")}


def _shape(entry: Any) -> list[int] | None:
    """A profile's ``{"float": [1, 512, 285]}`` as its dimensions."""
    if isinstance(entry, dict) and entry:
        dims = next(iter(entry.values()))
        if isinstance(dims, list) and all(isinstance(d, int) for d in dims):
            return dims
    return None


def conv_weight_shapes(model: str | os.PathLike | onnx.ModelProto) -> dict[str, list[int]]:
    """Node name -> its weight's shape, for the graph's convolutions: ORT's profile leaves
    out the inputs a kernel packed ahead (a ConvTranspose's weight, often), so the graph says
    (a weight behind a DequantizeLinear is that node's initializer)."""
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    shapes = {i.name: list(i.dims) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input and n.input[0] in shapes:
            shapes[n.output[0]] = shapes[n.input[0]]
    out = {}
    for n in m.graph.node:
        w_at = CONV_OPS.get(n.op_type, (None,))[0]
        if w_at is not None and len(n.input) > w_at and n.input[w_at] in shapes:
            out[n.name] = shapes[n.input[w_at]]
    return out


def conv_ops(event: dict, weights: dict[str, list[int]] | None = None) -> float | None:
    """Arithmetic operations (2 per multiply-add) of one convolution kernel run, from the
    shapes ORT's profile records beside it (the weight's from ``weights``,
    :func:`conv_weight_shapes`, where the profile left it out): an output element of a Conv
    takes Cin/groups x kernel multiply-adds (the weight's shape past its first axis); an
    input element of a ConvTranspose scatters as many. None for other kernels or missing
    shapes."""
    args = event.get("args", {})
    op = args.get("op_name")
    if op not in CONV_OPS:
        return None
    ins = args.get("input_type_shape") or []
    outs = args.get("output_type_shape") or []
    w_at = CONV_OPS[op][0]
    w = _shape(ins[w_at]) if len(ins) > w_at else None
    if not w or len(w) < 3:
        # the profile leaves out an input the kernel packed ahead, and the inputs after it
        # move up a place (QLinearConv's weight: its scales then sit where it was); a
        # convolution's weight has three axes or more, its scales, zero points and bias one
        w = (weights or {}).get(node_name(event))
    per = 1
    for d in (w or [])[1:]:
        per *= d
    where = _shape(ins[0]) if op == "ConvTranspose" and ins else (_shape(outs[0]) if outs else None)
    if not w or not where:
        return None
    n = 1
    for d in where:
        n *= d
    return 2.0 * n * per


def conv_work(events: list[dict], runs: int = 1,
              weights: dict[str, list[int]] | None = None) -> dict[str, dict]:
    """Per arithmetic (``fp32`` or ``int8``), the convolutions' operations and kernel time per
    inference and what they achieved (``gops_per_s``: GFLOP/s for fp32, GOP/s for int8),
    to set against the machine's measured peak (labkit.measure.peak); ``skipped``: kernels
    whose shapes were not known (left out of both figures)."""
    acc: dict[str, list[float]] = {}
    for e in events:
        ops = conv_ops(e, weights)
        if ops is None:
            continue
        kind = CONV_OPS[e["args"]["op_name"]][1]
        a = acc.setdefault(kind, [0.0, 0.0, 0])
        a[0] += ops
        a[1] += float(e["dur"]) / 1e6
        a[2] += 1
    runs = max(int(runs), 1)
    skipped = sum(1 for e in events if e.get("args", {}).get("op_name") in CONV_OPS
                  and conv_ops(e, weights) is None)
    return {k: {"gops": ops / runs / 1e9, "seconds": sec / runs, "kernels": n // runs,
                "gops_per_s": ops / max(sec, 1e-12) / 1e9, "skipped": skipped // runs}
            for k, (ops, sec, n) in sorted(acc.items())}


def profile_session(model: str | os.PathLike, session_cfg, feeds: dict, runs: int = 1,
                    warmup: int = 1, out_dir: str | os.PathLike | None = None,
                    prefixes: dict[str, str] | None = None, top: int = 12,
                    family_of: Callable[[str], str] | None = None) -> dict:
    """Profile ``runs`` inferences of a fresh session of ``model`` (LabConfig session
    settings) after ``warmup`` untimed ones (excluded from the summary); the summary of
    :func:`summarize` plus ``trace`` (the profile file)."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="ortprof-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    def enable(so) -> None:
        so.enable_profiling = True
        so.profile_file_prefix = str(out_dir / f"{Path(model).stem}-profile")

    sess = new_session(model, session_cfg, configure=enable)
    feeds = for_session(feeds, sess)
    for _ in range(warmup + runs):
        sess.run(None, feeds)
    path = Path(sess.end_profiling())
    # the weights' shapes from the ONNX graph (an ORT-format file is read by ORT only)
    out = summarize(read_trace(path, last_runs=runs), prefixes, top=top, runs=runs,
                    family_of=family_of, weights=conv_weight_shapes(onnx_graph_of(model)))
    out["trace"] = str(path)
    return out


def as_rows(summary: dict) -> list[dict]:
    return list(summary.get("top_ops", []))


#: op types a QDQ/int8 recipe replaces (float side) and the int8 kernels that replace them
FLOAT_HEAVY_OPS = ("Conv", "MatMul", "FusedMatMul", "FusedConv")


INT8_OPS = ("QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeLinear",
            "QuantizeLinear", "DequantizeLinear", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")


def speed_bound(ref_profile: dict, var_profile: dict | None = None) -> dict[str, Any]:
    """Why the speed-up is what it is, from two ORT profiles (:func:`profile_session`):
    the share of the reference's kernel time in float Conv/MatMul (what int8 can touch),
    and Amdahl's bound on the whole-run speed-up if that share ran 2x / 4x faster; with a
    variant's profile, the measured kernel-time ratio of what replaced it."""
    total = ref_profile["kernel_seconds"] or 1e-12
    heavy = sum(v for k, v in ref_profile["by_op"].items() if k in FLOAT_HEAVY_OPS)
    p = heavy / total
    out: dict[str, Any] = {"heavy_share": p,
                           "bound_if_2x": 1.0 / (1.0 - p + p / 2.0),
                           "bound_if_4x": 1.0 / (1.0 - p + p / 4.0)}
    if var_profile is not None:
        v_heavy = sum(v for k, v in var_profile["by_op"].items()
                      if k in FLOAT_HEAVY_OPS or k in INT8_OPS)
        out["replaced_kernel_ratio"] = heavy / v_heavy if v_heavy else None
        out["qdq_overhead_s"] = sum(v for k, v in var_profile["by_op"].items()
                                    if k in ("QuantizeLinear", "DequantizeLinear",
                                             "DynamicQuantizeLinear"))
        out["total_ratio"] = total / (var_profile["kernel_seconds"] or 1e-12)
    return out
