"""Kokoro in two sessions: part A (text encoder, duration predictor, alignment) then part B
(the vocoder), behind the Engine's interface (``run_tokens``, ``synthesize_phonemes``,
``warm_up``, ``Synthesis.durations``).

The parts are cut by :mod:`labkit.optimize.split` and cached under
``artifacts/cache/split`` by the model's sha256 (:func:`split_paths` is the one place that
names those files). Each part has its own SessionConfig (``split.a_session`` /
``split.b_session`` over ``session``), so A can stay on the CPU while B runs on CoreML or a
plugin EP. With ``split.buckets`` part B runs at fixed frame lengths: the boundary tensors
are padded (edge values) along the frame axis to the next bucket, the bucketed B is told
the valid length (``frames``) and masks its instance norms and convolution inputs, and
the audio is trimmed to exactly ``frames x samples_per_frame``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.engine import assets
from labkit.engine.graph_cache import model_sha256
from labkit.engine.sessions import kokoro_feeds, new_session
from labkit.engine.runtime import DURATIONS, Engine, Synthesis, check_call, timed_model
from labkit.engine.voices import VoiceBank

#: the extra input of a bucketed part B: valid frames (float [1], a whole number)
FRAMES = "frames"
#: the extra input of the windowed part B: the harmonic source's phase before the window
PHASE0 = "phase0"
#: version of the cut and bucket edits (part of the cache key: a new edit, new files)
EDIT_VERSION = 3
#: the files of a split, besides its meta; the windowed ones only where part B has a
#: harmonic source to continue (labkit.optimize.part_b.phase_models)
PART_FILES = ("a", "b", "b_bucketed", "b_phase", "phase")
WINDOW_FILES = ("b_phase", "phase")


#: the phase model's session: a cumulative sum over [1, 2 x frames, harmonics], one thread
PHASE_SESSION = SessionConfig(intra_op_threads=1, allow_spinning=False)


class SplitMissing(ConfigError):
    """The split files for a model have not been built."""


def split_dir(cfg: LabConfig) -> Path:
    return cfg.resolve(cfg.artifacts_dir) / "cache" / "split"


def split_paths(model_path: str | os.PathLike, cache_dir: str | os.PathLike,
                b_rewrites: Sequence[str] = ()) -> dict[str, Path]:
    """Where the parts of ``model_path`` live: ``a``, ``b``, ``b_bucketed``, the windowed
    ``b_phase`` with its ``phase`` model (labkit.optimize.part_b.phase_models) and ``meta``,
    keyed by the model's sha256, the edit version, part B's rewrites and onnx's version."""
    cache_dir = Path(cache_dir)
    digest = model_sha256(model_path, memo_dir=cache_dir)
    key = hashlib.sha256(json.dumps({"model": digest, "edit": EDIT_VERSION,
                                     "rewrites_b": list(b_rewrites),
                                     "onnx": onnx.__version__}).encode()).hexdigest()[:16]
    stem = f"{Path(model_path).stem}.split-{key}"
    out = {k: cache_dir / f"{stem}.{k}.onnx" for k in PART_FILES}
    out["meta"] = cache_dir / f"{stem}.json"
    return out


