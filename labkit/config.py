"""LabConfig: the one option table.

Every setting the lab, the notebooks and the endpoint use lives here, in sections.
It loads from YAML plus dotted overrides (``session.intra_op_threads=1``), and the
environment is read in exactly one place: :func:`env_settings` (see ``ENV_VARS``), for
:meth:`LabConfig.load` and for the login agent that carries it to the endpoint.
Every stage record embeds ``cfg.to_dict()``, so a number always comes with the
settings that produced it. Names only the engine knows (rewrites, plugin EPs) are checked
against its registries by labkit.engine.registries.check_config.

Kept whole past 500 lines: it is the one option table, every setting beside its default,
its meaning and its check, read as one page (the sections lean on one another: the split
parts and the second session are SessionConfigs over ``session``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from labkit.lexicon import LexiconError, load_lexicon

REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_relative(value):
    """``value`` with every absolute path inside the checkout (strings, in dicts and lists,
    at any depth) written relative to it, as :meth:`LabConfig.resolve` reads them back: a
    file that names such paths (best.json) stays valid when the checkout moves. Paths
    outside the checkout stay as they are."""
    if isinstance(value, dict):
        return {k: repo_relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repo_relative(v) for v in value]
    if isinstance(value, str) and value.startswith(str(REPO_ROOT) + os.sep):
        return os.path.relpath(value, REPO_ROOT)
    return value


#: texts and tables that ship with the package (corpora, the article, CoreML op tables)
DATA_DIR = Path(__file__).resolve().parent / "data"

#: The only environment variables the project reads, and the setting each one sets.
ENV_VARS: dict[str, str] = {
    "KOKORO_LAB_CONFIG": "(a YAML file loaded before overrides)",
    "KOKORO_LAB_ASSETS": "assets_dir",
    "KOKORO_LAB_MODEL": "model_path",
    "KOKORO_LAB_VOICES": "voices_path",
    "KOKORO_LAB_ARTIFACTS": "artifacts_dir",
    "KOKORO_LAB_API_KEY": "serve.api_key",
}

#: settings among ENV_VARS' that are paths (made absolute where another process reads them)
PATH_SETTINGS = ("assets_dir", "model_path", "voices_path", "artifacts_dir")


def env_settings(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``ENV_VARS`` set (non-empty) in ``env``, default this process's environment: the
    one place the project reads its environment (:meth:`LabConfig.load` and what must
    carry it elsewhere, the login agent's ``EnvironmentVariables``)."""
    env = os.environ if env is None else env
    return {var: env[var] for var in ENV_VARS if env.get(var)}


OPT_LEVELS = ("disable", "basic", "extended", "layout", "all")
EXECUTION_MODES = ("sequential", "parallel")
#: session.intra_op_threads = "auto": from the machine (labkit.host.machine.thread_plan)
AUTO_THREADS = "auto"


class ConfigError(ValueError):
    """A setting is unknown or out of range; the message names it and what is allowed."""


