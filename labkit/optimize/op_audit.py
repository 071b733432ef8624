"""Static op audit of a model file: what a runtime other than ORT's CPU provider must support.

Runs anywhere (onnx only, no session): the op histogram with domains, opsets, dynamic
axes, control flow, custom-domain (``com.microsoft``) ops, initializer precision, the
quantization ops, and each op against the CoreML EP's supported-op tables for MLProgram and
NeuralNetwork (``labkit/data/coreml_ops.json``, with the ONNX Runtime version they come
from). The partition estimate uses ONNX Runtime's own partitioning algorithm
(``onnxruntime.tools.mobile_helpers.usability_checker.check_partitioning``) over those
tables: an *estimate* from op types only, which the placement log of a real CoreML session
(:mod:`labkit.optimize.coreml`) confirms or corrects on the Mac.

Beside it, the checks of a cross-runtime op audit: how attention is expressed, which
activations and normalizations the graph uses (and whether CoreML has them), layout
transposes, and whether the graph has a streaming path or only a batched one.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import onnx
from labkit.config import DATA_DIR
from labkit.engine import assets
from labkit.optimize import quantize

DATA_FILE = DATA_DIR / "coreml_ops.json"
FORMATS = ("MLProgram", "NeuralNetwork")
DEFAULT_DOMAIN = "ai.onnx"

#: ops whose CoreML support decides how Kokoro partitions (recurrent text/duration
#: encoders, the Snake/harmonic source, duration expansion, the iSTFT vocoder)
WATCHLIST = ("ai.onnx:LSTM", "com.microsoft:DynamicQuantizeLSTM", "ai.onnx:Sin", "ai.onnx:Cos",
             "ai.onnx:CumSum", "ai.onnx:Where", "ai.onnx:Range", "ai.onnx:NonZero",
             "ai.onnx:ScatterND", "ai.onnx:STFT", "ai.onnx:Atan", "ai.onnx:ConvTranspose",
             "ai.onnx:Gather", "ai.onnx:Expand", "ai.onnx:Floor", "ai.onnx:Pad",
             "ai.onnx:ConvInteger", "ai.onnx:MatMulInteger", "ai.onnx:DynamicQuantizeLinear")
CONTROL_FLOW = ("If", "Loop", "Scan", "SequenceMap")
QUANT_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM",
             "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
             "DynamicQuantizeMatMul", "MatMulNBits")
ACTIVATIONS = ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Gelu", "FastGelu", "BiasGelu",
               "QuickGelu", "Erf", "Elu", "Softplus", "HardSigmoid", "Sin", "Cos", "Exp", "Snake")
NORMALIZATIONS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                  "InstanceNormalization", "GroupNormalization", "BatchNormalization")
ATTENTION_FUSED = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention")
RECURRENT = ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM")


class AuditError(ValueError):
    """The model file cannot be audited; the message names it."""


def op_key(node: onnx.NodeProto) -> str:
    return f"{node.domain or DEFAULT_DOMAIN}:{node.op_type}"


@lru_cache(maxsize=4)
def load_supported(path: str | None = None) -> dict[str, Any]:
    """The CoreML supported-op tables: {"onnxruntime_version", "source", "formats": {fmt: {op: note}}}."""
    data = json.loads(Path(path or DATA_FILE).read_text(encoding="utf-8"))
    for fmt in FORMATS:
        if fmt not in data.get("formats", {}):
            raise AuditError(f"{path or DATA_FILE}: no table for {fmt}")
    return data


def installed_tables() -> dict[str, dict[str, str]] | None:
    """The tables shipped with the *installed* onnxruntime (tools/mobile_helpers), parsed
    the same way, or None where the wheel has none. Lets a run on another ORT version say
    whether our pinned data still matches."""
    import onnxruntime as ort

    base = Path(ort.__file__).parent / "tools" / "mobile_helpers"
    files = {"MLProgram": "coreml_supported_mlprogram_ops.md",
             "NeuralNetwork": "coreml_supported_neuralnetwork_ops.md"}
    if not all((base / f).exists() for f in files.values()):
        return None
    fixes = {"ai.onnx:Argmax": "ai.onnx:ArgMax", "ai.onnx.ReduceSum": "ai.onnx:ReduceSum"}
    out: dict[str, dict[str, str]] = {}
    for fmt, name in files.items():
        ops: dict[str, str] = {}
        for line in (base / name).read_text(encoding="utf-8").splitlines():
            pieces = line.strip().split("|")
            if line.startswith("|") and len(pieces) == 4 and pieces[1] not in ("Operator", "--------"):
                ops[fixes.get(pieces[1], pieces[1])] = pieces[2].replace("<br/>", " ")
        out[fmt] = ops
    return out


class _TableChecker:
    """Duck-typed stand-in for ORT's _SupportedOpsChecker over our JSON tables."""

    def __init__(self, ops: dict[str, str]):
        self._ops = ops
        self._seen: set[str] = set()

    def is_op_supported(self, node) -> bool:
        key = op_key(node)
        if key in self._ops:
            self._seen.add(key)
            return True
        return False

    def get_caveats(self) -> list[str]:
        return [f"{op}: {self._ops[op]}" for op in sorted(self._seen) if self._ops[op]]