def bucket_for(frames: int, buckets: Sequence[int]) -> int:
    """The frame length part B runs at: the smallest bucket >= ``frames``; beyond the
    largest, the next multiple of it (few distinct shapes); no buckets: ``frames``."""
    frames = int(frames)
    if frames < 1:
        raise ValueError(f"{frames} frames: part A gave no audio frames")
    if not buckets:
        return frames
    fits = [b for b in sorted(buckets) if b >= frames]
    if fits:
        return fits[0]
    top = max(buckets)
    return -(-frames // top) * top


def pad_frames(tensors: Sequence[np.ndarray], frames: int, to: int) -> list[np.ndarray]:
    """Each boundary tensor padded along its last (time) axis from ``frames`` to ``to``
    frames, repeating its edge value; a tensor at r samples per frame gets r x the pad."""
    out = []
    for t in tensors:
        n = t.shape[-1]
        if n % frames:
            raise ValueError(f"boundary tensor of shape {t.shape}: last axis {n} is not a "
                             f"multiple of {frames} frames")
        r = n // frames
        pad = [(0, 0)] * (t.ndim - 1) + [(0, r * (to - frames))]
        out.append(np.pad(t, pad, mode="edge") if to > frames else t)
    return out


@dataclass
class SplitParts:
    a: Path
    b: Path
    b_bucketed: Path
    meta: dict[str, Any]
    b_phase: Path | None = None
    phase: Path | None = None

    @classmethod
    def locate(cls, model_path: str | os.PathLike, cache_dir: str | os.PathLike,
               b_rewrites: Sequence[str] = ()) -> "SplitParts":
        paths = split_paths(model_path, cache_dir, b_rewrites)
        missing = [str(p) for k, p in paths.items() if k not in WINDOW_FILES and not p.exists()]
        if missing:
            raise SplitMissing(f"split of {model_path} not built ({missing[0]} missing): "
                               "build it with labkit.optimize.split.split_files (stages 04 and "
                               "05 do; `labkit serve` builds what its config runs on)")
        meta = json.loads(paths["meta"].read_text())
        if "phase_of" not in meta:
            raise SplitMissing(f"split of {model_path} predates windows (no phase_of in its "
                               "meta): rebuild it with labkit.optimize.split.split_files")
        phased = meta["phase_of"] is not None  # a part B without a harmonic source has none
        return cls(paths["a"], paths["b"], paths["b_bucketed"], meta,
                   paths["b_phase"] if phased else None, paths["phase"] if phased else None)


@dataclass
class Prosody:
    """Part A's output for one text: the boundary tensors (frames on their last axis), the
    other inputs part B reads (``style``), per-token frame counts, and the harmonic
    source's running phase (``phase`` along ``phase_axis``, a whole number of steps per
    frame; None where part B has no harmonic source)."""

    boundary: dict[str, np.ndarray]
    extra: dict[str, np.ndarray]
    durations: np.ndarray | None
    frames: int
    phase: np.ndarray | None
    phase_axis: int
    seconds: float = 0.0


class SplitEngine(Engine):
    """Part A then part B, each its own session. Thread-safe; same interface as Engine
    (``synthesize_phonemes``, ``warm_up`` and ``style`` are Engine's, over this ``run_tokens``)."""

    def __init__(self, cfg: LabConfig, parts: SplitParts, voices: VoiceBank | None = None,
                 a_session: SessionConfig | None = None, b_session: SessionConfig | None = None,
                 buckets: Sequence[int] | None = None, variant: str | None = None,
                 static_b: Mapping[int, str | os.PathLike] | None = None,
                 configure_b: Callable[[Any], Any] | None = None):
        """``static_b``: bucket -> a part-B copy with every input shape fixed (CoreML's
        RequireStaticInputShapes); each gets its own session, made on the bucket's first
        use. ``configure_b(so)`` adjusts part B's session options (e.g. verbose logging
        for the placement log)."""
        self.cfg = cfg
        self.variant = variant or cfg.variant
        self.parts = parts
        self.model_path = parts.a
        self.buckets = sorted(cfg.split.buckets if buckets is None else buckets)
        self.boundary: list[str] = list(parts.meta["boundary"])
        self.b_inputs: list[str] = list(parts.meta["b_inputs"])
        self.samples_per_frame = int(parts.meta["samples_per_frame"])
        self.a_config = a_session or cfg.split.session_for(cfg.session, "a")
        self.b_config = b_session or cfg.split.session_for(cfg.session, "b")
        self.static_b = {int(k): Path(v) for k, v in (static_b or {}).items()}
        missing = sorted(set(self.buckets) - set(self.static_b)) if self.static_b else []
        if missing:
            raise ConfigError(f"static part B: no fixed-shape copy for bucket(s) {missing}")
        self._configure_b = configure_b
        self._static_sessions: dict[int, Any] = {}
        self._windows: tuple[Any, Any] | None = None
        # part B at the exact length is the windowed part B fed phase0 = 0 (the same audio,
        # bit for bit): one part-B session serves whole pieces and windows alike
        self._b_phase0 = not self.buckets and not self.static_b and parts.b_phase is not None
        t0 = time.perf_counter()
        # part A (and the phase model) without spinning threads whatever the session says: a
        # short run followed by part B in another thread pool, whose threads the spinning
        # ones would compete with
        self.a = new_session(parts.a, dataclasses.replace(self.a_config, allow_spinning=False))
        self.b = None if self.static_b else new_session(
            parts.b_phase if self._b_phase0 else parts.b_bucketed if self.buckets else parts.b,
            self.b_config, configure=configure_b)
        self.load_seconds = time.perf_counter() - t0
        self.voices = voices or VoiceBank.load(assets.voices_path(cfg))
        self._lock = threading.Lock()
        self._a_inputs = {i.name for i in self.a.get_inputs()}
        self._a_outputs = [o.name for o in self.a.get_outputs()]
        self.durations_index = (self._a_outputs.index(DURATIONS)
                                if DURATIONS in self._a_outputs else None)
        #: seconds in part A and part B of the last call, and the bucket it ran at
        self.last: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: LabConfig, variant: str | None = None,
                    voices: VoiceBank | None = None, **kwargs) -> "SplitEngine":
        """The parts of ``cfg``'s model (its copy with the durations output when built) from
        the split cache; ``kwargs`` go to the class (sessions, buckets, static part-B
        copies). Without ``split.enabled`` (the split engine only for ``chunking.prosody:
        sentence``) part B runs at the exact length."""
        model = assets.require(timed_model(cfg, variant), "model file")
        parts = SplitParts.locate(model, split_dir(cfg), cfg.split.b_rewrites)
        if not cfg.split.enabled:  # here for chunking.prosody alone: exact lengths, no pads
            kwargs.setdefault("buckets", [])
        return cls(cfg, parts, voices=voices, variant=variant, **kwargs)

    def run_tokens(self, tokens: list[int], voice: str, speed: float = 1.0,
                   run_options: Any = None) -> Synthesis:
        """As :meth:`Engine.run_tokens`; ``run_options`` (its ``terminate``) reaches both
        parts' runs, so a cancel aborts whichever part is running."""
        check_call(tokens, speed)
        feeds = kokoro_feeds(tokens, self.style(voice, len(tokens)), speed, names=self._a_inputs)
        t0 = time.perf_counter()
        with self._lock:
            out_a = self.a.run(None, feeds, run_options)
            t1 = time.perf_counter()
            named = dict(zip(self._a_outputs, out_a))
            bound = [np.asarray(named[t]) for t in self.boundary]
            frames = int(bound[0].shape[-1])
            fb = bucket_for(frames, self.buckets) if self.buckets else frames
            b_feeds = dict(zip(self.boundary, pad_frames(bound, frames, fb)))
            b_feeds.update({n: feeds[n] for n in self.b_inputs if n not in b_feeds})
            if self.buckets:
                b_feeds[FRAMES] = np.array([frames], dtype=np.float32)
            if self._b_phase0:
                b_feeds[PHASE0] = np.zeros((1, 1, 1), np.float32)
            audio = np.asarray(self._b_session(fb).run(None, b_feeds, run_options)[0],
                               dtype=np.float32).ravel()
        t2 = time.perf_counter()
        want = fb * self.samples_per_frame
        if audio.size != want:
            raise RuntimeError(f"part B gave {audio.size} samples for {fb} frames; expected "
                               f"{want} ({self.samples_per_frame} per frame)")
        audio = audio[: frames * self.samples_per_frame]
        self.last = {"a_s": t1 - t0, "b_s": t2 - t1, "frames": frames, "bucket": fb}
        durations = (None if self.durations_index is None
                     else np.asarray(out_a[self.durations_index], dtype=np.int64).ravel())
        return Synthesis(audio, len(tokens), t2 - t0, durations)

    # -- windows: part A once, part B over a range of its frames (labkit.engine.prosody) --
    def prosody(self, tokens: list[int], voice: str, speed: float = 1.0,
                run_options: Any = None, style_tokens: int | None = None) -> Prosody:
        """Part A's output for ``tokens`` and the harmonic source's running phase over it:
        what :meth:`vocode` turns into audio, a range of frames at a time. ``style_tokens``:
        the length whose style row the voice gives (default ``len(tokens)``): a prefix of a
        sentence voiced as the whole sentence will be (labkit.engine.prosody's opening)."""
        check_call(tokens, speed)
        n_style = len(tokens) if style_tokens is None else int(style_tokens)
        if n_style < 1:
            raise ValueError(f"style_tokens={style_tokens}: must be >= 1")
        feeds = kokoro_feeds(tokens, self.style(voice, n_style), speed, names=self._a_inputs)
        t0 = time.perf_counter()
        with self._lock:
            out_a = self.a.run(None, feeds, run_options)
            named = dict(zip(self._a_outputs, out_a))
            bound = {t: np.asarray(named[t]) for t in self.boundary}
            phase_in = self.parts.meta["phase_of"]
            part_b, phase_model = self._window_sessions()
            phase = (None if phase_model is None else np.asarray(
                phase_model.run(None, {phase_in: bound[phase_in]}, run_options)[0], np.float32))
        durations = (None if self.durations_index is None
                     else np.asarray(out_a[self.durations_index], dtype=np.int64).ravel())
        return Prosody(bound, {n: feeds[n] for n in self.b_inputs if n not in bound},
                       durations, int(bound[self.boundary[0]].shape[-1]), phase,
                       int(self.parts.meta.get("phase_axis") or 0), time.perf_counter() - t0)

    def vocode(self, p: Prosody, start: int, end: int, run_options: Any = None) -> tuple[np.ndarray, float]:
        """Audio of frames [start, end) of ``p`` (``(end - start) x samples_per_frame``
        samples) and the seconds it took: part B on that range of the boundary tensors,
        its harmonic source continuing the phase the whole run had reached at ``start``."""
        if not 0 <= start < end <= p.frames:
            raise ValueError(f"frames [{start}, {end}) outside the {p.frames} of part A's output")
        feeds = {}
        for name, t in p.boundary.items():
            r = t.shape[-1] // p.frames
            feeds[name] = np.ascontiguousarray(t[..., start * r:end * r])
        feeds.update(p.extra)
        if p.phase is not None:
            steps = p.phase.shape[p.phase_axis] // p.frames
            feeds[PHASE0] = (np.take(p.phase, [start * steps - 1], axis=p.phase_axis) if start
                             else np.zeros_like(np.take(p.phase, [0], axis=p.phase_axis)))
        t0 = time.perf_counter()
        with self._lock:
            audio = np.asarray(self._window_sessions()[0].run(None, feeds, run_options)[0],
                               np.float32).ravel()
        want = (end - start) * self.samples_per_frame
        if audio.size != want:
            raise RuntimeError(f"windowed part B gave {audio.size} samples for {end - start} "
                               f"frames; expected {want}")
        return audio, time.perf_counter() - t0

    def _window_sessions(self):
        """(windowed part B, phase model) sessions, made on first use (call with the lock);
        a part B without a harmonic source runs as it is, with no phase model."""
        if self._windows is None:
            if self.parts.b_phase is None:
                self._windows = (new_session(self.parts.b, self.b_config, configure=self._configure_b), None)
            else:
                b = self.b if self._b_phase0 else new_session(
                    self.parts.b_phase, self.b_config, configure=self._configure_b)
                self._windows = (b, new_session(self.parts.phase, PHASE_SESSION))
        return self._windows

    def _b_session(self, bucket: int):
        """Part B's session for ``bucket`` (static copies: one per bucket, made on first use;
        a length past the largest bucket has no static copy and is refused)."""
        if not self.static_b:
            return self.b
        if bucket not in self.static_b:
            raise ValueError(f"{bucket} frames: past the largest static bucket "
                             f"({max(self.static_b)}); chunk the text shorter")
        if bucket not in self._static_sessions:
            self._static_sessions[bucket] = new_session(self.static_b[bucket], self.b_config,
                                                        configure=self._configure_b)
        return self._static_sessions[bucket]


def uses_split(cfg: LabConfig) -> bool:
    """Whether ``cfg`` runs on the split engine: ``split.enabled``, or ``chunking.prosody:
    sentence`` (its windows vocode a range of part A's frames)."""
    return cfg.split.enabled or cfg.chunking.prosody == "sentence"


def engine_for(cfg: LabConfig, variant: str | None = None, voices: VoiceBank | None = None):
    """The Engine ``cfg`` asks for: a :class:`SplitEngine` when it :func:`uses_split`, else
    the one-session Engine."""
    if uses_split(cfg):
        return SplitEngine.from_config(cfg, variant=variant, voices=voices)
    return Engine(cfg, variant=variant, voices=voices)
