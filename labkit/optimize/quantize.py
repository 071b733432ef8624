"""Quantized and half-precision variants built from the reference fp32 graph.

Recipes (each writes one ``.onnx`` under a folder the caller names, normally the stage's
artifact folder; nothing here ever writes into git):

* :func:`labkit.optimize.fp16.build_fp16` -- onnxconverter-common's float16 conversion
  with the block lists that make it work on Kokoro: the generator's harmonic source, STFT
  and iSTFT stay fp32 (the phase cumsum reaches 57,440, past fp16's 65,504 once summed
  further, and atan2 of magnitudes rounded to 0 gives NaN), every ``Cast(to=float)`` is
  blocked *by name* (blocking the op type hangs the converter; converting them breaks
  attention's types), ``max_finite_val`` is raised so the 24000.0 sample-rate constant is
  not clamped to 1e4, and the graph's inputs and outputs stay fp32. Three more fixes were
  needed on the fp32 rebuild (measured, issue 5): the converter leaves fp32 -> fp16 ->
  fp32 Cast round trips *between* blocked nodes, so the "fp32" STFT still rounded tiny
  real/imag parts to 0 (atan2's Div: 0/0 = NaN from the first samples) --
  :func:`labkit.optimize.fp16.drop_roundtrip_casts` removes them; an optimizer-renamed
  ``Transpose_token_36`` inside m_source carried the 65,440-rad phase through fp16 (inf
  from ~130 tokens) -- layout ops fed by the source path are blocked too; and blocking
  only some nodes made de-duplicated constants shared by fp32 and fp16 consumers mistyped
  -- :func:`labkit.optimize.fp16.unshare_initializers` gives the fp32 side its own copy.
  With ``fp16_scope="decoder"`` (preset ``fp16-dec``) the encoder and the duration
  predictor stay fp32: converting them changed a long sentence's length.
* :func:`build_dynamic` -- ``quantize_dynamic`` after ``quant_pre_process``, op types
  limited (MatMul, Conv by default) so the int8 embedding ``Gather`` cannot appear:
  activations are quantized at run time at every site.
* :func:`build_static` -- ``quantize_static`` in QDQ format with activation ranges
  calibrated (MinMax, Entropy or Percentile) on the calibration corpus, fed by a
  :class:`CorpusReader` of real tokens/style/speed. Calibration is run once per method
  and cached (ORT's calibration cache), so per-family variants reuse it.
* :func:`build_weights` -- a measurement, not a speed variant: the float graph with the
  chosen weights rounded to the int8 grid, so a static variant's error can be split into
  its weights' part and its activations' (with ``quantize_outputs=False`` a static build
  leaves each op's output float: the input's part).
* the elementwise tail -- any recipe takes ``rewrites`` (labkit.engine.rewrites): the
  built graph is rewritten and checked (labkit.engine.graph_cache.rewritten_model) before
  it becomes the variant's file, so what ships is one file. In the QDQ graph Snake's ``a``
  still folds into the AdaIN affine and ``Pow(s, 2)`` becomes ``Mul(s, s)``; ``1/a``
  folds only into the convolutions left float (a quantized one reads Snake's output
  through its QuantizeLinear). Stage 03 benches a variant with and without them (the
  default batch's qdq-layers and qdq-layers-tail), so the journal shows what they earn.
* mixed precision -- any recipe takes ``families``: only the nodes of those module
  families are quantized, the rest stay float. labkit.optimize.families names Kokoro's
  modules by node-name prefix; the stage measures each family's cost alone and keeps the
  sensitive ones float (labkit.lab.variant_choice.choose_families).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from labkit import progress
from labkit.engine import assets, graph_cache
from labkit.engine.rewrites import REWRITES
from labkit.optimize.families import FAMILIES, QuantizeError, check_families, family_of, prefixes_of
from labkit.optimize.fp16 import build_fp16

#: op types quantized by default (Gather must not be: int8/uint8 mismatch at the embedding)
DEFAULT_OP_TYPES = ("MatMul", "Conv")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: "weights": not a speed variant -- the graph stays float with its weights rounded to the
#: int8 grid, so the weights' share of a static variant's error is measured alone
RECIPES = ("fp16", "dynamic", "static", "weights")
FP16_SCOPES = ("all", "decoder")


def _nodes_for(model_path: Path, families: list[str] | None, op_types: Sequence[str]) -> list[str] | None:
    """Node names of ``op_types`` in ``families`` (None: every family but the source path)."""
    model = onnx.load(str(model_path), load_external_data=False)
    if families is None:
        return [n.name for n in model.graph.node
                if n.op_type in op_types and family_of(n.name) in FAMILIES]
    prefixes = prefixes_of(families)
    return [n.name for n in model.graph.node
            if n.op_type in op_types and n.name.startswith(prefixes)]


# -- variant description --------------------------------------------------------------------
@dataclass
class VariantSpec:
    """One variant to build: a name, a recipe and its options."""

    name: str
    recipe: str  # fp16 | dynamic | static
    per_channel: bool = False
    #: dynamic: "qint8" | "quint8" (uint8 conv weights run ConvInteger ~4x faster here)
    weight_type: str = "qint8"
    #: static: activation type
    activation_type: str = "quint8"
    calibration: str = "minmax"
    families: list[str] | None = None
    op_types: list[str] = field(default_factory=lambda: list(DEFAULT_OP_TYPES))
    #: fp16: families kept fp32 besides the source/STFT/iSTFT path
    keep_float: list[str] = field(default_factory=list)
    #: fp16: "all" converts the whole graph; "decoder" only the decoder (the encoder and
    #: the duration predictor stay fp32, so durations and lengths cannot change)
    fp16_scope: str = "all"
    #: static: False leaves each quantized op's output float (its input and weights only):
    #: ORT then runs the op in float (no speed), which measures the outputs' share of the error
    quantize_outputs: bool = True
    #: our own graph rewrites (labkit.engine.rewrites.REWRITES) applied to the built graph
    #: and checked there (labkit.engine.graph_cache.rewritten_model): the elementwise tail
    #: the int8 convolutions leave (Snake's passes, the AdaIN norms; issue #33)
    rewrites: list[str] = field(default_factory=list)

    def validate(self) -> "VariantSpec":
        if self.recipe not in RECIPES:
            raise QuantizeError(f"variant {self.name}: recipe {self.recipe!r}; allowed are {RECIPES}")
        if self.calibration not in CALIBRATION_METHODS:
            raise QuantizeError(f"variant {self.name}: calibration {self.calibration!r}; "
                                f"allowed are {CALIBRATION_METHODS}")
        for t in (self.weight_type, self.activation_type):
            if t not in ("qint8", "quint8"):
                raise QuantizeError(f"variant {self.name}: type {t!r}; allowed are qint8, quint8")
        if self.fp16_scope not in FP16_SCOPES:
            raise QuantizeError(f"variant {self.name}: fp16_scope {self.fp16_scope!r}; "
                                f"allowed are {FP16_SCOPES}")
        check_families(self.families)
        check_families(self.keep_float)
        unknown = [r for r in self.rewrites if r not in REWRITES]
        if unknown:
            raise QuantizeError(f"variant {self.name}: unknown rewrite(s) {unknown}; "
                                f"known are {list(REWRITES)}")
        return self

    @classmethod
    def parse(cls, item: str | dict) -> "VariantSpec":
        """From a dict, or a short name: fp16, dyn-pt, dyn-pc, dyn-u8, qdq-minmax,
        qdq-entropy, qdq-percentile (suffix ``-pc`` for per-channel)."""
        if isinstance(item, dict):
            return cls(**item).validate()
        presets = {
            "fp16": dict(recipe="fp16"),
            "fp16-dec": dict(recipe="fp16", fp16_scope="decoder"),
            "dyn-pt": dict(recipe="dynamic"),
            "dyn-pc": dict(recipe="dynamic", per_channel=True),
            "dyn-u8": dict(recipe="dynamic", weight_type="quint8"),
            "qdq-minmax": dict(recipe="static", calibration="minmax"),
            "qdq-entropy": dict(recipe="static", calibration="entropy"),
            "qdq-percentile": dict(recipe="static", calibration="percentile"),
            "qdq-minmax-pc": dict(recipe="static", calibration="minmax", per_channel=True),
            "qdq-percentile-pc": dict(recipe="static", calibration="percentile", per_channel=True),
        }
        if item not in presets:
            raise QuantizeError(f"variant {item!r}: unknown preset; known are {list(presets)} "
                                "(or pass a dict of VariantSpec fields)")
        return cls(name=item, **presets[item]).validate()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Built:
    spec: VariantSpec
    path: Path
    seconds: float
    nodes_quantized: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "path": str(self.path), "seconds": self.seconds,
                "nodes_quantized": self.nodes_quantized, "notes": self.notes}


# -- pre-processing and dynamic int8 ---------------------------------------------------------
def preprocess(reference: Path, out: Path) -> Path:
    """ORT's quant_pre_process (symbolic shape inference + optimization); cached by path."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if out.exists() and out.stat().st_mtime >= reference.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    quant_pre_process(str(reference), str(tmp), skip_symbolic_shape=not has_sympy())
    tmp.replace(out)
    return out


