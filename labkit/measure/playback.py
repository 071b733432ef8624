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
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence


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
