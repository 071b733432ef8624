"""Streaming benchmarks: a playback-clock simulator and in-process runners.

The simulator answers "what would a listener hear?" from when chunks arrived and how long
each one plays. A client starts playing once it holds ``startup_buffer_s`` of audio (or
the stream has ended), then plays chunks back to back; if the next chunk is not there when
the previous one ends, playback stalls (an *underrun*) until it arrives.

Figures (the production targets from the user's brief: jitter < 20 % of the chunk
duration, dropout < 0.1 %):

* ``ttfa_s``: time to first audio, from the request to the first sample played;
* ``underruns`` / ``underrun_s``: stalls after playback started, count and total silence;
* ``jitter``: spread of chunk arrival relative to chunk duration - the standard deviation
  over chunks k >= 1 of (inter-arrival gap_k / duration of chunk k-1). A stream that
  arrives at a steady fraction of real time has jitter ~0; bursts and stalls raise it;
* ``dropout``: underrun silence as a fraction of the playback time after start.

Runners (the real code paths, in-process, on one model and its voices):

* :func:`run_stream` - ``labkit.engine.pipeline.StreamingSynthesizer.stream``;
* :func:`run_create` / :func:`run_create_stream` - kokoro-onnx 0.6.1's ``Kokoro.create``
  (all audio at once) and ``Kokoro.create_stream`` (balanced batches near 510 phonemes),
  built with ``Kokoro.from_session`` on a session from :func:`labkit.engine.runtime.make_session`,
  so both sides use the same model and session settings.
"""
from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from labkit.engine.runtime import SAMPLE_RATE
from labkit.measure import coverage
from labkit.config import DATA_DIR



# -- texts -------------------------------------------------------------------------------------
def article() -> str:
    """The ~1,500-word benchmark article (original prose; paragraphs split by blank lines)."""
    return (DATA_DIR / "article.txt").read_text(encoding="utf-8").strip()


def paragraph() -> str:
    """The ~120-word benchmark paragraph."""
    return (DATA_DIR / "paragraph.txt").read_text(encoding="utf-8").strip()


def phrase() -> str:
    return "Hello! The kettle is on."


TEXTS: dict[str, Callable[[], str]] = {"phrase": phrase, "paragraph": paragraph, "article": article}


def text(name_or_text: str) -> str:
    """A named benchmark text ("phrase", "paragraph", "article", "sentence") or the text itself."""
    if name_or_text == "sentence":
        return paragraph().split(". ")[0] + "."
    fn = TEXTS.get(name_or_text)
    return fn() if fn else name_or_text


def word_count(s: str) -> int:
    return len(s.split())