def has_sympy() -> bool:
    """ORT's symbolic shape inference needs sympy (not installed here): without it
    quant_pre_process runs ONNX shape inference and the optimizer only."""
    try:
        import sympy  # noqa: F401
    except ImportError:
        return False
    return True


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "qint8" else QuantType.QUInt8


def build_dynamic(pre: Path, out: Path, spec: VariantSpec) -> int:
    from onnxruntime.quantization import quantize_dynamic

    nodes = _nodes_for(pre, spec.families, spec.op_types)
    quantize_dynamic(str(pre), str(out), op_types_to_quantize=list(spec.op_types),
                     per_channel=spec.per_channel, weight_type=_qtype(spec.weight_type),
                     nodes_to_quantize=nodes, extra_options={"MatMulConstBOnly": True,
                                    "DefaultTensorType": onnx.TensorProto.FLOAT})
    return len(nodes)


# -- static QDQ int8 ----------------------------------------------------------------------------
class CorpusReader:
    """ORT CalibrationDataReader over prepared utterances (real tokens, style, speed)."""

    def __init__(self, prepared: Sequence, voices):
        self._feeds = [p.feeds(voices) for p in prepared]
        self._it = iter(self._feeds)

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


class _One:
    def __init__(self, feeds):
        self._feeds = [feeds]

    def get_next(self):
        return self._feeds.pop() if self._feeds else None


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def calibrate(pre: Path, cache: Path, method: str, prepared: Sequence, voices,
              op_types: Sequence[str] = DEFAULT_OP_TYPES, percentile: float = 99.999) -> Path:
    """Run the calibration corpus through an augmented graph, one utterance at a time (so
    only one utterance's activations are ever held), and save ORT's calibration cache."""
    import tempfile

    from onnxruntime.quantization.calibrate import create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    if cache.exists():
        return cache
    if method not in CALIBRATION_METHODS:
        raise QuantizeError(f"calibration {method!r}; allowed are {CALIBRATION_METHODS}")
    extra = {"percentile": percentile} if method == "percentile" else {}
    # (one utterance per collect_data call: MinMax merges ranges after each call and the
    # histogram methods merge histograms, so memory holds one utterance's activations.
    # ORT's max_intermediate_outputs is not used: in 1.31 it drops data before computing it.)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kokoro-calib.", dir=cache.parent) as tmp:
        calibrator = create_calibrator(
            pre, list(op_types), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=_method(method), extra_options=extra)
        for p in progress.steps(prepared, "calibration utterances", label=lambda p: p.utt.id):
            calibrator.collect_data(_One(p.feeds(voices)))
        data = calibrator.compute_data()
        del calibrator
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_tensors_data(data, cache)
    return cache


