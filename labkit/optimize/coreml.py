"""ONNX Runtime's CoreML execution provider: options, placement and the per-configuration sweep.

Three parts, each usable on any machine except the last:

* **Provider options** (:data:`OPTIONS`, :func:`validate_options`, :func:`provider_options`,
  :func:`session_config`). LabConfig holds them in
  ``session.provider_options["CoreMLExecutionProvider"]``; they are checked *before* a
  session is made, so a typo is a clear error naming the allowed keys and values rather
  than ORT's terse ``Unknown option``.
* **Placement, read from ONNX Runtime itself** (:func:`capture_ort_log`,
  :func:`parse_placement_log`, :func:`parse_profile`). With session logging at VERBOSE,
  ORT prints the CoreML EP's ``GetCapability`` summary (partitions, nodes in the graph,
  nodes CoreML takes) and, for every provider, ``Node(s) placed on [EP]. Number of
  nodes: N`` followed by one line per node. The profiler's JSON gives each executed node's
  ``provider`` and its time, so the share of *run time* spent outside CoreML is measured
  too. Nothing here is estimated.
* **The sweep** (:func:`run_config`): cold start (empty model cache), cached start,
  warm latency by token length, placement and quality against the reference, for one
  provider configuration. It runs the same way on the CPU provider, which is what this
  lab does where CoreML does not exist (:func:`coreml_available`, :func:`skip_reason`).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from labkit.config import ConfigError, LabConfig, SessionConfig

PROVIDER = "CoreMLExecutionProvider"
CPU = "CPUExecutionProvider"

#: Every provider option the CoreML EP accepts (ORT's CoreMLOptions::ValidateAndParseProviderOption,
#: plus ModelCacheDirectory) and its allowed values; ``None`` means a free-form path.
OPTIONS: dict[str, tuple[str, ...] | None] = {
    "ModelFormat": ("MLProgram", "NeuralNetwork"),
    "MLComputeUnits": ("CPUOnly", "CPUAndGPU", "CPUAndNeuralEngine", "ALL"),
    "RequireStaticInputShapes": ("0", "1"),
    "EnableOnSubgraphs": ("0", "1"),
    "SpecializationStrategy": ("Default", "FastPrediction"),
    "ProfileComputePlan": ("0", "1"),
    "AllowLowPrecisionAccumulationOnGPU": ("0", "1"),
    "ModelCacheDirectory": None,
}
MODEL_FORMATS = OPTIONS["ModelFormat"]
COMPUTE_UNITS = OPTIONS["MLComputeUnits"]


class CoreMLOptionError(ConfigError):
    """A CoreML provider option is unknown or has a value the EP does not accept."""


# -- availability ------------------------------------------------------------------------
def platform_name() -> str:
    """``Darwin arm64``, ``Linux x86_64``: the words the skip reason uses."""
    return f"{platform.system()} {platform.machine()}".strip()


def coreml_available() -> bool:
    import onnxruntime as ort

    return PROVIDER in ort.get_available_providers()


def skip_reason() -> str:
    return f"{PROVIDER} not available on {platform_name()}"


# -- options -------------------------------------------------------------------------------
def _as_flag(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) and value in (0, 1):
        return str(value)
    text = str(value).strip()
    if text.lower() in ("true", "yes", "on"):
        return "1"
    if text.lower() in ("false", "no", "off"):
        return "0"
    if text in ("0", "1"):
        return text
    raise CoreMLOptionError(
        f"{PROVIDER} option {key}={value!r}: allowed are 0/1 (or true/false)")


def validate_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """The options as the strings ORT takes, or a :class:`CoreMLOptionError` that names the
    unknown key (with the allowed keys) or the bad value (with the allowed values)."""
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        if key not in OPTIONS:
            raise CoreMLOptionError(
                f"unknown {PROVIDER} option {key!r}; allowed keys: {', '.join(OPTIONS)}")
        allowed = OPTIONS[key]
        if allowed is None:  # a path
            if value is None or not str(value).strip():
                raise CoreMLOptionError(f"{PROVIDER} option {key}: expected a directory path")
            out[key] = str(value)
        elif allowed == ("0", "1"):
            out[key] = _as_flag(key, value)
        else:
            if str(value) not in allowed:
                raise CoreMLOptionError(
                    f"{PROVIDER} option {key}={value!r}: allowed are {', '.join(allowed)}")
            out[key] = str(value)
    return out


def provider_options(cfg: LabConfig) -> dict[str, str]:
    """The validated CoreML options of ``cfg`` (ModelCacheDirectory made absolute from the
    repository root, so the cache does not depend on the notebook's working directory)."""
    opts = validate_options(cfg.session.provider_options.get(PROVIDER))
    if "ModelCacheDirectory" in opts:
        opts["ModelCacheDirectory"] = str(cfg.resolve(opts["ModelCacheDirectory"]))
    return opts


def session_config(cfg: LabConfig, model_format: str | None = None,
                   compute_units: str | None = None, static_shapes: bool | None = None,
                   cache_dir: str | os.PathLike | None = None,
                   extra: Mapping[str, Any] | None = None) -> SessionConfig:
    """A copy of ``cfg.session`` that puts CoreML first (CPU takes what CoreML cannot), with
    the config's CoreML options overridden by the arguments given. Validated here."""
    opts: dict[str, Any] = dict(cfg.session.provider_options.get(PROVIDER) or {})
    if model_format is not None:
        opts["ModelFormat"] = model_format
    if compute_units is not None:
        opts["MLComputeUnits"] = compute_units
    if static_shapes is not None:
        opts["RequireStaticInputShapes"] = static_shapes
    if cache_dir is not None:
        opts["ModelCacheDirectory"] = str(cache_dir)
    opts.update(extra or {})
    checked = validate_options(opts)
    if "ModelCacheDirectory" in checked:
        checked["ModelCacheDirectory"] = str(cfg.resolve(checked["ModelCacheDirectory"]))
    s = SessionConfig(**{**asdict(cfg.session)})
    s.providers = [PROVIDER] + [p for p in s.providers if p != PROVIDER]
    if CPU not in s.providers:
        s.providers.append(CPU)
    s.provider_options = {**s.provider_options, PROVIDER: checked}
    s.validate()
    return s


def cpu_session_config(cfg: LabConfig) -> SessionConfig:
    """``cfg.session`` with the CPU provider only (the harness's baseline)."""
    s = SessionConfig(**{**asdict(cfg.session)})
    s.providers = [CPU]
    s.provider_options = {k: v for k, v in s.provider_options.items() if k == CPU}
    s.validate()
    return s


@dataclass
class SweepPoint:
    """One configuration of the sweep."""

    variant: str
    provider: str = PROVIDER
    model_format: str | None = "MLProgram"
    compute_units: str | None = "ALL"
    static_shapes: bool = False

    @property
    def label(self) -> str:
        if self.provider != PROVIDER:
            return f"{self.variant}/{self.provider.replace('ExecutionProvider', '')}"
        static = "/static" if self.static_shapes else ""
        return f"{self.variant}/{self.model_format}/{self.compute_units}{static}"


def sweep_points(variants: Iterable[str], formats: Iterable[str], compute_units: Iterable[str],
                 static_shapes: Iterable[bool] = (False,)) -> list[SweepPoint]:
    """The CoreML grid, every value checked up front (a bad value fails before any run)."""
    points = []
    for fmt in formats:
        validate_options({"ModelFormat": fmt})
    for cu in compute_units:
        validate_options({"MLComputeUnits": cu})
    for variant in variants:
        for fmt in formats:
            for cu in compute_units:
                for static in static_shapes:
                    points.append(SweepPoint(variant, PROVIDER, fmt, cu, bool(static)))
    return points


# -- ONNX Runtime's own log ----------------------------------------------------------------
@contextlib.contextmanager
def capture_ort_log() -> Iterator[list[str]]:
    """Capture what ONNX Runtime writes to the process's stderr (its default log sink)
    inside the block; the list holds the text once the block exits. Works in notebooks too:
    it redirects file descriptor 2, not ``sys.stderr``."""
    import sys

    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


_CAPABILITY = re.compile(
    r"(?P<ep>\w+)ExecutionProvider::GetCapability,\s*number of partitions supported by "
    r"\w+:\s*(?P<partitions>\d+)\s*number of nodes in the graph:\s*(?P<nodes>\d+)\s*"
    r"number of nodes supported by \w+:\s*(?P<supported>\d+)")
_PLACED = re.compile(
    r"(?P<all>All nodes|Node\(s\)) placed on \[(?P<ep>[\w.]+)\]\.\s*Number of nodes:\s*(?P<n>\d+)")
_NODE_LINE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]?\s{2,}(?P<op>[^\s(]+)\s*\((?P<name>[^)]*)\)")
_BARE_NODE_LINE = re.compile(r"^\s{2,}(?P<op>[A-Za-z_][\w.]*)\s*\((?P<name>[^)]*)\)\s*$")
_LOG_PREFIX = re.compile(r"^.*?\[[VIWEF]:onnxruntime:[^\]]*\]\s?")