@dataclass
class SessionConfig:
    """ONNX Runtime session settings."""

    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    #: provider name -> options dict (e.g. CoreML's MLComputeUnits)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    graph_optimization_level: str = "all"
    #: a number, or "auto": Apple silicon's performance cores, else the physical cores
    #: (labkit.host.machine.thread_plan, resolved where session options are built)
    intra_op_threads: int | str = AUTO_THREADS
    inter_op_threads: int = 1
    execution_mode: str = "sequential"
    enable_mem_arena: bool = True
    enable_mem_pattern: bool = True
    denormal_as_zero: bool = False
    #: idle intra-op threads spin waiting for work (True: ONNX Runtime's default,
    #: session.intra_op.allow_spinning=1) or sleep (False). Spinning saves a wake-up per
    #: parallel section when the cores are free; when another process holds a core, a
    #: spinning thread takes time from the thread it waits for. On 2 AMD cores, ~60 tokens of
    #: the int8 model: without spinning 1.20x [1.12, 1.25] faster beside one busy process and
    #: 0.99x [0.96, 1.02] idle (a side-by-side script); stage 02 of run-20261205-075449 read
    #: spinning at 0.88x [0.80, 0.90] loaded and 1.12x [1.02, 1.15] idle. Stage 02 screens the
    #: flip on every run, idle and under load (labkit.lab.loaded_screen): it is taken where one
    #: screen earns it and the other finds it not slower
    allow_spinning: bool = False
    #: load from (and build if missing) a cached optimized model / ORT-format model
    use_optimized_cache: bool = False
    use_ort_format: bool = False
    #: our own graph rewrites by name (labkit.engine.rewrites.REWRITES), applied and checked
    #: once, then cached (needs use_optimized_cache or use_ort_format)
    rewrites: list[str] = field(default_factory=list)
    #: plugin execution providers to put first (registered with
    #: onnxruntime.register_execution_provider_library, their devices chosen through
    #: get_ep_devices + add_provider_for_devices; CPU takes the rest), by short name
    #: (labkit.engine.sessions.PLUGIN_PACKAGES)
    plugin_eps: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """What the section can judge alone; its plugin EPs and rewrites are names the
        engine's registries hold (labkit.engine.registries.check_config)."""
        if self.graph_optimization_level not in OPT_LEVELS:
            raise ConfigError(
                f"session.graph_optimization_level={self.graph_optimization_level!r}: "
                f"allowed are {', '.join(OPT_LEVELS)}"
            )
        if self.execution_mode not in EXECUTION_MODES:
            raise ConfigError(
                f"session.execution_mode={self.execution_mode!r}: allowed are "
                f"{', '.join(EXECUTION_MODES)}"
            )
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if name == "intra_op_threads" and value == AUTO_THREADS:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                also = f" or {AUTO_THREADS!r}" if name == "intra_op_threads" else ""
                raise ConfigError(f"session.{name}={value!r}: must be an integer >= 1{also}")
        for name in ("enable_mem_arena", "enable_mem_pattern", "denormal_as_zero", "allow_spinning"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"session.{name}={getattr(self, name)!r}: must be true or false")
        if not self.providers:
            raise ConfigError("session.providers is empty: name at least CPUExecutionProvider")