def build_static(pre: Path, out: Path, spec: VariantSpec, cache: Path) -> int:
    from onnxruntime.quantization import QuantFormat, quantize_static

    nodes = _nodes_for(pre, spec.families, spec.op_types)
    quantize_static(
        str(pre), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(spec.op_types), per_channel=spec.per_channel,
        activation_type=_qtype(spec.activation_type), weight_type=QuantType_int8(),
        nodes_to_quantize=nodes, calibrate_method=_method(spec.calibration),
        calibration_cache_path=str(cache),
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT,
                       **({} if spec.quantize_outputs
                          else {"OpTypesToExcludeOutputQuantization": list(spec.op_types)})})
    return len(nodes)


def build_weights(pre: Path, out: Path, spec: VariantSpec) -> int:
    """The float graph with the weights of the chosen Conv/MatMul nodes rounded to the
    signed int8 grid a static variant uses (symmetric; per output channel with
    ``per_channel``): what the weights alone cost, measured apart from the activations."""
    model = onnx.load(str(pre))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = set(_nodes_for(pre, spec.families, spec.op_types) or [])
    done = 0
    for n in model.graph.node:
        if n.name not in nodes or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        # Conv weights are (out, in, k...): per output channel on axis 0; MatMul's B is
        # (in, out): per column
        axis = 0 if n.op_type == "Conv" else w.ndim - 1
        peak = (np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis), keepdims=True)
                if spec.per_channel else np.abs(w).max())
        scale = np.where(peak > 0, peak / 127.0, 1.0)
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(
            (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32), n.input[1]))
        done += 1
    onnx.save(model, str(out))
    return done


def QuantType_int8():  # noqa: N802 - weights are signed int8 (VNNI's u8s8 kernels)
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8


