"""The opening-length sweep (issue #32): how soon a text's first audio comes when its
opening sentence is long, against a short phrase's, idle and beside a busy process.

* :func:`options` -- the stage's choice and, beside it, the lean first piece capped idle
  (:data:`LEAN_IDLE_CAP`: a primer of at most three words, sized up by the adaptive
  schedule's floor, from part A over a short opening prefix, with less vocoder context
  beyond each cut), the same with ``pipeline.first_alone`` (nothing else starts until the
  first chunk is out) and the same held longer under load (:data:`LEAN_LOADED_36`);
* :func:`sweep` -- each (option, text) against the phrase in interleaved rounds by the one
  instrument (labkit.measure.compare), one comparison per text and load (its rounds grow
  with its entries: one over every cell took 22 rounds of 22 calls); from the same rounds, each
  option against the configured one on each text (:func:`paired`), and an
  option with ``first_alone`` against its twin without it (:func:`plain_twins`);
* :func:`seam_reports` -- the seams of every option that changes the audio, on each text
  (labkit.measure.seams: the click detector);
* :func:`opening_words` -- the words in a text's first sentence, as the chunker counts them.

Stage 05 (labkit.lab.s05_chunking) runs it on its choice; labkit.lab.opening_choice decides.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from labkit import progress
from labkit.config import ChunkingConfig
from labkit.engine.sentences import sentences_of, words_of
from labkit.engine.g2p import normalize_lang
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.measure import seams, texts
from labkit.measure.compare import Comparison, compare, summarize
from labkit.measure.load import competing_load
from labkit.measure.streaming import first_chunk

#: the sweep's texts (labkit.measure.texts.OPENINGS: opening sentences of 5 to 50 words)
TEXTS = tuple(f"opening-{n}" for n in texts.OPENINGS)
#: the name of the phrase, every row's baseline
PHRASE = "phrase"


#: the short first piece (issue #32): a primer of at most three words (the adaptive
#: schedule's floor lengthens it toward the length the machine can follow without a
#: gap, at most 24 tokens, so a busy machine does not hold the first audio back further),
#: vocoded from part A over an opening prefix (sentence prosody), the pieces in the
#: prefix's span too
SHORT_FIRST = {"schedule": "adaptive", "primer_max_words": 3, "primer_min_words": 1,
               "primer_max_tokens": 24, "prosody": "sentence", "opening": "prefix"}
#: the short first piece made leaner: part A over the piece, 4 words after it and 2 of
#: lookahead (not 8 and 4), and 4 frames (100 ms) of vocoder context beyond each cut (not
#: 8): on the first piece's path every frame vocoded past its end costs as much as one of
#: its own, and part A's cost grows with the prefix. Its floor stops at 18 tokens, not 24:
#: beside one busy process on 2 x86 cores the floor is the cap (the speed model says no
#: length breaks even there), and 24 tokens (27 to the word's end) held the first audio at
#: 1.38-1.58x the phrase's; 18 came at 1.11-1.39x and streamed the paragraph without a gap,
#: 14 at 0.83-1.13x with 2 gaps (0.4 s) in it (this sweep and the listener rows over the
#: three caps, 6 rounds, 2026-12-04). With ``first_alone`` on top, run-20261204-204558's
#: listener heard 1-3 gaps in the paragraph under load: stage 05's opening sweep and
#: listener rows say it for the machine at hand
LEAN_FIRST = {**SHORT_FIRST, "opening_span_words": 4, "opening_lookahead_words": 2,
              "window_context_frames": 4, "primer_max_tokens": 18}
#: the lean first piece held to 14 tokens on an idle machine (``primer_max_tokens_idle``):
#: the 50-word opening's three words, voiced at its long sentence's pace, are 17 tokens and
#: 57 frames, and their part B alone (0.32 s) put its first audio at 1.31x the phrase's idle
#: in run-20261205-020927. A two-word primer came at 0.72-1.00x on every opening, idle, but
#: its 6-token first piece of the paragraph had a gap idle in 1 of 4 rounds, and beside a
#: busy process 2 of 4 (2026-12-04/05): a token cap shortens only the long first pieces, and
#: under load the cap stays 18. Under load its first piece is at least 16 tokens
#: (``primer_min_tokens_loaded``): on qdq-layers-tail the break-even beside a busy process
#: is ~10 tokens, and run-20261205-050619's listener heard a 0.153 s gap after a 10-token
#: first piece of the paragraph (the small pieces of the opening span after it ran out);
#: 16-25 tokens streamed it with no gap in 8 streams (2 Intel Xeon cores with AVX-512 VNNI,
#: 2026-12-05). On 2 AMD EPYC cores with AVX2 alone every option already opened with 25-28
#: tokens under load and still had gaps later in the paragraph (run-20261205-075449)
LEAN_IDLE_CAP = {**LEAN_FIRST, "primer_max_tokens_idle": 14, "primer_min_tokens_loaded": 16}
#: the idle-capped lean first piece made to outlast a busy machine: at least 36 tokens when
#: the stream opens loaded (idle it is :data:`LEAN_IDLE_CAP`'s 14). Beside one busy process
#: on 2 AMD EPYC cores (AVX2, int8) the stream runs near real time, and the first piece's
#: size trades the first audio against gaps: floors of 16, 28 and 36 tokens, 4 interleaved
#: rounds of the paragraph (and of opening-50's first audio), gave 2-3 / 0-4 / 0 underruns
#: per stream and 1.2-1.3x / 1.6-1.7x / 1.8-2.2x the phrase's first audio (a /tmp script
#: over labkit.measure.streaming.run_stream, 2026-12-05; stage 05's listener heard the
#: floor-16 option with gaps under load in two of run-20261205-075449's stage-05 runs, 4+2
#: and 1+0 underruns; a --only rerun overwrote the third's records). The listener rows hear
#: it after the options nearer their targets: it ships only where they leave gaps. All of
#: these ran with part B's intra-op threads spinning (ONNX Runtime's default); with them
#: sleeping (session.allow_spinning: false) the paragraph streamed beside one busy process
#: at RTF ~0.65-0.72, not ~0.9, and stage 05's listener heard the floor-16 option under
#: load with no gap in both of run-20261205-075449's reruns that day (2 rounds each)
LEAN_LOADED_36 = {**LEAN_IDLE_CAP, "primer_max_tokens": 36, "primer_min_tokens_loaded": 36}
#: the ways to make the first piece the sweep tries beside the configured one: the lean
#: first piece of 14 tokens while idle and at least 16 under load, the same with nothing
#: else started until the first chunk is out (``pipeline.first_alone``: it reorders the
#: work only), and the same with at least 36 under load. No longer swept, each option more
#: adding a call to every round of every text's comparison: the short first piece
#: (:data:`SHORT_FIRST`, the lean one's origin), whose first audio came later than the lean
#: one's on every opening length, idle and beside a busy process, and the lean one without
#: the idle cap (:data:`LEAN_FIRST`), whose first audio was never earlier than the capped
#: one's beyond the noise, in run-20261205-050619 (Intel Xeon, AVX-512 VNNI) and
#: run-20261205-075449 (AMD EPYC, AVX2; its stage 05 run twice that day)
TRIED = ((LEAN_IDLE_CAP, False), (LEAN_IDLE_CAP, True), (LEAN_LOADED_36, False))
#: the settings an option is made of (:func:`settings`)
SETTINGS = ("chunking.schedule", "chunking.primer_max_words", "chunking.primer_min_words",
            "chunking.primer_max_tokens", "chunking.primer_max_tokens_idle",
            "chunking.primer_min_tokens_loaded", "chunking.prosody",
            "chunking.opening", "chunking.opening_span_words", "chunking.opening_lookahead_words", "chunking.window_context_frames", "pipeline.first_alone")
#: the chunking defaults an option's label leaves unsaid (:func:`option_label`)
_DEFAULTS = ChunkingConfig()


def option_label(synth: StreamingSynthesizer) -> str:
    """How an option makes its first piece, in a few words: its prosody (with sentence
    prosody, its opening), its primer (words, and tokens where its cap is not the
    default's) and whether it goes first alone."""
    cc = synth.chunking_cfg
    how = f"opening={cc.opening}" if cc.prosody == "sentence" else f"prosody={cc.prosody}"
    if cc.prosody == "sentence":  # what differs from the defaults in the prefix and the windows
        prefix = (cc.opening_span_words, cc.opening_lookahead_words)
        if cc.opening == "prefix" and prefix != (_DEFAULTS.opening_span_words, _DEFAULTS.opening_lookahead_words):
            how += " {}+{} words".format(*prefix)
        if cc.window_context_frames != _DEFAULTS.window_context_frames:
            how += f",context={cc.window_context_frames} frames"
    cap = f" and {cc.primer_max_tokens} tokens" if cc.primer_max_tokens != _DEFAULTS.primer_max_tokens else ""
    held = [f"{cc.primer_max_tokens_idle} idle"] if cc.primer_max_tokens_idle else []
    held += [f">={cc.primer_min_tokens_loaded} loaded"] if cc.primer_min_tokens_loaded else []
    idle = f" ({', '.join(held)})" if held else ""
    return f"{how},primer<={cc.primer_max_words} words{cap}{idle}" + (
        ",first_alone" if synth.pipeline_cfg.first_alone else "")


def options(synth: StreamingSynthesizer, sentence_engine: Any = None) -> dict[str, StreamingSynthesizer]:
    """label -> synthesizer: the stage's choice as configured first, then the others of
    :data:`TRIED` on the same chunking otherwise, on its engine where it has sentence
    prosody, else on ``sentence_engine`` (the split engine of the same model; None: the
    configured option alone)."""
    out = {option_label(synth): synth}
    engine = synth.engine if synth.chunking_cfg.prosody == "sentence" else sentence_engine
    if engine is None:
        return out
    for chunking_changes, alone in TRIED:
        other = StreamingSynthesizer(
            engine, pipeline=dataclasses.replace(synth.pipeline_cfg, first_alone=alone),
            chunking_cfg=dataclasses.replace(synth.chunking_cfg, **chunking_changes))
        out.setdefault(option_label(other), other)
    return out


def settings(synth: StreamingSynthesizer) -> dict[str, Any]:
    """The LabConfig settings an option is made of (:data:`SETTINGS`)."""
    cfgs = {"chunking": synth.chunking_cfg, "pipeline": synth.pipeline_cfg}
    return {key: getattr(cfgs[key.split(".")[0]], key.split(".")[1]) for key in SETTINGS}


def first_audio_fresh(synth: StreamingSynthesizer, text: str, fresh_g2p: bool = True) -> dict[str, Any]:
    """One stream's first audio and first chunk (labkit.measure.streaming.first_chunk);
    ``fresh_g2p``: the G2P cache emptied first (untimed), so the text is phonemized as a
    new one is: the benchmark repeats a text, a listener does not."""
    if fresh_g2p:
        synth.g2p(normalize_lang(synth.cfg.lang, synth.cfg.voice)).cache_clear()
    return first_chunk(synth, text)


def cell(label: str, name: str) -> str:
    return f"{label} · {name}"


def sweep(synths: dict[str, StreamingSynthesizer], phrase: str, names: Sequence[str],
          rounds: int | None = None, load_processes: int = 1, fresh_g2p: bool = True) -> dict[str, Any]:
    """The first audio of each text in ``names`` through every option in ``synths`` (the
    first: the configured one, which also says the phrase) against the phrase's, idle and
    then beside ``load_processes`` busy processes (0: idle only; the phrase measured under
    the same load), each text with the phrase in rounds of its own (``comparisons``: one
    per "<load>, <text>"). Rows: one per (option, text, load), its first audio over the phrase's
    (> 1: later) with the 95 % interval, and over the configured option's on the same text
    from the same rounds (``vs_configured``: < 1 earlier)."""
    configured = next(iter(synths))
    plain = plain_twins(synths)
    loads = [0] + ([load_processes] if load_processes else [])
    rows, comparisons = [], {}
    for n in loads:
        where = "idle" if n == 0 else f"+{n} busy"
        progress.say(f"opening sweep, {where}: {len(names)} texts x {len(synths)} options, "
                     "each text against the phrase in its own rounds")
        with competing_load(n):
            for name in names:
                cmp = _text_vs_phrase(synths, configured, phrase, name, rounds, fresh_g2p)
                comparisons[f"{where}, {name}"] = cmp
                rows += _rows(cmp, synths, plain, name, n)
    return {"rows": rows, "comparisons": comparisons, "configured": configured}


def _text_vs_phrase(synths: dict[str, StreamingSynthesizer], configured: str, phrase: str,
                    name: str, rounds: int | None, fresh_g2p: bool) -> Comparison:
    """One text's first audio through every option against the phrase's, in interleaved
    rounds of their own: a comparison's rounds grow with its entries (whole Williams
    squares), so one per text costs a fraction of one over every (option, text) cell."""
    fns = {PHRASE: (lambda s=synths[configured]: first_audio_fresh(s, phrase, fresh_g2p))}
    for label, synth in synths.items():
        fns[cell(label, name)] = (lambda s=synth, t=texts.named(name): first_audio_fresh(s, t, fresh_g2p))
    return compare(fns, PHRASE, rounds=rounds, measure=lambda o: o["ttfa_s"],
                   keep=lambda o: {k: v for k, v in o.items() if k != "ttfa_s"}, criterion="ttfa_s")


def _rows(cmp: Comparison, synths: dict[str, StreamingSynthesizer], plain: dict[str, str],
          name: str, n: int) -> list[dict[str, Any]]:
    """The sweep's rows for one text under ``n`` busy processes, from its comparison."""
    rows = []
    mine = paired(cmp, [cell(label, name) for label in synths])
    for label in synths:
        key = cell(label, name)
        lo, hi = cmp.ci95(key)  # the phrase's time over the text's: inverted below
        kept = cmp.kept.get(key, [])
        vs = mine[key]
        if label in plain:  # the same option without first_alone, from the same rounds
            twin = paired(cmp, [cell(plain[label], name), key])[key]
            extra = {"plain": plain[label], "vs_plain": 1.0 / twin.ratio,
                     "vs_plain_ci95": [1.0 / twin.ci95[1], 1.0 / twin.ci95[0]]}
        else:
            extra = {}
        rows.append({**extra, "option": label, "text": name, "load_processes": n,
                     "opening_words": opening_words(texts.named(name)),
                     "phrase_s": cmp.median(PHRASE), "text_s": cmp.median(key),
                     "ratio": 1.0 / cmp.ratio(key), "ci95": [1.0 / hi, 1.0 / lo],
                     "vs_configured": 1.0 / vs.ratio,
                     "vs_configured_ci95": [1.0 / vs.ci95[1], 1.0 / vs.ci95[0]],
                     "first_tokens_each": [k.get("first_tokens") for k in kept],
                     "from_prefix_each": [k.get("from_prefix") for k in kept],
                     "opening_load_each": [k.get("opening_load") for k in kept]})
    return rows


def plain_twins(synths: dict[str, StreamingSynthesizer]) -> dict[str, str]:
    """label -> the label of the same option without ``pipeline.first_alone``, for each
    option that has it on and such a twin in ``synths``: first_alone only reorders the
    work, so it is judged against its twin (labkit.lab.opening_choice)."""
    made = {label: settings(s) for label, s in synths.items()}
    out = {}
    for label, mine in made.items():
        if mine["pipeline.first_alone"]:
            plain = {**mine, "pipeline.first_alone": False}
            out.update({label: other for other, theirs in made.items() if theirs == plain})
    return out


def paired(cmp: Comparison, keys: list[str]):
    """Each of ``keys`` against the first (the configured option on the same text, or an
    option's twin without first_alone), paired round by round in the rounds ``cmp`` ran
    (labkit.measure.compare.summarize: > 1 faster)."""
    return summarize({k: cmp.entries[k].samples for k in keys}, keys[0],
                     resamples=cmp.resamples, seed=cmp.seed)


def seam_reports(synths: dict[str, StreamingSynthesizer], names: Sequence[str]) -> dict[str, dict]:
    """label -> text -> the seams of that option's audio on that text against the unchunked
    audio (labkit.measure.seams.seam_report: the click detector's verdict), for every
    option whose audio differs (``pipeline.first_alone`` only reorders the work: it shares
    its opening's report)."""
    out: dict[str, dict] = {}
    by_chunking: dict[tuple, dict] = {}
    unchunked: dict[tuple, Any] = {}

    def ref(synth: StreamingSynthesizer, name: str):  # one unchunked take per engine and text
        key = (id(synth.engine), name)
        if key not in unchunked:
            unchunked[key] = seams.unchunked(synth.engine, synth.chunking_cfg, texts.named(name))
        return unchunked[key]

    for label, synth in synths.items():
        key = (id(synth.engine), dataclasses.astuple(synth.chunking_cfg))
        if key not in by_chunking:
            by_chunking[key] = {name: seams.seam_report(synth.engine, synth.chunking_cfg,
                                                        texts.named(name), reference=ref(synth, name))
                                for name in names}
        out[label] = by_chunking[key]
    return out


def opening_words(text: str) -> int:
    """Words in the text's first sentence, as the chunker counts them."""
    spans = sentences_of(words_of(text))
    return spans[0][1] - spans[0][0] if spans else 0