@dataclass
class FormatAudit:
    """One CoreML model format against the graph."""

    format: str
    supported_nodes: int
    unsupported_nodes: int
    unsupported_ops: dict[str, int]
    caveats: dict[str, str]
    estimated_partitions: int
    largest_partitions: list[int]

    @property
    def coverage_pct(self) -> float:
        total = self.supported_nodes + self.unsupported_nodes
        return round(100.0 * self.supported_nodes / max(total, 1), 2)


@dataclass
class OpAudit:
    model: str
    nodes: int
    ir_version: int
    producer: str
    opsets: dict[str, int]
    ops: dict[str, int]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    dynamic_axes: dict[str, list[str]]
    control_flow: dict[str, int]
    custom_domain_ops: dict[str, int]
    quantization_ops: dict[str, int]
    initializers: dict[str, dict[str, int]]
    coreml: dict[str, FormatAudit]
    watchlist: dict[str, dict[str, Any]]
    checks: dict[str, Any]
    tables: dict[str, str] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        """The dominant weight precision by bytes (float32, float16, int8/uint8 ...)."""
        if not self.initializers:
            return "none"
        return max(self.initializers.items(), key=lambda kv: kv[1]["bytes"])[0]

    @property
    def precision_mix(self) -> dict[str, float]:
        """Share of the initializer bytes per element type, largest first (a mixed fp16
        graph is about half float16, half float)."""
        total = sum(v["bytes"] for v in self.initializers.values()) or 1
        return {k: round(v["bytes"] / total, 3) for k, v in
                sorted(self.initializers.items(), key=lambda kv: -kv[1]["bytes"]) if v["bytes"]}

    def unsupported(self, fmt: str) -> set[str]:
        return set(self.coreml[fmt].unsupported_ops)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for fmt, fa in self.coreml.items():
            d["coreml"][fmt]["coverage_pct"] = fa.coverage_pct
        d["precision"] = self.precision
        d["precision_mix"] = self.precision_mix
        return d

    def table(self) -> list[dict[str, Any]]:
        """One row per op type: count and CoreML support per format (for the notebook)."""
        rows = []
        for op, n in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0])):
            row: dict[str, Any] = {"op": op, "count": n}
            for fmt, fa in self.coreml.items():
                row[fmt] = "no" if op in fa.unsupported_ops else ("yes*" if op in fa.caveats else "yes")
            rows.append(row)
        return rows


def _dtype(t: int) -> str:
    return onnx.TensorProto.DataType.Name(t).lower()


def _shape(vi: onnx.ValueInfoProto) -> list[Any]:
    dims = []
    for d in vi.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def _tensor_bytes(t: onnx.TensorProto) -> int:
    if t.raw_data:
        return len(t.raw_data)
    n = 1
    for d in t.dims:
        n *= d
    try:
        size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except Exception:  # string tensors and the like
        size = 0
    return n * size