@dataclass
class TextConfig:
    """Sanitization before G2P (labkit.engine.text)."""

    max_chars: int = 200_000
    markdown: bool = True
    #: "drop" or "name" (read the emoji's name)
    emoji: str = "drop"
    #: "skip" (recorded in the report) or "espeak" (route to espeak's language)
    non_latin: str = "skip"
    urls: bool = True
    code: bool = True
    #: sanitization rules switched off by name (labkit.engine.text.RULES; the names are
    #: checked there: labkit.engine.registries.check_config)
    disable: list[str] = field(default_factory=list)
    #: a "word" longer than this (a hash, base64, a run of one letter) is left out, recorded
    max_word_chars: int = 50
    #: digit runs longer than this are read digit by digit (misaki spells huge numbers)
    max_number_digits: int = 15
    #: misaki's per-word espeak fallback for words it does not know
    g2p_fallback: bool = True
    #: inline pronunciation ``[word](/phonemes/)`` (misaki's markup) in the input is obeyed:
    #: for trusted input only (arbitrary text could make the voice say anything); off, the
    #: markup is read as its word. A request may turn it on or off for itself
    #: (``inline_phonemes`` in the speech body)
    inline_phonemes: bool = False

    def validate(self) -> None:
        if self.emoji not in ("drop", "name"):
            raise ConfigError(f"text.emoji={self.emoji!r}: allowed are drop, name")
        if self.non_latin not in ("skip", "espeak"):
            raise ConfigError(f"text.non_latin={self.non_latin!r}: allowed are skip, espeak")
        for name in ("max_chars", "max_word_chars", "max_number_digits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"text.{name}={value!r}: must be an integer >= 1")


@dataclass
class ChunkingConfig:
    """How text is cut into pieces for streaming (labkit.engine.chunking)."""

    #: "primer" (short first piece, then sentences), "sentence", "clause", "budget", "none"
    strategy: str = "primer"
    #: the first piece: a clause or a few words before a soft break (5 gives the first
    #: audio of a long text within ~1.2x a short phrase's; stage 05 measures it)
    primer_max_words: int = 8
    #: the primer is cut at punctuation or a soft word between these word counts
    primer_min_words: int = 3
    primer_max_tokens: int = 60
    #: the primer's token cap when the stream opens on an idle machine (the slowdown other
    #: processes cause, sensed as it opens, at most labkit.engine.schedule.LOADED_SLOWDOWN;
    #: adaptive schedule): three words of a long opening sentence, voiced at its pace, are
    #: ~17 tokens and ~57 frames, and their vocoding alone holds the first audio back; a
    #: loaded machine needs the longer first piece to stay ahead (0: primer_max_tokens either way)
    primer_max_tokens_idle: int = 0
    #: the first piece's fewest tokens when the stream opens on a loaded machine (sensed
    #: slowdown above LOADED_SLOWDOWN; adaptive schedule), at most primer_max_tokens: the
    #: speed model's break-even sizes the first piece alone, and beside one busy process on
    #: 2 Intel cores with VNNI it let qdq-layers-tail's first piece stay at 10 tokens; the small pieces
    #: of the opening span after it then ran out with 0.00-0.06 s to spare and the listener
    #: heard a gap (0: the break-even alone)
    primer_min_tokens_loaded: int = 0
    min_tokens: int = 40
    max_tokens: int = 250
    #: ramp after the primer: the next piece may hold growth x (tokens so far) - (tokens
    #: after the first); growth ~ 1/RTF with a safety margin. 0 disables the ramp.
    growth: float = 2.0
    crossfade_ms: float = 10.0
    trim_silence: bool = True
    #: silence kept at a trimmed edge, and the level below the piece's peak counted as silence
    trim_keep_ms: float = 15.0
    trim_top_db: float = 40.0
    #: pauses after a piece, by the punctuation that ended it (mid-sentence cuts crossfade)
    sentence_pause_ms: float = 250.0
    clause_pause_ms: float = 100.0
    paragraph_pause_ms: float = 600.0
    #: how pieces after the primer are sized (strategy "primer"): "ramp" (the fixed
    #: ``growth`` ramp, schedule.ramp_budget) or "adaptive" (from the measured synthesis
    #: speed and the audio buffered ahead of the listener, labkit.engine.schedule). Stage 05
    #: streams both; adaptive becomes the default when its record shows the targets met.
    schedule: str = "ramp"
    #: adaptive: a piece is started only if its predicted compute x margin, plus
    #: safety_s, fits in the audio buffered ahead of the listener
    schedule_margin: float = 1.3
    schedule_safety_s: float = 0.15
    #: adaptive: the smallest budget (tokens) while the buffer is thin (min_tokens is the
    #: ramp's floor)
    schedule_min_tokens: int = 40
    #: where each piece's prosody comes from: "piece" (its own text: a cut inside a
    #: sentence ends one intonation and starts another) or "sentence" (part A over the
    #: whole sentence(s) the piece lies in, then only the piece's frames vocoded: a cut
    #: inside a sentence is a vocoder seam, the intonation runs on; labkit.engine.prosody,
    #: on the split engine)
    prosody: str = "piece"
    #: "sentence": frames vocoded beyond each cut inside a sentence (the vocoder's
    #: context; 25 ms each), so both sides of the seam see the audio around it
    window_context_frames: int = 8
    #: "sentence" prosody, the stream's first piece when its sentence goes on past it:
    #: "prefix" (part A over the piece and ``opening_lookahead_words`` words after it,
    #: voiced as the whole sentence; the rest of the sentence from its own part A, its
    #: source continuing the first piece's phase: labkit.engine.prosody), so the first audio
    #: does not wait for part A over a long opening sentence; or "sentence" (part A over
    #: the whole sentence first, as before issue #32). Stage 05 sweeps opening lengths with
    #: both; "prefix" ships only once it earns it there.
    opening: str = "sentence"
    opening_lookahead_words: int = 4
    #: "prefix": words after the first piece that the pieces after it may also take from
    #: the opening prefix (part A then runs over the first piece, these words and the
    #: lookahead), each still followed there by ``opening_lookahead_words`` words; so the
    #: second piece does not wait for part A over a long sentence either (0: only the
    #: first piece comes from the prefix)
    opening_span_words: int = 8


@dataclass
class PipelineConfig:
    """Streaming scheduler (labkit.engine.pipeline)."""

    #: 1 or 2 sessions
    sessions: int = 1
    #: settings of the second session, when sessions == 2 (overrides of `session`)
    second_session: dict[str, Any] = field(default_factory=dict)
    second_variant: str | None = None
    #: "first-fast" (first piece to the lowest-latency session, rest to whichever is
    #: free) or "round-robin" (first piece likewise, the rest alternate)
    routing: str = "first-fast"
    #: pieces synthesized or in flight ahead of the consumer, at most (bounds memory)
    queue_depth: int = 4
    #: the lowest-latency session's index; None: measured at start-up (two sessions)
    first_session: int | None = None
    #: stopping a stream (close, cancel, a client gone) also aborts the pieces being
    #: synthesized (onnxruntime RunOptions.terminate), so the engine is free at once
    terminate_on_cancel: bool = True
    #: nothing after a stream's first piece (its chunking and G2P, its synthesis on either
    #: session) starts until the first chunk has been handed out, so on a busy machine no
    #: look-ahead takes cores from the first audio (labkit.engine.stream); off until
    #: stage 05 measures it under load (issue #32)
    first_alone: bool = False


@dataclass
class SelectionConfig:
    """Rules the journal uses to make each stage's choice (labkit.lab.selection): a
    candidate replaces its stage's baseline only when it passed every check, was measured
    on every criterion the baseline was, and the 95 % interval of its ratio to the baseline
    on the stage's criterion lies wholly above 1.0 + ``min_gain`` (ratio > 1: better). Among
    several, the highest low end wins; an exact tie, or no such candidate, keeps the baseline."""

    #: the quality check is the ruler's (labkit.quality.ruler: bounds set on the calibration
    #: ladder, labkit/data/ruler.yaml): a candidate whose ``quality`` verdict is not "pass"
    #: fails it, as does one whose quality was not measured
    #: stage -> the criterion its choice is made on (e.g. {"05_chunking": "ttfa_s"}); a stage
    #: not listed uses the criterion its baseline candidate names
    criteria: dict[str, str] = field(default_factory=dict)
    #: the smallest gain worth a change: the interval's low end must clear 1 + min_gain. A
    #: gain of a percent or two can be real within one run and still flip between two runs
    #: (the machine drifts between them), and it is not worth a change that must then be
    #: carried, verified and explained; 0 takes any gain the interval shows.
    min_gain: float = 0.03

    def validate(self) -> None:
        if not (isinstance(self.min_gain, (int, float)) and 0 <= self.min_gain < 1):
            raise ConfigError(f"selection.min_gain={self.min_gain!r}: must be >= 0 and < 1 "
                              "(0.03: the interval must lie above 1.03)")
        for stage, crit in self.criteria.items():
            if not isinstance(crit, str) or not crit:
                raise ConfigError(f"selection.criteria[{stage!r}]={crit!r}: must name a figure, "
                                  "e.g. ttfa_s or rtf")

    @property
    def threshold(self) -> float:
        """What the low end of a ratio's 95 % interval must exceed to earn a change."""
        return 1.0 + self.min_gain

    def clears(self, ci95) -> bool:
        """Rule (c) on an interval [low, high] of a ratio (> 1: better)."""
        return float(ci95[0]) > self.threshold


@dataclass
class ServeConfig:
    """The endpoint (serve/): where it listens, its limits, and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8880
    #: longer inputs get 413 (never silently truncated)
    max_input_chars: int = 4096
    #: request bodies over this many bytes get 413 before they are read (the longest
    #: legal input, JSON-escaped, is well under it)
    max_body_bytes: int = 131_072
    #: a body not received within this many seconds gets 408
    body_timeout_s: float = 10.0
    #: a connection without a complete request head this long after it opened (or after
    #: its last response) is closed
    header_timeout_s: float = 10.0
    #: idle keep-alive connections are closed after this many seconds
    keep_alive_s: float = 5.0
    #: open connections at most; more get 503
    max_connections: int = 256
    #: when set, /v1/* wants ``Authorization: Bearer <api_key>``
    api_key: str | None = None
    #: when set, CORS allows this origin ("*" for any)
    cors_origin: str | None = None
    #: how long a request waits for the synthesis slot before a 429
    queue_timeout_s: float = 10.0
    #: the Retry-After seconds a 429 carries
    retry_after_s: int = 2
    max_concurrent: int = 1
    #: synthesized pieces kept for repeats (phrases, primers), by count and by size
    primer_cache_items: int = 64
    primer_cache_mb: float = 64.0
    best_json: str = "artifacts/best.json"
    #: speeds inside OpenAI's 0.25-4.0 but outside Kokoro's 0.5-2.0: "clamp" (and say so in
    #: the X-Kokoro-Speed header) or "reject" (400)
    speed_policy: str = "clamp"
    #: OpenAI voice names -> Kokoro voices or blends
    voice_aliases: dict[str, str] = field(default_factory=lambda: {
        "alloy": "af_alloy", "ash": "am_michael", "ballad": "bm_george",
        "coral": "af_heart", "echo": "am_echo", "fable": "bm_fable", "nova": "af_nova",
        "onyx": "am_onyx", "sage": "af_sarah", "shimmer": "af_bella", "verse": "am_puck",
        "marin": "af_kore", "cedar": "am_fenrir"})


@dataclass
class SplitConfig:
    """Kokoro cut into part A (text encoder, durations, alignment) and part B (the
    vocoder), each with its own session (labkit.optimize.split builds the parts,
    labkit.engine.split_runtime runs them)."""

    enabled: bool = False
    #: frame-axis lengths part B runs at (25 ms frames; ~2.4 frames per phoneme token at
    #: speed 1, so 1280 covers a 510-token piece); the frames are padded to the next
    #: bucket and the audio trimmed exactly; beyond the largest, to a multiple of it.
    #: [] runs part B at the exact length
    buckets: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1280])
    #: settings over ``session`` for part A and part B (keys of SessionConfig), e.g.
    #: {"providers": ["CoreMLExecutionProvider", "CPUExecutionProvider"]}
    a_session: dict[str, Any] = field(default_factory=dict)
    b_session: dict[str, Any] = field(default_factory=dict)
    #: graph rewrites for part B only (labkit.engine.rewrites), e.g. ["reflect_pad"]
    b_rewrites: list[str] = field(default_factory=list)

    def validate(self) -> None:
        bad = [b for b in self.buckets if not isinstance(b, int) or isinstance(b, bool) or b < 1]
        if bad:
            raise ConfigError(f"split.buckets: {bad!r} are not frame counts (integers >= 1)")
        for name in ("a_session", "b_session"):
            self.session_for(SessionConfig(), name[0])

    def session_for(self, base: SessionConfig, part: str) -> SessionConfig:
        """``base`` with part ``a``'s or ``b``'s settings over it (validated)."""
        over = {"a": self.a_session, "b": self.b_session}[part] or {}
        known = {f.name for f in fields(SessionConfig)}
        unknown = sorted(set(over) - known)
        if unknown:
            raise ConfigError(f"split.{part}_session: unknown setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        s = SessionConfig(**{**dataclasses.asdict(base), **over})
        s.validate()
        return s


@dataclass
class LabConfig:
    """The one option table."""

    #: "int8" (shipped), "fp32" (original), "fp16" (original), "fp32-recon", or a
    #: variant name produced by a stage (looked up in the assets dir)
    variant: str = "int8"
    #: explicit model file; wins over the variant lookup
    model_path: str | None = None
    voices_path: str | None = None
    assets_dir: str = "artifacts/assets"
    artifacts_dir: str = "artifacts"
    #: the results page the README links, rewritten by the journal from a run's records
    results_md: str = "docs/results.md"
    voice: str = "af_heart"
    speed: float = 1.0
    #: "en-us", "en-gb", "es", "fr-fr", "hi", "it", "pt-br", "ja", "zh" (or "en", "fr", ...);
    #: None: the voice's own (its first letter: bf_ en-gb, ff_ fr-fr, af_ en-us, ...)
    lang: str | None = None
    #: a personal lexicon: YAML, a section per language (en, fr, ja, ...) of word ->
    #: phonemes (labkit.lexicon; the flat form is English), read before the G2P; checked
    #: on load, read again when the file changes
    lexicon: str | None = None
    session: SessionConfig = field(default_factory=SessionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LabConfig":
        data = dict(data or {})
        return _build(cls, data, prefix="")._given_also(_dotted_keys(data))

    @property
    def given(self) -> frozenset[str]:
        """The dotted settings given explicitly (in the YAML file, the environment or an
        override), whatever their values: a setting given at its default value is still
        given, and wins over best.json's (labkit.best_config)."""
        return getattr(self, "_given", frozenset())

    def _given_also(self, keys) -> "LabConfig":
        self._given = self.given | frozenset(keys)  # not a field: records and to_dict stay as they are
        return self

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "LabConfig":
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(data.get("config", data))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        overrides: Mapping[str, Any] | list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> "LabConfig":
        """Defaults < YAML file (argument or $KOKORO_LAB_CONFIG) < environment < overrides."""
        given = env_settings(env)
        path = path or given.get("KOKORO_LAB_CONFIG")
        cfg = cls.from_yaml(path) if path else cls()
        cfg = cfg.with_overrides({ENV_VARS[var]: value for var, value in given.items()
                                  if var != "KOKORO_LAB_CONFIG"})
        if overrides:
            cfg = cfg.with_overrides(overrides)
        return cfg

    def with_overrides(self, overrides: Mapping[str, Any] | list[str]) -> "LabConfig":
        """A copy with dotted keys set: ``{"session.intra_op_threads": 1}`` or
        ``["session.intra_op_threads=1"]`` (values parsed as YAML scalars)."""
        if isinstance(overrides, list):
            pairs = {}
            for item in overrides:
                if "=" not in item:
                    raise ConfigError(f"override {item!r}: expected KEY=VALUE")
                key, raw = item.split("=", 1)
                pairs[key.strip()] = yaml.safe_load(raw)
            overrides = pairs
        data = self.to_dict()
        for key, value in overrides.items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                if part not in node or not isinstance(node[part], dict):
                    raise ConfigError(f"unknown setting {key!r}")
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(f"unknown setting {key!r}")
            node[parts[-1]] = value
        out = _build(LabConfig, data, prefix="")
        return out._given_also(self.given | set(overrides))

    # -- output -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def get(self, key: str) -> Any:
        """The value of a dotted setting (``serve.api_key``); unknown keys are a ConfigError."""
        node: Any = self.to_dict()
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"unknown setting {key!r}")
            node = node[part]
        return node

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from the config, relative paths taken from the repository root."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else REPO_ROOT / p

    def validate(self) -> "LabConfig":
        self.session.validate()
        self.text.validate()
        self.selection.validate()
        self.split.validate()
        if not 0.5 <= float(self.speed) <= 2.0:
            raise ConfigError(f"speed={self.speed}: Kokoro supports 0.5 to 2.0")
        if self.lexicon:
            try:
                load_lexicon(self.resolve(self.lexicon))
            except LexiconError as exc:
                raise ConfigError(f"lexicon: {exc}") from None
        return self


