"""Streaming runs: the real pipeline consumed as a client would, timed chunk by chunk.

:func:`run_stream` consumes ``labkit.engine.pipeline.StreamingSynthesizer.stream`` and
records when each chunk arrived and how long it plays; :func:`summarize_runs` gives
medians over repeats and the worst playback figures (labkit.measure.playback).
"""
from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from labkit.engine.chunking import words_present
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.kokoro import SAMPLE_RATE
from labkit.measure import coverage
from labkit.measure.playback import Playback, simulate_playback
from labkit.timing import Timing


# -- CPU use -------------------------------------------------------------------------------------
class CpuMeter:
    """Process CPU seconds over wall seconds, as a fraction of all cores, and the major
    page faults taken meanwhile (pages read back from disk: a stream that stalls with its
    cores idle and many of them was waiting for its model's memory, not computing)."""

    def __enter__(self) -> "CpuMeter":
        self.t0 = time.perf_counter()
        self.c0, self.f0 = _cpu_seconds(), _major_faults()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self.t0
        self.cpu_s = _cpu_seconds() - self.c0
        self.major_faults = _major_faults() - self.f0
        self.utilization = self.cpu_s / max(self.wall_s, 1e-9) / (os.cpu_count() or 1)


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _major_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


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
    #: every word's span checked in the audio (labkit.measure.coverage), None without timings
    words_checked: coverage.Coverage | None = None

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
               lang: str | None = None, keep_audio: bool = False, name: str = "stream",
               excused: dict[int, str] | None = None) -> Run:
    """Consume ``synth.stream(text)`` as fast as it comes; record arrivals and durations.

    ``words_present``: every word of the text is in some chunk's text and, where the
    model gives word timings (labkit.engine.words), every word's span holds speech in the
    audio (labkit.measure.coverage; ``words_in_audio`` says whether that ran), but for the
    ``excused`` ones (:func:`unvoiced_words`: the model's own unchunked take barely voices
    them), listed as ``model_unvoiced`` where they failed."""
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
    in_audio, cov = None, None
    if timed:
        cov = coverage.check(np.concatenate(heard), SAMPLE_RATE, [w.to_dict() for w in timed])
        gone, spared = coverage.lost(cov, excused or {})
        in_audio = {"ok": not gone, "words": len(timed), "not_heard": [w.word for w in gone][:20]}
        if spared:
            in_audio["model_unvoiced"] = [w.word for w in spared][:20]
        present = present and not gone
    return Run(name, arrivals, durations, arrivals[-1] if arrivals else 0.0, sum(durations),
               cpu.utilization, chunks, present,
               {"failures": len(stats.failures), "retries": stats.retries,
                "words_in_audio": in_audio,
                "max_ahead": stats.max_ahead, "major_faults": cpu.major_faults,
                "opening_load": stats.opening_load, "primer_floor": stats.primer_floor,
                "per_session": {str(k): v for k, v in stats.per_session.items()}},
               np.concatenate(audio) if audio else None, cov)


def unvoiced_words(synth: StreamingSynthesizer, text_: str, voice: str | None = None) -> dict[int, str]:
    """index -> word: the words of ``text_`` the model barely voices in its own unchunked
    take (``synth``'s engine and chunking with ``strategy: none``; labkit.measure.coverage
    .unvoiced), which a stream of it is not blamed for (:func:`run_stream`'s ``excused``);
    {} without word timings."""
    ref = StreamingSynthesizer(synth.engine, pipeline=synth.pipeline_cfg,
                               chunking_cfg=dataclasses.replace(synth.chunking_cfg, strategy="none"))
    run = run_stream(ref, text_, voice, name="unchunked")
    return coverage.unvoiced(run.words_checked) if run.words_checked is not None else {}


def first_audio(synth, text_: str, voice: str | None = None) -> float:
    """Seconds from opening a stream of ``text_`` to its first chunk; the stream is then
    closed (its workers stopped and joined), so the next call starts on an idle engine."""
    return first_chunk(synth, text_, voice)["ttfa_s"]


def first_chunk(synth, text_: str, voice: str | None = None) -> dict[str, Any]:
    """:func:`first_audio` (``ttfa_s``) and what the first chunk was: its tokens, the
    slowdown the adaptive schedule sensed when the stream opened (None without it) and
    whether it came from an opening prefix (labkit.engine.prosody)."""
    s = synth.open_stream(text_, voice)
    with s:
        chunk = next(iter(s))
        ttfa = time.perf_counter() - s.t0
    return {"ttfa_s": ttfa, "first_tokens": chunk.tokens,
            "opening_load": None if s.schedule is None else round(s.schedule.opening_load, 3),
            "from_prefix": s.windows is not None and s.windows.opening is not None}


def cancel_release(synth, text_: str, after_s: float = 0.5, voice: str | None = None
                   ) -> dict[str, Any]:
    """Open a stream of ``text_``, take its first chunk, let synthesis run ``after_s`` more
    seconds (a piece is in flight), then stop it as serve does when a client goes away
    (``cancel()``, then ``close()``): how long until every worker has ended and the
    session is free (``release_s``), and whether the piece in flight was aborted."""
    s = synth.open_stream(text_, voice)
    it = iter(s)
    next(it)
    time.sleep(after_s)
    in_flight = s._in_flight  # noqa: SLF001 - read for the record only
    t0 = time.perf_counter()
    s.cancel()
    s.close()
    release = time.perf_counter() - t0
    return {"release_s": release, "in_flight": in_flight, "aborted": s.stats.aborted,
            "pieces_done": sum(int(v["pieces"]) for v in s.stats.per_session.values()),
            "terminate": s.terminate_on_cancel, "running_after": s.running}


def median_runs(fn: Callable[[], Run], repeats: int) -> tuple[Run, list[Run]]:
    """Run ``fn`` ``repeats`` times; return the run with the median total time, and all."""
    runs = [fn() for _ in range(max(1, repeats))]
    order = sorted(runs, key=lambda r: r.total_s)
    return order[len(order) // 2], runs


def summarize_runs(runs: list[Run], startup_buffer_s: float = 0.0) -> dict[str, Any]:
    """Median and p90 of ttfa/total/rtf over repeats, and the worst playback figures."""
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




def no_underruns(rows: list[dict[str, Any]]) -> bool:
    """Every row measured, and no underrun in any of its repeats."""
    return bool(rows) and all(r["underruns_max"] == 0 for r in rows)


def stream_failures(row: dict[str, Any]) -> list[str]:
    failed = []
    if row.get("underruns_max", 0) > 0:
        failed.append("underruns")
    if row.get("words_present") is False:
        failed.append("words missing")
    if row.get("failures"):
        failed.append("session failures")
    return failed
