"""Chunking variants measured against each other on the real streaming pipeline: how soon
the first audio comes, what the seams cost, what a listener hears.

* :func:`sweep` -- each variant against the configured chunking (``BASELINE``) on time to
  first audio, timed by the one instrument (labkit.measure.compare), then streamed whole
  for underruns, words and end-to-end RTF;
* :func:`seam_costs` -- every variant's seams (labkit.measure.seams), against one
  unchunked reference shared by the variants that differ only in where they cut;
* :func:`listen_rows` -- labels streamed whole in rotating rounds, without and with a
  competing CPU-bound load (labkit.measure.load), as a listener hears them;
* :func:`phrase_vs_text` -- a text's first audio against a short phrase's;
* :func:`article_rows` -- a long text streamed whole, idle and under load;
* :func:`click_figures` -- the clicks in one take (labkit.quality.clicks), by which seams are judged.

Stage 05 (labkit.lab.s05_chunking) builds the variants and decides what they earn.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from labkit import progress
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.kokoro import SAMPLE_RATE
from labkit.measure import seams
from labkit.measure.compare import compare
from labkit.measure.load import competing_load
from labkit.measure.streaming import first_audio, run_stream, summarize_runs, unvoiced_words
from labkit.measure.texts import word_count
from labkit.quality import clicks as clickmod

#: the label of the configured chunking, every variant's baseline
BASELINE = "default"
#: what the sweep compares: time to first audio
CRITERION = "ttfa_s"


def sweep(synths: dict[str, StreamingSynthesizer], text: str, rounds: int | None = None,
          stream_repeats: int = 1, startup_buffer_s: float = 0.0,
          decide_at: float | None = None) -> dict[str, Any]:
    """TTFA of every variant against the default (paired, interleaved), then each streamed
    whole ``stream_repeats`` times for underruns, words and end-to-end RTF. ``decide_at``
    (the journal's threshold, 1 + selection.min_gain): rounds added on a noisy machine end
    once every variant's interval is decided against it (labkit.measure.compare.decided)."""
    cmp = compare({k: (lambda s=s: first_audio(s, text)) for k, s in synths.items()}, BASELINE,
                  rounds=rounds, measure=float, criterion=CRITERION, decide_at=decide_at)
    rows = []
    for label, synth in synths.items():
        runs = [run_stream(synth, text, name=label) for _ in range(max(1, stream_repeats))]
        row = summarize_runs(runs, startup_buffer_s)
        row.update(label=label, chunking=dataclasses.asdict(synth.chunking_cfg),
                   ttfa_s=cmp.median(label), ttfa_ratio=cmp.ratio(label),
                   ttfa_ci95=list(cmp.ci95(label)), first_piece=runs[0].chunks[0]["text"],
                   tokens=[c["tokens"] for c in runs[0].chunks])
        rows.append(row)
    return {"comparison": cmp, "rows": rows}


#: chunking settings the unchunked reference does not depend on (strategy "none")
_CUT_ONLY = ("strategy", "primer_max_words", "primer_min_words", "primer_max_tokens",
             "primer_max_tokens_idle", "primer_min_tokens_loaded", "min_tokens", "max_tokens", "growth", "schedule", "schedule_margin",
             "schedule_safety_s", "schedule_min_tokens", "prosody", "window_context_frames")


def seam_costs(synths: dict[str, StreamingSynthesizer], labels: list[str], text: str
               ) -> dict[str, dict[str, Any]]:
    """label -> the seam report of that variant on ``text`` (the same measure for each;
    variants that differ only in where they cut share one unchunked reference)."""
    refs: dict[tuple, Any] = {}
    out = {}
    for label in dict.fromkeys(labels):
        synth = synths[label]
        joins = dataclasses.asdict(synth.chunking_cfg)
        key = tuple(sorted((k, v) for k, v in joins.items() if k not in _CUT_ONLY))
        if key not in refs:
            refs[key] = seams.unchunked(synth.engine, synth.chunking_cfg, text)
        out[label] = seams.seam_report(synth.engine, synth.chunking_cfg, text, reference=refs[key])
    return out


def each_run(runs: list, startup_buffer_s: float = 0.0) -> dict[str, list]:
    """Per repeat of a stream: its underruns as a listener hears them, its first piece's
    tokens, the slowdown the schedule sensed when it opened, and what says why a stream
    stalled: its RTF, the share of the cores it used and its major page faults
    (labkit.measure.streaming.CpuMeter)."""
    return {"underruns_each": [r.playback(startup_buffer_s).underruns for r in runs],
            "first_tokens_each": [r.chunks[0]["tokens"] if r.chunks else 0 for r in runs],
            "opening_load_each": [r.extra.get("opening_load") for r in runs],
            "rtf_each": [round(r.rtf, 3) for r in runs],
            "cpu_utilization_each": [round(r.cpu_utilization, 3) for r in runs],
            "major_faults_each": [r.extra.get("major_faults") for r in runs]}


def listen_rows(synths: dict[str, StreamingSynthesizer], labels: list[str], text: str, rounds: int,
           load_processes: int, startup_buffer_s: float = 0.0) -> list[dict[str, Any]]:
    """What a listener hears: each label streamed whole ``rounds`` times without and with
    ``load_processes`` competing busy processes, the labels' order rotated every round
    (interleaved, so a slow spell of the machine hits both); one row per (label, load) with
    the worst playback figures over the rounds (labkit.measure.streaming.summarize_runs)."""
    loads = [0] + ([load_processes] if load_processes else [])
    runs: dict[tuple[str, int], list] = {(lab, n): [] for lab in labels for n in loads}
    labels = list(dict.fromkeys(labels))
    # the words the model itself barely voices (its unchunked take, idle, once per engine)
    # are not counted against a stream: labkit.measure.streaming.unvoiced_words
    by_engine: dict[int, dict[int, str]] = {}
    for lab in labels:
        if id(synths[lab].engine) not in by_engine:
            by_engine[id(synths[lab].engine)] = unvoiced_words(synths[lab], text)
    excused = {lab: by_engine[id(synths[lab].engine)] for lab in labels}
    for r in progress.steps(range(max(1, rounds)), "listener rounds", label=lambda r: ""):
        for n in loads:
            with competing_load(n):
                for k in range(len(labels)):
                    lab = labels[(r + k) % len(labels)]
                    runs[(lab, n)].append(run_stream(synths[lab], text, name=lab, excused=excused[lab]))
    rows = []
    for (lab, n), rs in runs.items():
        row = summarize_runs(rs, startup_buffer_s)
        row.update(label=lab, load_processes=n, **each_run(rs, startup_buffer_s),
                   seams_each=[max(0, len(r.arrivals) - 1) for r in rs],
                   model_unvoiced=sorted(set(excused[lab].values())),
                   tokens=[c["tokens"] for c in rs[0].chunks])
        rows.append(row)
    return rows


def phrase_vs_text(synth: StreamingSynthesizer, phrase: str, text: str,
                   rounds: int | None) -> dict[str, Any]:
    """First audio of ``text`` over that of ``phrase`` (same synthesizer, interleaved
    rounds, the one instrument): the ratio of medians and its 95 % interval."""
    cmp = compare({"phrase": lambda: first_audio(synth, phrase),
                   "text": lambda: first_audio(synth, text)}, "phrase", rounds=rounds,
                  measure=float, criterion=CRITERION)
    lo, hi = cmp.ci95("text")  # phrase time / text time: > 1 would mean the text is faster
    return {"phrase_s": cmp.median("phrase"), "text_s": cmp.median("text"),
            "ratio": 1.0 / cmp.ratio("text"),
            "ci95": [1.0 / hi, 1.0 / lo] if lo > 0 else [float("nan"), float("nan")],
            "comparison": cmp}


def article_rows(synth: StreamingSynthesizer, article: str, repeats: int, load_processes: int,
                 startup_buffer_s: float = 0.0) -> tuple[list[dict[str, Any]], Any]:
    """A long text streamed whole ``repeats`` times idle, then beside ``load_processes``
    busy processes (0: idle only): one row per load with the worst playback figures, and
    the first run (for its timeline)."""
    rows, first = [], None
    for n in [0] + ([load_processes] if load_processes else []):
        # one long timed stream: nothing is reported while it plays
        progress.say(f"streaming the article ({word_count(article)} words) "
                     + ("idle" if n == 0 else f"beside {n} busy process(es)"))
        with competing_load(n):
            runs = [run_stream(synth, article) for _ in range(max(1, repeats))]
        row = summarize_runs(runs, startup_buffer_s)
        row.update(load_processes=n, words=word_count(article),
                   max_piece_tokens=max(c["tokens"] for c in runs[0].chunks),
                   **each_run(runs, startup_buffer_s))
        rows.append(row)
        first = first or runs[0]
    return rows, first


def click_figures(audio) -> dict[str, Any]:
    """The click detector's reading of one take (labkit.quality.clicks): clicks found and
    their rate per minute (what this stage judges seams by; no reference needed)."""
    found = clickmod.detect(audio)
    rate = clickmod.rate_per_minute(len(found), len(audio) / SAMPLE_RATE)
    return {"clicks": len(found), "clicks per minute": rate["per_minute"]}