def _iter_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_nodes(g)


def _format_audit(model: onnx.ModelProto, fmt: str, table: dict[str, str]) -> FormatAudit:
    from onnxruntime.tools.mobile_helpers.usability_checker import check_partitioning

    checker = _TableChecker(table)
    info = check_partitioning(model.graph, checker, require_fixed_input_sizes=False, max_rank=5)
    unsupported = Counter(op_key(n) for n in _iter_nodes(model.graph) if op_key(n) not in table)
    used = {op_key(n) for n in _iter_nodes(model.graph)}
    caveats = {op: table[op] for op in sorted(used) if op in table and table[op]}
    sizes = sorted((len(g) for g in info.supported_groups), reverse=True)
    return FormatAudit(fmt, info.num_supported_nodes, info.num_nodes - info.num_supported_nodes,
                       dict(unsupported.most_common()), caveats, info.num_partitions, sizes[:10])


def _checks(model: onnx.ModelProto, ops: Counter, tables: dict[str, dict[str, str]]) -> dict[str, Any]:
    g = model.graph
    by_type = Counter(n.op_type for n in _iter_nodes(g))

    def support(op_type: str) -> dict[str, bool]:
        keys = [k for k in ops if k.split(":", 1)[1] == op_type] or [f"{DEFAULT_DOMAIN}:{op_type}"]
        return {fmt: any(k in tables[fmt] for k in keys) for fmt in FORMATS}

    # attention: fused op, or the unfused MatMul -> Softmax -> MatMul chain
    producers = {o: n for n in g.node for o in n.output}
    unfused = 0
    for n in g.node:
        if n.op_type == "Softmax" and n.input:
            src = producers.get(n.input[0])
            hops = 0
            while src is not None and src.op_type not in ("MatMul", "FusedMatMul") and hops < 4:
                src = producers.get(src.input[0]) if src.input else None
                hops += 1
            if src is not None and src.op_type in ("MatMul", "FusedMatMul"):
                unfused += 1
    fused = {t: by_type[t] for t in ATTENTION_FUSED if by_type[t]}
    attention = {
        "softmax": by_type["Softmax"], "fused_ops": fused, "unfused_matmul_softmax": unfused,
        "pattern": ("fused " + ", ".join(fused)) if fused else
                   ("unfused MatMul/FusedMatMul -> Softmax -> MatMul" if unfused else "none found"),
        "float_matmuls": by_type["MatMul"] + by_type["FusedMatMul"],
        "coreml_softmax": support("Softmax"), "coreml_fusedmatmul": support("FusedMatMul"),
    }
    activations = {t: {"count": by_type[t], **support(t)} for t in ACTIVATIONS if by_type[t]}
    norms = {t: {"count": by_type[t], **support(t)} for t in NORMALIZATIONS if by_type[t]}
    # decomposed LayerNorm: ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt -> Div
    norms["decomposed (ReduceMean + Sqrt)"] = {
        "count": min(by_type["ReduceMean"] // 2, by_type["Sqrt"]), **support("ReduceMean")}
    perms = Counter(tuple(a.ints) for n in g.node if n.op_type == "Transpose"
                    for a in n.attribute if a.name == "perm")
    layout = {"transposes": by_type["Transpose"], "reshapes": by_type["Reshape"],
              "perms": {str(list(k)): v for k, v in perms.most_common(8)}}
    recurrent = {t: by_type[t] for t in RECURRENT if by_type[t]}
    data_dependent = {t: by_type[t] for t in ("NonZero", "Range", "CumSum", "Expand", "ScatterND")
                      if by_type[t]}
    dyn_out = [o.name for o in g.output if any(isinstance(d, str) for d in _shape(o))]
    streaming = {
        "recurrent_ops": recurrent, "data_dependent_shape_ops": data_dependent,
        "dynamic_outputs": dyn_out,
        "path": ("batched only: one call maps all tokens to all audio; the recurrent layers run over "
                 "the whole sequence and the output length is data-dependent (predicted durations), "
                 "so there is no incremental state to carry between calls; streaming happens "
                 "outside the graph, by chunking text (labkit.engine.chunking)") if recurrent or data_dependent
                else "no recurrent or data-dependent ops found",
    }
    return {"attention": attention, "activations": activations, "normalization": norms,
            "layout": layout, "streaming": streaming}


def audit(path: str | Path, tables: dict[str, dict[str, str]] | None = None) -> OpAudit:
    """Audit one model file (weights are not needed: external data is not loaded)."""
    path = Path(path)
    if not path.exists():
        raise AuditError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - report which file and why
        raise AuditError(f"{path}: not a readable ONNX model ({exc})") from exc
    data = load_supported()
    tables = tables or data["formats"]
    g = model.graph
    nodes = list(_iter_nodes(g))
    ops = Counter(op_key(n) for n in nodes)
    inits: dict[str, dict[str, int]] = {}
    for t in g.initializer:
        e = inits.setdefault(_dtype(t.data_type), {"count": 0, "bytes": 0})
        e["count"] += 1
        e["bytes"] += _tensor_bytes(t)
    graph_inputs = [i for i in g.input if i.name not in {t.name for t in g.initializer}]
    io = lambda vis: [{"name": v.name, "dtype": _dtype(v.type.tensor_type.elem_type),
                       "shape": _shape(v)} for v in vis]
    dynamic = {v.name: [f"{i}:{d}" for i, d in enumerate(_shape(v)) if isinstance(d, str)]
               for v in [*graph_inputs, *g.output]}
    coreml = {fmt: _format_audit(model, fmt, tables[fmt]) for fmt in FORMATS}
    watch = {}
    for op in WATCHLIST:
        if ops[op]:
            watch[op] = {"count": ops[op], **{fmt: op in tables[fmt] for fmt in FORMATS}}
    return OpAudit(
        model=str(path), nodes=len(nodes), ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        opsets={(o.domain or DEFAULT_DOMAIN): o.version for o in model.opset_import},
        ops=dict(ops.most_common()), inputs=io(graph_inputs), outputs=io(g.output),
        dynamic_axes={k: v for k, v in dynamic.items() if v},
        control_flow={t: c for t, c in Counter(n.op_type for n in nodes).items() if t in CONTROL_FLOW},
        custom_domain_ops={k: v for k, v in ops.items() if not k.startswith(DEFAULT_DOMAIN + ":")},
        quantization_ops={k.split(":", 1)[1]: v for k, v in ops.items() if k.split(":", 1)[1] in QUANT_OPS},
        initializers=inits, coreml=coreml, watchlist=watch, checks=_checks(model, ops, tables),
        tables={"onnxruntime_version": data["onnxruntime_version"], "source": data["source"]},
    )


def compare_tables(pinned: dict[str, dict[str, str]] | None = None,
                   installed: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Ops added/removed between our pinned tables and the installed onnxruntime's."""
    pinned = pinned or load_supported()["formats"]
    installed = installed if installed is not None else installed_tables()
    if installed is None:
        return {"installed": None}
    return {fmt: {"added": sorted(set(installed[fmt]) - set(pinned[fmt])),
                  "removed": sorted(set(pinned[fmt]) - set(installed[fmt]))} for fmt in FORMATS}


def audit_variants(cfg, variants) -> tuple[dict[str, OpAudit], dict[str, str]]:
    """Audit each variant whose model file exists or can be built without calibration
    (``quantize.provide_variant``: fp16-dec, dyn-*); the others come back with the path
    that is missing (reported, never guessed)."""
    audits: dict[str, OpAudit] = {}
    missing: dict[str, str] = {}
    for variant in variants:
        path = quantize.provide_variant(cfg, variant)
        if path is not None:
            audits[variant] = audit(path)
        else:
            missing[variant] = f"{assets.model_path(cfg, variant)} not found"
    return audits, missing