# -- one entry point ------------------------------------------------------------------------------
class Builder:
    """Builds variants of one reference into ``out_dir``, sharing the pre-processed graph
    and the calibration caches between them."""

    def __init__(self, reference: str | Path, out_dir: str | Path, calibration=None, voices=None):
        self.reference = Path(reference)
        if not self.reference.exists():
            raise QuantizeError(f"reference model {self.reference} is missing: run `labkit assets`")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.calibration = calibration  # list of corpora.Prepared
        self.voices = voices
        self._pre: Path | None = None

    def pre(self) -> Path:
        if self._pre is None:
            self._pre = preprocess(self.reference, self.out_dir / "_work" / "preprocessed.onnx")
        return self._pre

    def release(self) -> int:
        """Remove the pre-processed graph (a copy of the reference, made again if another
        build asks) once the builds are done: the bytes freed (issue #31: a stage holds no
        copy it no longer reads)."""
        if self._pre is None or not self._pre.exists():
            return 0
        size = self._pre.stat().st_size
        self._pre.unlink()
        self._pre = None
        return size

    def calibration_cache(self, method: str, op_types: Sequence[str] = DEFAULT_OP_TYPES) -> Path:
        cache = self.out_dir / "_work" / f"calibration-{method}-{'-'.join(op_types)}.json"
        if cache.exists():
            return cache
        if not self.calibration or self.voices is None:
            raise QuantizeError("static quantization needs the calibration corpus: pass "
                                "calibration=corpora.prepare(corpora.load('calibration', purpose='calibrate')) and voices")
        return calibrate(self.pre(), cache, method, self.calibration, self.voices, op_types)

    def build(self, spec: VariantSpec | str | dict, force: bool = False) -> Built:
        spec = spec if isinstance(spec, VariantSpec) else VariantSpec.parse(spec)
        spec.validate()
        out = self.out_dir / f"{spec.name}.onnx"
        meta = out.with_suffix(".json")
        if out.exists() and meta.exists() and not force:
            rec = json.loads(meta.read_text())
            if rec.get("spec") == spec.to_dict():
                return Built(spec, out, rec["seconds"], rec.get("nodes_quantized"),
                             rec.get("notes", []) + ["reused an existing build"])
        t0 = time.perf_counter()
        notes: list[str] = []
        n = None
        progress.say(f"building {spec.name} ({spec.recipe}) -> {out.name}")
        # with rewrites, the recipe's graph is an intermediate: rewritten and checked into out
        work = self.out_dir / "_work"
        graph = work / f"{spec.name}.before-rewrites.onnx" if spec.rewrites else out
        graph.parent.mkdir(parents=True, exist_ok=True)
        if spec.recipe == "fp16":
            build_fp16(self.reference, graph, spec.keep_float, spec.fp16_scope)
        elif spec.recipe == "dynamic":
            n = build_dynamic(self.pre(), graph, spec)
        elif spec.recipe == "weights":
            n = build_weights(self.pre(), graph, spec)
        else:
            cache = self.calibration_cache(spec.calibration, spec.op_types)
            n = build_static(self.pre(), graph, spec, cache)
            notes.append(f"calibrated on {len(self.calibration or [])} utterances "
                         f"({spec.calibration})")
        if spec.rewrites:
            done, rw = graph_cache.rewritten_model(graph, spec.rewrites, work)
            done.replace(out)
            graph.unlink()
            notes.append("rewritten and checked: " + ", ".join(
                f"{name} ({k} sites)" for name, k in rw["sites"].items()))
        built = Built(spec, out, time.perf_counter() - t0, n, notes)
        meta.write_text(json.dumps(built.to_dict(), indent=2))
        return built


def op_histogram(model: str | Path) -> dict[str, int]:
    """Op type -> count (to show what a recipe did to the graph)."""
    m = onnx.load(str(model), load_external_data=False)
    out: dict[str, int] = {}
    for n in m.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def file_mb(path: str | Path) -> float:
    return Path(path).stat().st_size / 1e6


__all__ = ["VariantSpec", "Built", "Builder", "CorpusReader", "preprocess", "calibrate", "build_dynamic",
           "build_static", "build_weights", "op_histogram", "provide_variant"]


#: recipes a missing variant can be built from without a calibration corpus
UNCALIBRATED_RECIPES = ("fp16", "dynamic")


def provide_variant(cfg, name: str) -> Path | None:
    """The model file for ``name``: the provisioned one where it exists, else (for a preset
    whose recipe needs no calibration: fp16, fp16-dec, dyn-*) built once from the quality
    reference into the assets folder, where later lookups find it. None when it is
    neither provisioned nor buildable (the caller reports it missing)."""
    path = assets.model_path(cfg, name)
    if path.exists():
        return path
    if name in assets.VARIANT_FILES:  # a release file (fp32, fp16): fetched, never faked
        return None
    try:
        spec = VariantSpec.parse(name)
    except QuantizeError:
        return None
    if spec.recipe not in UNCALIBRATED_RECIPES:
        return None
    built = Builder(assets.reference(cfg).path, path.parent).build(spec)
    return built.path if built.path == path else None