def _dotted_keys(data: Mapping[str, Any]) -> set[str]:
    """The settings a (partial) config mapping gives, as dotted keys: a section's own keys
    (``chunking.schedule``), a dict-valued setting whole (``session.provider_options``)."""
    sections = {f.name for f in fields(LabConfig) if _section_type(f) is not None}
    return {f"{key}.{sub}" for key, value in data.items() if key in sections
            and isinstance(value, Mapping) for sub in value} | \
        {key for key, value in data.items() if key not in sections or not isinstance(value, Mapping)}


def _build(cls, data: dict[str, Any], prefix: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(prefix + u for u in unknown)}; "
            f"known in {prefix or 'the top level'}: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            continue
        value = data[name]
        sub = _section_type(f)
        if sub is not None:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name}: expected a mapping, got {value!r}")
            value = _build(sub, value, prefix=f"{prefix}{name}.")
        kwargs[name] = value
    return cls(**kwargs)


_SECTIONS = {
    "SessionConfig": SessionConfig,
    "TextConfig": TextConfig,
    "ChunkingConfig": ChunkingConfig,
    "PipelineConfig": PipelineConfig,
    "SelectionConfig": SelectionConfig,
    "ServeConfig": ServeConfig,
    "SplitConfig": SplitConfig,
}


def _section_type(f: dataclasses.Field):
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return _SECTIONS.get(t)