@dataclass
class Capability:
    """One ``GetCapability`` summary: ORT prints one per graph it offers the EP (the main
    graph, then e.g. subgraphs or a re-check after other EPs), in order."""

    ep: str
    partitions: int
    nodes_in_graph: int
    nodes_supported: int


@dataclass
class Placement:
    """What ONNX Runtime reported about where the nodes went, parsed from its log."""

    capabilities: list[Capability] = field(default_factory=list)
    #: provider -> number of (possibly fused) nodes assigned to it
    nodes_by_provider: dict[str, int] = field(default_factory=dict)
    #: provider -> op type -> count, from the per-node lines (VERBOSE log only)
    ops_by_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    all_on: str | None = None

    @property
    def main(self) -> Capability | None:
        """The first GetCapability summary: the main graph (largest node count wins ties)."""
        if not self.capabilities:
            return None
        return max(self.capabilities, key=lambda c: c.nodes_in_graph)

    def coverage(self, ep: str = PROVIDER) -> dict[str, Any]:
        """Nodes on ``ep`` and on the CPU, in how many partitions: the sweep's coverage figures.
        ``None`` where the log held no such line (never a guess)."""
        short = ep.replace("ExecutionProvider", "")
        caps = [c for c in self.capabilities if c.ep == short]
        main = max(caps, key=lambda c: c.nodes_in_graph) if caps else None
        out: dict[str, Any] = {
            "nodes_in_graph": main.nodes_in_graph if main else None,
            "nodes_on_ep": main.nodes_supported if main else None,
            "partitions": main.partitions if main else None,
            "fused_nodes_on_ep": self.nodes_by_provider.get(ep),
            "nodes_on_cpu": self.nodes_by_provider.get(CPU),
            "all_on": self.all_on,
        }
        if main is None and self.all_on == ep:
            out["partitions"] = None
        if main is not None:
            out["nodes_fallback"] = main.nodes_in_graph - main.nodes_supported
            out["coverage_pct"] = round(100.0 * main.nodes_supported / max(main.nodes_in_graph, 1), 2)
        elif self.all_on == CPU:
            out["nodes_on_ep"] = 0
            out["coverage_pct"] = 0.0
        cpu_ops = self.ops_by_provider.get(CPU)
        if cpu_ops:
            out["cpu_ops"] = dict(sorted(cpu_ops.items(), key=lambda kv: -kv[1]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"capabilities": [asdict(c) for c in self.capabilities],
                "nodes_by_provider": self.nodes_by_provider,
                "ops_by_provider": self.ops_by_provider, "all_on": self.all_on}


def parse_placement_log(text: str | Iterable[str]) -> Placement:
    """Parse ORT's session log (any prefix style: Python's ``[V:onnxruntime:, file:line Fn]``,
    the Rust ``ort`` crate's tracing lines, or bare message text) into a :class:`Placement`."""
    lines = text.splitlines() if isinstance(text, str) else [l for t in text for l in t.splitlines()]
    p = Placement()
    current: str | None = None
    for raw in lines:
        m = _CAPABILITY.search(raw)
        if m:
            p.capabilities.append(Capability(m["ep"], int(m["partitions"]), int(m["nodes"]),
                                             int(m["supported"])))
            current = None
            continue
        m = _PLACED.search(raw)
        if m:
            ep, n = m["ep"], int(m["n"])
            p.nodes_by_provider[ep] = p.nodes_by_provider.get(ep, 0) + n
            if m["all"] == "All nodes":
                p.all_on = ep
                current = None
            else:
                current = ep
            continue
        if current is not None:
            m = _NODE_LINE.search(raw)
            if not m:
                body = _LOG_PREFIX.sub("", raw) if _LOG_PREFIX.match(raw) else raw
                m = _BARE_NODE_LINE.match(body) if body.startswith("  ") else None
            if m:
                op = m["op"]
                if op.startswith("CoreML_") or op.startswith(f"{PROVIDER}_"):
                    op = "CoreML partition"
                ops = p.ops_by_provider.setdefault(current, {})
                ops[op] = ops.get(op, 0) + 1
                continue
            if "VerifyEachNodeIsAssignedToAnEp" not in raw:
                current = None
    return p


def parse_profile(profile: str | os.PathLike | list[dict]) -> dict[str, Any]:
    """Per-provider node count and kernel time from an ORT profile (JSON events), with the
    CPU ops that take the most time. A CoreML partition runs as one fused node."""
    events = profile if isinstance(profile, list) else json.loads(Path(profile).read_text())
    by_provider: dict[str, dict[str, Any]] = {}
    cpu_ops: dict[str, float] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        args = ev.get("args", {})
        ep = args.get("provider", "unknown")
        dur = float(ev.get("dur", 0))
        entry = by_provider.setdefault(ep, {"nodes": set(), "kernel_us": 0.0})
        entry["nodes"].add(ev["name"][: -len("_kernel_time")])
        entry["kernel_us"] += dur
        if ep == CPU:
            op = args.get("op_name", "?")
            cpu_ops[op] = cpu_ops.get(op, 0.0) + dur
    total = sum(e["kernel_us"] for e in by_provider.values()) or 1.0
    out = {ep: {"nodes": len(e["nodes"]), "kernel_us": round(e["kernel_us"], 1),
                "time_share": round(e["kernel_us"] / total, 4)}
           for ep, e in sorted(by_provider.items())}
    top = sorted(cpu_ops.items(), key=lambda kv: -kv[1])[:10]
    return {"by_provider": out,
            "cpu_top_ops_us": {k: round(v, 1) for k, v in top}}


# -- the harness ---------------------------------------------------------------------------
#: a phoneme passage (misaki's US set) cut to the requested token count
PASSAGE = ("ðə nˈɔɹθ wˈɪnd ænd ðə sˈʌn wɜɹ dɪspjˈuːtɪŋ wˌɪʧ wʌz ðə stɹˈɔŋɡɚ, wˌɛn ə tɹˈævəlɚ "
           "kˈeɪm əlˈɔŋ ɹˈæpt ɪn ə wˈɔɹm klˈOk. ðeɪ əɡɹˈiːd ðæt ðə wˈʌn hˌuː fˈɜːst səksˈiːdᵻd ɪn "
           "mˈeɪkɪŋ ðə tɹˈævəlɚ tˈeɪk hɪz klˈOk ˈɔf ʃʊd bi kənsˈɪdɚd stɹˈɔŋɡɚ ðɐn ðɪ ˈʌðɚ. ")


def tokens_of_length(n: int) -> list[int]:
    """``n`` phoneme tokens from :data:`PASSAGE` (repeated as needed), 1..510."""
    from labkit.engine.g2p import MAX_TOKENS, clean_phonemes, tokenize

    if not 1 <= int(n) <= MAX_TOKENS:
        raise ValueError(f"token length {n}: Kokoro takes 1 to {MAX_TOKENS} tokens per call")
    cleaned, _ = clean_phonemes(PASSAGE)
    base = tokenize(cleaned)
    reps = -(-int(n) // len(base))
    return (base * reps)[: int(n)]


def static_model(src: str | os.PathLike, n_tokens: int, out_dir: str | os.PathLike) -> Path:
    """A copy of the model with ``tokens`` fixed to [1, n+2] (ORT's make_input_shape_fixed),
    for ``RequireStaticInputShapes``: CoreML then sees static shapes up to the duration
    predictor. Written once under ``out_dir``."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    out = Path(out_dir) / f"{Path(src).stem}.static{n_tokens}.onnx"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src))
    name = model.graph.input[0].name
    make_input_shape_fixed(model.graph, name, [1, int(n_tokens) + 2])
    fix_output_shapes(model)
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    return out


def _make_engine(cfg: LabConfig, model: Path, scfg: SessionConfig, voices, verbose: bool):
    """An Engine on ``model`` with ``scfg``; with ``verbose`` the session is created at
    VERBOSE log level and the log is returned."""
    import onnxruntime as ort

    from labkit.engine import runtime

    so = runtime.session_options(scfg)
    if verbose:
        so.log_severity_level = 0
        so.log_verbosity_level = 0
    t0 = time.perf_counter()
    with capture_ort_log() as log:
        session = ort.InferenceSession(str(model), sess_options=so,
                                       providers=runtime.providers_for(scfg))
    load_s = time.perf_counter() - t0
    eng = runtime.Engine.from_session(cfg, session, model, load_s, voices)
    return eng, "".join(log)


def run_config(cfg: LabConfig, point: SweepPoint, token_lengths: Iterable[int],
               repeats: int = 3, warmup: int = 1, cache_root: str | os.PathLike | None = None,
               reference: Mapping[int, np.ndarray] | None = None, voice: str | None = None,
               profile_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Measure one configuration: cold start, cached (second) start, first-run and warm
    latency by token length, placement (from ORT's log) and, where ``reference`` audio is
    given per token length, the log-spectral distance to it.

    For CoreML points: the model cache starts empty (cold start compiles the CoreML
    model), the second session reuses it. Raises :class:`CoreMLOptionError` for a bad
    option before anything runs; returns ``{"status": "skipped: ..."}`` where the provider
    does not exist."""
    from labkit.engine import assets
    from labkit import quality
    from labkit.engine import runtime
    from labkit import timing

    lengths = [int(n) for n in token_lengths]
    voice = voice or cfg.voice
    model = assets.require(assets.model_path(cfg, point.variant), f"model {point.variant!r}")
    out: dict[str, Any] = {"label": point.label, "point": asdict(point), "model": str(model)}
    cache_dir = None
    if point.provider == PROVIDER:
        cache_dir = Path(cache_root or tempfile.mkdtemp(prefix="coreml-cache-")) / re.sub(
            r"[^\w.-]+", "_", point.label)
        scfg = session_config(cfg, point.model_format, point.compute_units, point.static_shapes,
                              cache_dir=cache_dir)
        if not coreml_available():
            out["status"] = f"skipped: {skip_reason()}"
            out["provider_options"] = scfg.provider_options[PROVIDER]
            return out
        if cache_dir.exists():
            shutil.rmtree(cache_dir)  # cold means cold
        cache_dir.mkdir(parents=True, exist_ok=True)
        out["provider_options"] = scfg.provider_options[PROVIDER]
    elif point.provider == CPU:
        scfg = cpu_session_config(cfg)
    else:
        raise ConfigError(f"provider {point.provider!r}: the sweep runs {PROVIDER} or {CPU}")

    voices = runtime.VoiceBank.load(assets.voices_path(cfg))
    models = {n: model for n in lengths}
    if point.static_shapes:
        static_dir = Path(cache_root or tempfile.gettempdir()) / "static-models"
        models = {n: static_model(model, n, static_dir) for n in lengths}

    per_length: dict[str, Any] = {}
    placements: dict[str, Any] = {}
    starts: dict[str, Any] = {}
    for model_file in dict.fromkeys(models.values()):
        ns = [n for n in lengths if models[n] == model_file]
        key = "all" if len(models) == 1 or not point.static_shapes else str(ns[0])
        cold, log = _make_engine(cfg, model_file, scfg, voices, verbose=True)
        placement = parse_placement_log(log)
        placements[key] = {"coverage": placement.coverage(PROVIDER),
                           "log": placement.to_dict()}
        t0 = time.perf_counter()
        cold.run_tokens(tokens_of_length(ns[0]), voice)
        cold_first = time.perf_counter() - t0
        cold_create = cold.load_seconds
        del cold
        eng, _ = _make_engine(cfg, model_file, scfg, voices, verbose=False)
        t0 = time.perf_counter()
        eng.run_tokens(tokens_of_length(ns[0]), voice)
        second_first = time.perf_counter() - t0
        starts[key] = {"cold_create_s": round(cold_create, 4),
                       "cold_first_run_s": round(cold_first, 4),
                       "second_create_s": round(eng.load_seconds, 4),
                       "second_first_run_s": round(second_first, 4)}
        for n in ns:
            toks = tokens_of_length(n)
            t, syn = timing.measure(lambda: eng.run_tokens(toks, voice), repeats=repeats,
                                    warmup=warmup)
            row: dict[str, Any] = {"tokens": n, "warm_s": t.to_dict(),
                                   "audio_s": round(syn.duration, 4),
                                   "rtf": round(t.median / max(syn.duration, 1e-9), 4)}
            problems = quality.check_audio(syn.audio)
            if problems:
                row["audio_problems"] = problems
            if reference is not None and n in reference:
                row["lsd_db"] = round(quality.lsd_db(reference[n], syn.audio,
                                                     allow_length_mismatch=True), 3)
                row["duration"] = quality.duration_agreement(reference[n], syn.audio)
                if reference[n].size != syn.audio.size:  # timing shift vs spectral change
                    row["lsd_db_aligned"] = round(quality.aligned_lsd_db(reference[n], syn.audio), 3)
            per_length[str(n)] = row
        if profile_dir is not None:
            starts[key]["profile"] = profile_run(cfg, model_file, scfg, voices, ns[0], voice,
                                                 Path(profile_dir) / re.sub(r"[^\w.-]+", "_", point.label))
        del eng
    out.update(status="ok", starts=starts, placement=placements, by_length=per_length)
    return out


def profile_run(cfg: LabConfig, model: Path, scfg: SessionConfig, voices, n_tokens: int,
                voice: str, prefix: Path) -> dict[str, Any]:
    """One profiled run (separate session: profiling costs time) -> :func:`parse_profile`."""
    import onnxruntime as ort

    from labkit.engine import runtime

    prefix.parent.mkdir(parents=True, exist_ok=True)
    so = runtime.session_options(scfg)
    so.enable_profiling = True
    so.profile_file_prefix = str(prefix)
    session = ort.InferenceSession(str(model), sess_options=so, providers=runtime.providers_for(scfg))
    toks = tokens_of_length(n_tokens)
    feeds = {"tokens": np.array([[0, *toks, 0]], dtype=np.int64),
             "style": voices.pack(voice)[len(toks) - 1].reshape(1, -1),
             "speed": np.array([1.0], dtype=np.float32)}
    names = {i.name for i in session.get_inputs()}
    if "input_ids" in names:
        feeds["input_ids"] = feeds.pop("tokens")
    session.run(None, feeds)
    path = session.end_profiling()
    result = parse_profile(path)
    result["file"] = path
    return result


def reference_audio(cfg: LabConfig, token_lengths: Iterable[int], voice: str | None = None
                    ) -> tuple[dict[int, np.ndarray], dict[str, str]]:
    """The reference variant's audio (CPU provider) for each token length, and what it is."""
    from labkit.engine import assets
    from labkit.engine import runtime

    ref = assets.reference(cfg)
    assets.require(ref.path, f"reference model {ref.variant!r}")
    eng = runtime.Engine(cfg, variant=ref.variant, session=cpu_session_config(cfg))
    voice = voice or cfg.voice
    audio = {int(n): eng.run_tokens(tokens_of_length(int(n)), voice).audio for n in token_lengths}
    return audio, {"variant": ref.variant, "path": str(ref.path), "note": ref.note}


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (configuration, token length) for tables and plots."""
    rows = []
    for r in results:
        if not str(r.get("status", "")).startswith("ok"):
            rows.append({"label": r.get("label"), "status": r.get("status")})
            continue
        cov = next(iter(r["placement"].values()))["coverage"]
        start = next(iter(r["starts"].values()))
        for n, row in r["by_length"].items():
            rows.append({"label": r["label"], "tokens": int(n), "status": "ok",
                         "warm_median_s": round(row["warm_s"]["median"], 4),
                         "warm_p90_s": round(row["warm_s"]["p90"], 4), "rtf": row["rtf"],
                         "lsd_db": row.get("lsd_db"),
                         "lsd_db_aligned": row.get("lsd_db_aligned"),
                         "cold_first_run_s": start["cold_first_run_s"],
                         "second_create_s": start["second_create_s"],
                         "nodes_on_ep": cov.get("nodes_on_ep"),
                         "nodes_on_cpu": cov.get("nodes_on_cpu"),
                         "nodes_in_graph": cov.get("nodes_in_graph"),
                         "partitions": cov.get("partitions")})
    return rows


def _quality_lsd(row: dict[str, Any]) -> float | None:
    aligned = row.get("lsd_db_aligned")
    return aligned if aligned is not None else row.get("lsd_db")


def recommend(rows: list[dict[str, Any]], short_max_tokens: int = 60,
              max_lsd_db: float | None = None) -> dict[str, Any]:
    """Fastest measured configuration (warm median) for short inputs (<= ``short_max_tokens``)
    and for long ones, among rows within ``max_lsd_db`` of the reference when given (the
    time-aligned distance where the lengths differ: a duration rounded one frame the other
    way is not the numeric degradation this bound is about)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if max_lsd_db is not None:
        ok = [r for r in ok if _quality_lsd(r) is None or _quality_lsd(r) <= max_lsd_db]
    out: dict[str, Any] = {}
    for band, pred in (("short", lambda n: n <= short_max_tokens),
                       ("long", lambda n: n > short_max_tokens)):
        cands = [r for r in ok if pred(r["tokens"])]
        if not cands:
            out[band] = None
            continue
        by_label: dict[str, list[float]] = {}
        for r in cands:
            by_label.setdefault(r["label"], []).append(r["rtf"])
        best = min(by_label, key=lambda k: float(np.median(by_label[k])))
        out[band] = {"label": best, "median_rtf": round(float(np.median(by_label[best])), 4),
                     "tokens": sorted({r["tokens"] for r in cands if r["label"] == best})}
    return out


def run_sweep(cfg: LabConfig, points: Iterable[SweepPoint], token_lengths: Iterable[int],
              repeats: int = 3, warmup: int = 1, cache_root: str | os.PathLike | None = None,
              reference: Mapping[int, np.ndarray] | None = None,
              profile_dir: str | os.PathLike | None = None,
              log: Any = print) -> list[dict[str, Any]]:
    """:func:`run_config` for every point; a point that fails is recorded as failed and the
    sweep goes on (one bad compute unit must not lose the others' numbers)."""
    results = []
    lengths = list(token_lengths)
    for point in points:
        try:
            r = run_config(cfg, point, lengths, repeats=repeats, warmup=warmup,
                           cache_root=cache_root, reference=reference, profile_dir=profile_dir)
        except CoreMLOptionError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, not hidden
            r = {"label": point.label, "point": asdict(point),
                 "status": f"failed: {type(exc).__name__}: {exc}"}
        if log:
            log(f"{r['label']}: {r['status']}")
        results.append(r)
    return results


def headline(audits: Mapping[str, Any], rows: list[dict[str, Any]],
             sweep_status: str) -> dict[str, Any]:
    """The journal's key figures: audit coverage per variant and format, measured RTF per
    configuration and length, and the sweep's status."""
    out: dict[str, Any] = {"coreml sweep": sweep_status}
    for variant, a in audits.items():
        d = a.to_dict() if hasattr(a, "to_dict") else a
        out[f"{variant} nodes"] = d["nodes"]
        for fmt, fa in d["coreml"].items():
            out[f"{variant} {fmt} table coverage %"] = fa["coverage_pct"]
            out[f"{variant} {fmt} est. partitions"] = fa["estimated_partitions"]
    for r in rows:
        if r.get("status") == "ok":
            out[f"{r['label']} RTF @{r['tokens']} tok"] = r["rtf"]
            if r.get("lsd_db") is not None:
                out[f"{r['label']} LSD dB @{r['tokens']} tok"] = r["lsd_db"]
            if r.get("lsd_db_aligned") is not None:
                out[f"{r['label']} LSD dB time-aligned @{r['tokens']} tok"] = r["lsd_db_aligned"]
    return out