# -- the playback simulator ------------------------------------------------------------------------
@dataclass
class Playback:
    ttfa_s: float
    underruns: int
    underrun_s: float
    jitter: float
    dropout: float
    #: when the last sample played (request to end of audio)
    finish_s: float
    audio_s: float
    chunks: int
    #: the worst lateness of a chunk against its playback slot (negative: early)
    max_late_s: float
    #: per chunk: play start and stall before it
    starts: list[float] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)

    def to_dict(self, detail: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not detail:
            d.pop("starts")
            d.pop("stalls")
        return d


def simulate_playback(arrivals: Sequence[float], durations: Sequence[float],
                      startup_buffer_s: float = 0.0, min_stall_s: float = 1e-3) -> Playback:
    """Play chunks that arrive at ``arrivals`` (seconds since the request, in stream order)
    lasting ``durations`` seconds, with a client that waits for ``startup_buffer_s`` of
    audio before it starts. Stalls shorter than ``min_stall_s`` are not counted."""
    a = [float(x) for x in arrivals]
    d = [float(x) for x in durations]
    if len(a) != len(d):
        raise ValueError(f"{len(a)} arrival times but {len(d)} durations: one of each per chunk")
    if not a:
        raise ValueError("no chunks to play")
    if any(x < 0 for x in d):
        raise ValueError("a chunk duration is negative")
    if any(y < x for x, y in zip(a, a[1:])):
        raise ValueError("arrival times must be in stream order (non-decreasing)")
    # start: when the buffer holds startup_buffer_s of audio, or everything has arrived
    buffered, start = 0.0, a[-1]
    for t, dur in zip(a, d):
        buffered += dur
        if buffered >= startup_buffer_s - 1e-12:
            start = t
            break
    cursor = start
    starts, stalls = [], []
    underruns, underrun_s, max_late = 0, 0.0, -float("inf")
    for t, dur in zip(a, d):
        late = t - cursor
        max_late = max(max_late, late)
        stall = max(0.0, late)
        if stall >= min_stall_s:
            underruns += 1
            underrun_s += stall
        else:
            stall = 0.0
        begin = cursor + stall
        starts.append(begin)
        stalls.append(stall)
        cursor = begin + dur
    audio_s = sum(d)
    ratios = [(a[k] - a[k - 1]) / d[k - 1] for k in range(1, len(a)) if d[k - 1] > 0]
    jitter = statistics.pstdev(ratios) if len(ratios) > 1 else 0.0
    played = cursor - start
    return Playback(start, underruns, underrun_s, jitter, underrun_s / played if played > 0 else 0.0,
                    cursor, audio_s, len(a), max_late, starts, stalls)


# -- CPU use -------------------------------------------------------------------------------------
class CpuMeter:
    """Process CPU seconds over wall seconds, as a fraction of all cores."""

    def __enter__(self) -> "CpuMeter":
        self.t0 = time.perf_counter()
        self.c0 = _cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self.t0
        self.cpu_s = _cpu_seconds() - self.c0
        self.utilization = self.cpu_s / max(self.wall_s, 1e-9) / (os.cpu_count() or 1)


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- runs ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One synthesis of one text: when each chunk arrived and how long it plays."""

    name: str
    arrivals: list[float]
    durations: list[float]
    total_s: float
    audio_s: float
    cpu_utilization: float = 0.0
    #: per chunk details (pipeline runs): index, text, tokens, boundary, session, ...
    chunks: list[dict[str, Any]] = field(default_factory=list)
    words_present: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    audio: np.ndarray | None = None

    @property
    def ttfa_s(self) -> float:
        return self.arrivals[0]

    @property
    def rtf(self) -> float:
        return self.total_s / max(self.audio_s, 1e-9)

    def playback(self, startup_buffer_s: float = 0.0) -> Playback:
        return simulate_playback(self.arrivals, self.durations, startup_buffer_s)

    def summary(self, startup_buffer_s: float = 0.0) -> dict[str, Any]:
        pb = self.playback(startup_buffer_s)
        out = {"ttfa_s": self.ttfa_s, "total_s": self.total_s, "audio_s": self.audio_s,
               "rtf": self.rtf, "chunks": len(self.arrivals), "cpu_utilization": self.cpu_utilization,
               "underruns": pb.underruns, "underrun_s": pb.underrun_s, "jitter": pb.jitter,
               "dropout": pb.dropout, "playback_ttfa_s": pb.ttfa_s}
        if self.words_present is not None:
            out["words_present"] = self.words_present
        out.update(self.extra)
        return out


def run_stream(synth, text_: str, voice: str | None = None, speed: float | None = None,
               lang: str | None = None, keep_audio: bool = False, name: str = "stream") -> Run:
    """Consume ``synth.stream(text)`` as fast as it comes; record arrivals and durations.

    ``words_present``: every word of the text is in some chunk's text and, where the
    model gives word timings (labkit.engine.words), every word's span holds speech in the
    audio (labkit.measure.coverage; ``words_in_audio`` says whether that ran)."""
    from labkit.engine.chunking import words_present

    arrivals, durations, chunks, audio = [], [], [], []
    heard, timed = [], []
    with CpuMeter() as cpu:
        s = synth.open_stream(text_, voice, speed, lang)
        t0 = s.t0
        with s:
            for c in s:
                arrivals.append(time.perf_counter() - t0)
                durations.append(c.duration)
                chunks.append({"index": c.index, "text": c.text, "tokens": c.tokens,
                               "boundary": c.boundary, "session": c.session,
                               "synth_s": c.synth_seconds, "started_at": c.started_at,
                               "done_at": c.done_at, "ready_at": c.ready_at,
                               "duration_s": c.duration, "attempts": c.attempts})
                if keep_audio:
                    audio.append(c.audio)
                heard.append(c.audio)
                timed += getattr(c, "words", [])
    stats = s.stats
    present = words_present(s.source_text, [c["text"] for c in chunks])
    in_audio = None
    if timed:
        cov = coverage.check(np.concatenate(heard), SAMPLE_RATE, [w.to_dict() for w in timed])
        in_audio = {"ok": cov.ok, "words": len(timed), "not_heard": [w.word for w in cov.failed][:20]}
        present = present and cov.ok
    return Run(name, arrivals, durations, arrivals[-1] if arrivals else 0.0, sum(durations),
               cpu.utilization, chunks, present,
               {"failures": len(stats.failures), "retries": stats.retries,
                "words_in_audio": in_audio,
                "max_ahead": stats.max_ahead,
                "per_session": {str(k): v for k, v in stats.per_session.items()}},
               np.concatenate(audio) if audio else None)


class KokoroBaseline:
    """kokoro-onnx's own ``create`` / ``create_stream`` on our model file and session settings."""

    def __init__(self, cfg, variant: str | None = None, session=None):
        from kokoro_onnx import Kokoro

        from labkit.engine import assets
        from labkit.engine.runtime import make_session

        model = assets.model_path(cfg, variant or cfg.variant)
        sess = session or make_session(model, cfg.session)
        self.kokoro = Kokoro.from_session(sess, str(assets.voices_path(cfg)))
        self.cfg = cfg

    def _lang(self, voice: str | None) -> str:
        from labkit.engine.g2p import normalize_lang

        return normalize_lang(self.cfg.lang, voice or self.cfg.voice)

    def warm_up(self) -> None:
        self.kokoro.create("Hello world.", self.cfg.voice, speed=self.cfg.speed,
                           lang=self._lang(self.cfg.voice))

    def run_create(self, text_: str, voice: str | None = None, keep_audio: bool = False) -> Run:
        with CpuMeter() as cpu:
            t0 = time.perf_counter()
            audio, sr = self.kokoro.create(text_, voice or self.cfg.voice, speed=self.cfg.speed,
                                           lang=self._lang(voice))
            t = time.perf_counter() - t0
        dur = len(audio) / sr
        return Run("create", [t], [dur], t, dur, cpu.utilization,
                   audio=np.asarray(audio, np.float32) if keep_audio else None)

    def run_create_stream(self, text_: str, voice: str | None = None, keep_audio: bool = False) -> Run:
        arrivals, durations, parts = [], [], []

        async def consume():
            t0 = time.perf_counter()
            async for audio, sr in self.kokoro.create_stream(
                    text_, voice or self.cfg.voice, speed=self.cfg.speed, lang=self._lang(voice)):
                arrivals.append(time.perf_counter() - t0)
                durations.append(len(audio) / sr)
                if keep_audio:
                    parts.append(np.asarray(audio, np.float32))

        with CpuMeter() as cpu:
            run_coroutine(consume())
        return Run("create_stream", arrivals, durations, arrivals[-1], sum(durations), cpu.utilization,
                   audio=np.concatenate(parts) if parts else None)


def run_coroutine(coro):
    """``asyncio.run`` that also works where a loop is already running (Jupyter): the
    coroutine then runs to completion on its own loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def median_runs(fn: Callable[[], Run], repeats: int) -> tuple[Run, list[Run]]:
    """Run ``fn`` ``repeats`` times; return the run with the median total time, and all."""
    runs = [fn() for _ in range(max(1, repeats))]
    order = sorted(runs, key=lambda r: r.total_s)
    return order[len(order) // 2], runs


def summarize(runs: list[Run], startup_buffer_s: float = 0.0) -> dict[str, Any]:
    """Median and p90 of ttfa/total/rtf over repeats, and the worst playback figures."""
    from labkit.timing import Timing

    ttfa = Timing.of([r.ttfa_s for r in runs])
    total = Timing.of([r.total_s for r in runs])
    pbs = [r.playback(startup_buffer_s) for r in runs]
    out = {"ttfa_s": ttfa.median, "ttfa_p90_s": ttfa.p90, "total_s": total.median,
           "total_p90_s": total.p90, "audio_s": runs[0].audio_s,
           "rtf": statistics.median(r.rtf for r in runs), "chunks": len(runs[0].arrivals),
           "repeats": len(runs), "cpu_utilization": statistics.median(r.cpu_utilization for r in runs),
           "underruns_max": max(p.underruns for p in pbs),
           "underrun_s_max": max(p.underrun_s for p in pbs),
           "jitter_median": statistics.median(p.jitter for p in pbs),
           "dropout_max": max(p.dropout for p in pbs)}
    wp = [r.words_present for r in runs if r.words_present is not None]
    if wp:
        out["words_present"] = all(wp)
        # True only where every run's words were also checked in its audio (word timings)
        out["words_checked_in_audio"] = all(r.extra.get("words_in_audio") is not None for r in runs)
    fails = [r.extra.get("failures", 0) for r in runs]
    if any(fails):
        out["failures"] = sum(fails)
    return out


# -- the cost at the seams -----------------------------------------------------------------------------
def _frames(x: np.ndarray, n_fft: int = 512, hop: int = 240) -> np.ndarray:
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    m = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(m)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1))
    return np.log(spec + 1e-5)


def align(ref: np.ndarray, segment: np.ndarray, guess: int, search_s: float = 2.0, hop: int = 240) -> int:
    """Sample offset in ``ref`` where ``segment`` matches best (log-spectrum distance over
    frames), searched within ``search_s`` of ``guess``."""
    seg = _frames(segment, hop=hop)
    rf = _frames(ref, hop=hop)
    g = guess // hop
    lo = max(0, g - int(search_s * SAMPLE_RATE / hop))
    hi = min(len(rf) - len(seg), g + int(search_s * SAMPLE_RATE / hop))
    if hi < lo:
        return max(0, min(guess, len(ref) - len(segment)))
    best = min(range(lo, hi + 1), key=lambda k: float(np.mean((rf[k:k + len(seg)] - seg) ** 2)))
    return best * hop


def seam_lsd(reference: np.ndarray, chunked: np.ndarray, seams: Sequence[int],
             window_s: float = 0.25, lsd: Callable | None = None) -> list[dict[str, Any]]:
    """Log-spectral distance (dB) of the chunked audio against the unchunked one in a
    window around each seam, and around the midpoint between seams as the control: what
    chunking changes everywhere (each piece has its own style row and prosody) vs what
    the join adds. The chunked window is located in the reference by spectral alignment
    (durations differ: pauses are re-sized, pieces are re-timed)."""
    if lsd is None:
        from labkit.quality import lsd_db as lsd
    w = int(window_s * SAMPLE_RATE)
    ref = np.asarray(reference, np.float32)
    out = []
    points = [int(p) for p in seams if w <= p <= len(chunked) - w]
    bounds = [0, *points, len(chunked)]
    for k, p in enumerate(points):
        row = {"position_s": p / SAMPLE_RATE}
        for label, centre in (("seam", p), ("control", (bounds[k] + p) // 2)):
            if centre - w < 0 or centre + w > len(chunked):
                row[f"{label}_lsd_db"] = None
                continue
            seg = chunked[centre - w:centre + w]
            guess = int(centre * len(ref) / max(len(chunked), 1)) - w
            at = align(ref, seg, guess)
            ref_seg = ref[at:at + len(seg)]
            if len(ref_seg) < len(seg):
                row[f"{label}_lsd_db"] = None
                continue
            row[f"{label}_lsd_db"] = float(lsd(ref_seg, seg, allow_length_mismatch=False))
        out.append(row)
    return out


# -- the strategy sweep -------------------------------------------------------------------------------
def pick(results: list[dict[str, Any]], max_underruns: int = 0, tie_band: float = 0.05) -> dict[str, Any] | None:
    """The best row: every word present, at most ``max_underruns``; then the lowest
    ttfa_s, ties (within ``tie_band``) broken by fewer chunks (fewer seams), then rtf."""
    ok = [r for r in results if r.get("words_present", True)
          and r.get("underruns_max", 0) <= max_underruns and r.get("ttfa_s") is not None]
    if not ok:
        return None
    best_ttfa = min(r["ttfa_s"] for r in ok)
    near = [r for r in ok if r["ttfa_s"] <= best_ttfa * (1 + tie_band)]
    return min(near, key=lambda r: (r.get("chunks", 0), r.get("rtf", 0)))


# -- stage 05/06 helpers (the notebooks stay thin) -------------------------------------------------
def chunking_label(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or "default"


def chunking_sweep(engine, text_: str, variants: list[dict[str, Any]], repeats: int = 3,
                   startup_buffer_s: float = 0.0, engines=None) -> list[dict[str, Any]]:
    """Stream ``text_`` with each chunking variant (overrides of ``cfg.chunking``): one
    row per variant with the medians, the worst playback figures and the first piece."""
    import dataclasses

    from labkit.engine.pipeline import StreamingSynthesizer

    rows = []
    for overrides in variants:
        ccfg = dataclasses.replace(engine.cfg.chunking, **overrides)
        synth = StreamingSynthesizer(engine, engines, chunking_cfg=ccfg)
        runs = [run_stream(synth, text_, name=chunking_label(overrides)) for _ in range(max(1, repeats))]
        row = summarize(runs, startup_buffer_s)
        row.update(label=chunking_label(overrides), overrides=dict(overrides),
                   chunking=dataclasses.asdict(ccfg), first_piece=runs[0].chunks[0]["text"],
                   first_tokens=runs[0].chunks[0]["tokens"],
                   tokens=[c["tokens"] for c in runs[0].chunks])
        rows.append(row)
    return rows


def side_by_side(synth, baseline: "KokoroBaseline", text_: str, repeats: int = 3,
                 startup_buffer_s: float = 0.0, keep_audio: bool = False) -> dict[str, Any]:
    """ours / create / create_stream on one text, interleaved in each repeat so that the
    machine's noise hits all three alike; medians and the ratios the issue asks for."""
    runs: dict[str, list[Run]] = {"labkit": [], "create": [], "create_stream": []}
    for r in range(max(1, repeats)):
        keep = keep_audio and r == 0
        runs["labkit"].append(run_stream(synth, text_, keep_audio=keep, name="labkit"))
        runs["create"].append(baseline.run_create(text_, keep_audio=keep))
        runs["create_stream"].append(baseline.run_create_stream(text_, keep_audio=keep))
    out: dict[str, Any] = {"words": word_count(text_)}
    for name, rs in runs.items():
        out[name] = summarize(rs, startup_buffer_s)
    ours, create, cstream = out["labkit"], out["create"], out["create_stream"]
    out["ratios"] = {
        "ttfa_create_over_labkit": create["ttfa_s"] / ours["ttfa_s"],
        "ttfa_create_stream_over_labkit": cstream["ttfa_s"] / ours["ttfa_s"],
        "total_labkit_over_create": ours["total_s"] / create["total_s"],
    }
    out["_audio"] = {k: rs[0].audio for k, rs in runs.items() if rs[0].audio is not None}
    out["_runs"] = runs
    return out


def seam_report(engine, chunking_cfg, text_: str, voice: str | None = None) -> dict[str, Any]:
    """The cost at the seams of ``chunking_cfg`` on ``text_``: log-spectral distance to
    the unchunked audio around each seam vs around mid-piece points (the control), the
    discontinuity at each join, and pause lengths (ours vs the model's own)."""
    import dataclasses

    from labkit.engine import joining
    from labkit.engine.pipeline import StreamingSynthesizer

    ref_synth = StreamingSynthesizer(engine, chunking_cfg=dataclasses.replace(chunking_cfg, strategy="none"))
    reference = ref_synth.synthesize(text_, voice)
    stream = StreamingSynthesizer(engine, chunking_cfg=chunking_cfg).open_stream(text_, voice)
    with stream:
        chunks = list(stream)
    chunked = np.concatenate([c.audio for c in chunks])
    seams = stream.joiner.seams
    positions = [s.position for s in seams]
    lsd_rows = seam_lsd(reference, chunked, positions)
    for row, seam in zip(lsd_rows, [s for s in seams if int(0.25 * SAMPLE_RATE) <= s.position
                                    <= len(chunked) - int(0.25 * SAMPLE_RATE)]):
        row["kind"] = seam.kind
    checks = joining.continuity(chunked, seams, crossfade_ms=chunking_cfg.crossfade_ms)
    natural = joining.silence_runs(reference)
    seam_vals = [r["seam_lsd_db"] for r in lsd_rows if r.get("seam_lsd_db") is not None]
    ctrl_vals = [r["control_lsd_db"] for r in lsd_rows if r.get("control_lsd_db") is not None]
    return {
        "seams": len(seams),
        "seam_lsd_db_median": statistics.median(seam_vals) if seam_vals else None,
        "control_lsd_db_median": statistics.median(ctrl_vals) if ctrl_vals else None,
        "seam_excess_db": (statistics.median(seam_vals) - statistics.median(ctrl_vals))
        if seam_vals and ctrl_vals else None,
        "max_discontinuity_ratio": max((c.ratio for c in checks), default=0.0),
        "rows": lsd_rows,
        "continuity": [asdict(c) for c in checks],
        "inserted_pauses_s": {k: [s.pause_s for s in seams if s.kind == "pause" and
                                  chunks[s.piece - 1].boundary == k]
                              for k in ("clause", "sentence", "paragraph")},
        "natural_pauses_s": [round(length, 3) for _, length in natural],
        "reference_s": len(reference) / SAMPLE_RATE,
        "chunked_s": len(chunked) / SAMPLE_RATE,
        "_reference": reference,
        "_chunked": chunked,
    }


def public(d: dict[str, Any]) -> dict[str, Any]:
    """A record without the keys that hold audio or run objects (``_``-prefixed)."""
    return {k: (public(v) if isinstance(v, dict) else v) for k, v in d.items() if not str(k).startswith("_")}


# -- stage 06: one session or two --------------------------------------------------------------------
def candidate_config(cfg, candidate: dict[str, Any]):
    """``cfg`` with a session-pair candidate applied: ``session`` (overrides of
    cfg.session), ``sessions``, ``second_session``, ``second_variant``, ``routing``,
    ``queue_depth``."""
    over: dict[str, Any] = {f"session.{k}": v for k, v in candidate.get("session", {}).items()}
    for key in ("sessions", "second_session", "second_variant", "routing", "queue_depth"):
        if key in candidate:
            over[f"pipeline.{key}"] = candidate[key]
    return cfg.with_overrides(over)


def unavailable_providers(candidate: dict[str, Any]) -> list[str]:
    """Execution providers a candidate names that this ONNX Runtime build lacks."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    wanted = list(candidate.get("session", {}).get("providers", []))
    wanted += list(candidate.get("second_session", {}).get("providers", []))
    return sorted({p for p in wanted if p not in have})


def compare_sessions(cfg, candidates: list[dict[str, Any]], texts: list[str], repeats: int = 2,
                     startup_buffer_s: float = 0.0) -> list[dict[str, Any]]:
    """Stream each text with each candidate (one session or two): one row per
    (candidate, text); candidates whose providers are missing are recorded as skipped."""
    import gc

    from labkit.engine.pipeline import StreamingSynthesizer, build_engines, fastest

    from labkit.quality import lsd_db

    rows = []
    first_audio: dict[str, np.ndarray] = {}  # text -> the first measured candidate's take
    for cand in candidates:
        name = cand.get("name") or chunking_label({k: v for k, v in cand.items() if k != "name"})
        missing = unavailable_providers(cand)
        if missing:
            import onnxruntime as ort

            for t in texts:
                rows.append({"candidate": name, "text": t, "status":
                             f"skipped: {', '.join(missing)} not available in onnxruntime "
                             f"{ort.__version__} on this machine (available: "
                             f"{', '.join(ort.get_available_providers())})"})
            continue
        ccfg = candidate_config(cfg, cand)
        engines = build_engines(ccfg)
        for e in engines:
            e.warm_up(repeats=2)
        first = fastest(engines) if len(engines) > 1 else 0
        synth = StreamingSynthesizer(engines[0], engines, first_session=first)
        for t in texts:
            runs = [run_stream(synth, text(t), name=name, keep_audio=(i == 0))
                    for i in range(max(1, repeats))]
            take = runs[0].audio
            runs[0].audio = None
            row = summarize(runs, startup_buffer_s)
            # same pieces, same model: the audio should not change; measured, not assumed
            first_audio.setdefault(t, take)
            ref = first_audio[t]
            row["change_vs_first_db"] = (lsd_db(ref, take) if take is not None and len(take) == len(ref)
                                      else None)
            row["length_matches_first"] = take is not None and len(take) == len(ref)
            row.update(candidate=name, text=t, status="ok", sessions=len(engines), first_session=first,
                       routing=ccfg.pipeline.routing, queue_depth=ccfg.pipeline.queue_depth,
                       threads=[e.session.get_session_options().intra_op_num_threads for e in engines],
                       per_session=runs[-1].extra.get("per_session"),
                       pipeline={"sessions": ccfg.pipeline.sessions,
                                 "second_session": dict(ccfg.pipeline.second_session),
                                 "second_variant": ccfg.pipeline.second_variant,
                                 "routing": ccfg.pipeline.routing,
                                 "queue_depth": ccfg.pipeline.queue_depth},
                       session=dict(cand.get("session", {})))
            rows.append(row)
        del synth, engines
        gc.collect()
    return rows


def dual_rule(rows: list[dict[str, Any]], band: float = 0.05) -> dict[str, Any]:
    """Single vs dual, per text: the best single-session row against the best dual one
    (lowest total time among those with no more underruns), as ratios; dual sessions are
    used only where they win on total time by more than ``band`` without losing on TTFA
    (beyond ``band``) or adding underruns on every text measured."""
    texts = sorted({r["text"] for r in rows if r.get("status") == "ok"})
    per_text, wins = {}, []
    best_single = None
    for t in texts:
        ok = [r for r in rows if r.get("status") == "ok" and r["text"] == t]
        singles = [r for r in ok if r["sessions"] == 1]
        duals = [r for r in ok if r["sessions"] == 2]
        if not singles or not duals:
            continue
        s = min(singles, key=lambda r: (r["underruns_max"], r["total_s"]))
        d = min(duals, key=lambda r: (r["underruns_max"], r["total_s"]))
        best_single = best_single or s
        ratios = {"single": s["candidate"], "dual": d["candidate"],
                  "ttfa_dual_over_single": d["ttfa_s"] / s["ttfa_s"],
                  "total_dual_over_single": d["total_s"] / s["total_s"],
                  "underruns_single": s["underruns_max"], "underruns_dual": d["underruns_max"],
                  "cpu_single": s["cpu_utilization"], "cpu_dual": d["cpu_utilization"]}
        win = (ratios["total_dual_over_single"] < 1 - band and ratios["ttfa_dual_over_single"] <= 1 + band
               and d["underruns_max"] <= s["underruns_max"])
        ratios["dual_pays"] = win
        per_text[t] = ratios
        wins.append((win, d))
    use_dual = bool(wins) and all(w for w, _ in wins)
    chosen = wins[0][1] if use_dual else None
    if not per_text:
        rule = "no single-vs-dual pair was measured here; single session kept"
    elif use_dual:
        rule = (f"use two sessions ({chosen['candidate']}): on every text measured they finish "
                f">{band:.0%} sooner without later first audio or more underruns")
    else:
        rule = ("keep one session: two sessions did not finish more than "
                f"{band:.0%} sooner without a later first audio or more underruns on every text "
                "measured (on 2 shared cores the sessions compete for the same cores)")
    return {"use_dual": use_dual, "rule": rule, "per_text": per_text,
            "pipeline": chosen["pipeline"] if chosen else {"sessions": 1},
            "session": chosen["session"] if chosen else (best_single or {}).get("session"),
            "candidate": chosen["candidate"] if chosen else (best_single or {}).get("candidate")}


# -- candidates for the journal's selection (labkit.lab.selection) ---------------------------------------
def _stream_checks(row: dict[str, Any]) -> list[str]:
    failed = []
    if row.get("underruns_max", 0) > 0:
        failed.append("underruns")
    if row.get("words_present") is False:
        failed.append("words missing")
    if row.get("failures"):
        failed.append("session failures")
    return failed


def chunking_candidates(rows: list[dict[str, Any]], chosen_label: str | None, base_chunking,
                        seam_excess_db: float | None) -> list[dict[str, Any]]:
    """Stage 05's sweep rows as candidates, the stage's choice first. Chunking changes the
    audio only at the seams; that cost (seam LSD minus mid-piece LSD) is measured for the
    chosen variant, so only it carries ``lsd_db`` (the others are listed, not eligible)."""
    import dataclasses

    base = dataclasses.asdict(base_chunking)
    out = []
    for r in sorted(rows, key=lambda r: r["label"] != chosen_label):
        chosen = r["label"] == chosen_label
        out.append({
            "name": f"chunking {r['label']}",
            "overrides": {f"chunking.{k}": v for k, v in r["chunking"].items() if base.get(k) != v},
            "ttfa_s": r["ttfa_s"], "rtf": r["rtf"],
            "lsd_db": (max(0.0, seam_excess_db) if chosen and seam_excess_db is not None else None),
            "lsd_basis": "seam cost (LSD at the seams minus mid-piece) vs unchunked audio" if chosen
                         else "seam cost not measured for this variant",
            "failed_checks": _stream_checks(r),
        })
    return out


def session_candidates(rows: list[dict[str, Any]], rule: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage 06's measured rows on its first text as candidates, the stage's rule's choice
    first; ``lsd_db`` is each one's measured distance from the first candidate's audio.

    The rule weighed single against dual on first audio, total time and underruns over
    every text; the journal's ranking sees one text and its hard checks. So the rows the
    rule did not choose carry the failed check ``not the stage's rule``: the journal can
    never ship the dual pair the stage measured as worse (a one-off underrun of the single
    session on a noisy machine once made it pick a pair with 1.65x later first audio)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return []
    main_text = ok[0]["text"]
    chosen = rule.get("candidate")
    out = []
    for r in sorted((r for r in ok if r["text"] == main_text), key=lambda r: r["candidate"] != chosen):
        overrides = {f"session.{k}": v for k, v in (r.get("session") or {}).items()}
        overrides.update({f"pipeline.{k}": v for k, v in r["pipeline"].items()
                          if k in ("sessions", "second_session", "routing")})
        if r["sessions"] == 1:
            overrides = {k: v for k, v in overrides.items()
                         if k not in ("pipeline.second_session", "pipeline.routing")}
        out.append({"name": r["candidate"], "overrides": overrides, "ttfa_s": r["ttfa_s"],
                    "rtf": r["rtf"], "lsd_db": r.get("change_vs_first_db"),
                    "failed_checks": _stream_checks(r) + ([] if r.get("length_matches_first", True)
                                                          else ["length"])
                    + ([] if r["candidate"] == chosen else ["not the stage's rule"])})
    return out
