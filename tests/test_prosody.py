"""Sentence prosody (labkit.engine.prosody): pieces vocoded from part A over their sentence.

The window arithmetic and the cut placement are checked on made-up durations; the
phase continuation, the tiling of a sentence's frames and a whole stream on the real int8
model's split (durations output included)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labkit.config import ConfigError
from labkit.engine import chunking, joining
from labkit.engine import prosody as pr
from labkit.engine import split_runtime as sr
from labkit.engine.phonemized import clean_phonemes, tokenize
from labkit.engine.piece_cache import PieceCache
from labkit.engine.sessions import new_session, style_row
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.optimize import split as sp
from labkit.measure import texts

SPF = 600
TEXT = ("At the edge of the harbor, the old ferry still leaves at seven every morning, "
        "whatever the weather. The trip takes forty minutes.")


# -- the arithmetic ------------------------------------------------------------------------
def test_a_cut_keeps_half_a_crossfade_past_it_on_both_sides():
    first = pr.window(0, 30, 100, context_frames=8, half_fade=120)
    second = pr.window(30, 100, 100, context_frames=8, half_fade=120)
    assert (first.lo, first.hi, first.seamless_start, first.seamless_end) == (0, 38, False, True)
    assert first.keep == (0, 30 * SPF + 120)
    assert (second.lo, second.hi, second.seamless_start, second.seamless_end) == (22, 100, True, False)
    assert second.keep == (8 * SPF - 120, 78 * SPF)
    # in sentence samples the two kept ranges overlap by exactly one crossfade at the cut
    end_first = first.lo * SPF + first.keep[1]
    start_second = second.lo * SPF + second.keep[0]
    assert (start_second, end_first) == (30 * SPF - 120, 30 * SPF + 120)


def test_a_whole_context_is_one_window_and_an_empty_range_none():
    w = pr.window(0, 50, 50, context_frames=8, half_fade=120)
    assert (w.lo, w.hi, w.keep, w.seamless_start, w.seamless_end) == (0, 50, (0, 50 * SPF), False, False)
    assert pr.window(20, 20, 50, 8, 120) is None
    assert pr.window(40, 60, 50, 8, 120) is None


def test_the_overlap_never_reaches_past_the_frames_vocoded():
    w = pr.window(10, 20, 40, context_frames=0, half_fade=120)
    assert w.keep == (0, 10 * SPF) and (w.lo, w.hi) == (10, 20)
    w = pr.window(1, 20, 40, context_frames=8, half_fade=120)
    assert w.lo == 0 and w.keep[0] == SPF - 120  # the context is clipped at frame 0


def test_a_cut_falls_where_the_next_spoken_word_starts():
    text = "one two, three"
    spans = [("one", 0, 3), ("two", 4, 7), ("three", 9, 14)]  # "wˈʌn tˈu, θɹˈi"-like
    d = np.array([2] + [1] * 14 + [3])  # leading pad 2 frames, 1 a token, trailing pad
    starts = pr.frame_starts(d)
    offsets = [text.index(w) for w, _, _ in spans]  # where each word starts (the G2P's chars)
    assert offsets == [0, 4, 9]
    assert pr.cut_frame(4, offsets, spans, starts) == 2 + 4  # "two" starts after 4 tokens
    assert pr.cut_frame(8, offsets, spans, starts) == 2 + 9  # the comma stays before the cut
    assert pr.cut_frame(14, offsets, spans, starts) is None  # nothing follows


def test_pieces_carry_the_sentence_they_lie_in(g2p_us):
    cfg = dataclasses.replace(chunking.ChunkingConfig(), strategy="clause", min_tokens=0)
    pieces = chunking.split(TEXT, g2p_us, cfg)
    first_sentence = (0, TEXT.index("weather.") + len("weather."))
    assert [p.context for p in pieces[:3]] == [first_sentence] * 3
    assert not any(p.whole for p in pieces[:3])
    last = pieces[-1]
    assert last.whole and last.context == (last.start, last.end)
    long_word = chunking.split("x" + "7" * 400, g2p_us, chunking.ChunkingConfig())
    assert long_word[0].boundary == "split-word" and long_word[0].context is None and long_word[0].whole


def test_seamless_edges_are_not_trimmed_and_add_no_pause():
    cfg = chunking.ChunkingConfig()
    audio = np.concatenate([np.zeros(2400, np.float32), np.ones(4800, np.float32) * 0.3,
                            np.zeros(2400, np.float32)])
    assert joining.kept_bounds(audio, cfg) != (0, len(audio))
    assert joining.kept_bounds(audio, cfg, True, True) == (0, len(audio))
    assert joining.joined_boundary("clause", seamless_end=True) == "word"
    assert joining.joined_boundary("clause", seamless_end=False) == "clause"
    plain = joining.playable_seconds(audio, "clause", cfg)
    seamless = joining.playable_seconds(audio, "clause", cfg, True, True)
    assert seamless == pytest.approx(len(audio) / 24000)
    assert plain < len(audio) / 24000 + cfg.clause_pause_ms / 1000


# -- the real model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split_engine(cfg, split_parts, engine):
    """The split engine on the int8 model with its durations output (the provisioned
    copy's split, from the split cache), exact lengths."""
    eng = sr.SplitEngine(cfg, split_parts, voices=engine.voices, buckets=[])
    eng.warm_up(repeats=1)
    return eng


def _prosody(eng, g2p, text):
    tokens = tokenize(clean_phonemes(g2p(text).phonemes)[0])
    return eng.prosody(tokens, eng.cfg.voice)


def test_the_window_source_continues_the_whole_runs_phase(split_engine, g2p_us):
    p = _prosody(split_engine, g2p_us, TEXT)
    assert p.phase is not None and p.durations is not None
    steps = p.phase.shape[p.phase_axis] // p.frames
    start = p.frames // 3
    f0_name = split_engine.parts.meta["phase_of"]
    f0 = p.boundary[f0_name]
    r = f0.shape[-1] // p.frames
    phase_model = split_engine._window_sessions()[1]
    alone = phase_model.run(None, {f0_name: np.ascontiguousarray(f0[..., start * r:])})[0]
    before = np.take(p.phase, [start * steps - 1], axis=p.phase_axis)
    whole_after = np.take(p.phase, range(start * steps, p.phase.shape[p.phase_axis]), axis=p.phase_axis)
    np.testing.assert_allclose(alone + before, whole_after, rtol=1e-4, atol=1e-2)
    assert not np.allclose(alone, whole_after, atol=1e-2)  # without phase0 it would not continue


def test_the_whole_window_is_the_plain_split_audio(split_engine, g2p_us):
    p = _prosody(split_engine, g2p_us, "The trip takes forty minutes.")
    audio, _ = split_engine.vocode(p, 0, p.frames)
    tokens = tokenize(clean_phonemes(g2p_us("The trip takes forty minutes.").phonemes)[0])
    plain = split_engine.run_tokens(tokens, split_engine.cfg.voice)
    np.testing.assert_array_equal(audio, plain.audio)
    # and part B as the split cut it (no phase0 input) gives the same audio, bit for bit
    b = new_session(split_engine.parts.b, split_engine.b_config)
    unphased = b.run(None, {**p.boundary, **p.extra})[0]
    np.testing.assert_array_equal(audio, np.asarray(unphased, np.float32).ravel())
    with pytest.raises(ValueError, match="outside"):
        split_engine.vocode(p, 0, p.frames + 1)


def test_the_pieces_of_a_sentence_tile_its_frames(split_engine, g2p_us):
    cfg = dataclasses.replace(split_engine.cfg.chunking, strategy="clause", min_tokens=0, prosody="sentence")
    pieces = chunking.split(TEXT, g2p_us, cfg)
    windows = pr.SentenceWindows(split_engine, g2p_us, TEXT, split_engine.cfg.voice, 1.0,
                                 cfg.window_context_frames, cfg.crossfade_ms)
    made = [windows.synthesize(p) for p in pieces]
    inside = [m for m, p in zip(made, pieces) if not p.whole]
    assert len(inside) == 3 and all(m is not None for m in inside) and windows.fallbacks == []
    assert made[-1] is None  # a whole sentence is synthesized as before
    spans = [(m.window.start, m.window.end) for m in inside]
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    frames = _prosody(split_engine, g2p_us, TEXT[:pieces[2].end]).frames
    assert spans[-1][1] == frames  # every frame once: no word lost or said twice
    assert [m.seamless_start for m in inside] == [False, True, True]
    assert [m.seamless_end for m in inside] == [True, True, False]
    words = [w for m in inside for w, _, _ in m.words]
    assert words == [w.strip(",.") for p in pieces[:3] for w in p.text.split()]
    for m in inside:
        assert all(0 <= s <= e <= len(m.audio) for _, s, e in m.words)


def test_a_stream_with_sentence_prosody_says_every_word(split_engine):
    cc = dataclasses.replace(split_engine.cfg.chunking, strategy="clause", min_tokens=0, prosody="sentence")
    synth = StreamingSynthesizer(split_engine, chunking_cfg=cc)
    stream = synth.open_stream(TEXT)
    with stream:
        chunks = list(stream)
    assert stream.windows.windowed == 3 and stream.windows.fallbacks == []
    heard = [w.word for c in chunks for w in c.words]
    assert heard == [w.strip(",.") for w in TEXT.split()]
    # no pause is inserted at the cuts inside the sentence: the model's own is in the frames
    assert [c.pause_s for c in chunks] == [0.0, 0.0, cc.sentence_pause_ms / 1000, 0.0]
    assert all(np.isfinite(c.audio).all() and len(c.audio) for c in chunks)


@pytest.mark.model
def test_a_fresh_cache_splits_the_model_with_its_durations_so_pieces_are_windowed(cfg, tmp_path):
    # a fresh artifacts_dir (`labkit journal -s artifacts_dir=...`, a new machine's serve)
    # has no durations copy yet: a split of the model as released gave part A no frame
    # counts, and every window of a sentence-prosody stream fell back to a run of its own
    fresh = cfg.with_overrides({"artifacts_dir": str(tmp_path), "chunking.prosody": "sentence"})
    parts = sp.ensure_for(fresh)
    assert "durations" in parts.meta["a_outputs"] and (tmp_path / "cache" / "durations").is_dir()
    engine = sr.SplitEngine(fresh, parts, buckets=[])
    cc = dataclasses.replace(fresh.chunking, strategy="clause", min_tokens=0)
    stream = StreamingSynthesizer(engine, chunking_cfg=cc).open_stream(TEXT)
    with stream:
        list(stream)
    assert stream.windows.windowed == 3 and stream.windows.fallbacks == []


def test_a_repeated_windowed_piece_comes_from_the_piece_cache(split_engine, monkeypatch):
    """With sentence prosody the cache covers every way a piece is made: the windows
    (part B over a range of the sentence's frames) as well as a whole sentence's run."""
    cc = dataclasses.replace(split_engine.cfg.chunking, strategy="clause", min_tokens=0, prosody="sentence")
    plain = [c.audio for c in StreamingSynthesizer(split_engine, chunking_cfg=cc).stream(TEXT)]
    cache = PieceCache()
    synth = StreamingSynthesizer(split_engine, chunking_cfg=cc, piece_cache=cache)
    first = [c.audio for c in synth.stream(TEXT)]
    assert (cache.hits, cache.misses, len(cache)) == (0, 4, 4)  # three windows, one whole sentence
    runs = []
    vocode, run_tokens = split_engine.vocode, split_engine.run_tokens
    monkeypatch.setattr(split_engine, "vocode", lambda *a, **k: runs.append("B") or vocode(*a, **k))
    monkeypatch.setattr(split_engine, "run_tokens", lambda *a, **k: runs.append("AB") or run_tokens(*a, **k))
    stream = synth.open_stream(TEXT)
    with stream:
        again = [c.audio for c in stream]
    assert stream.windows.windowed == 3 and runs == []  # no part B ran: every piece a hit
    assert (cache.hits, cache.misses) == (4, 4)
    assert len(again) == len(first) == len(plain) == 4
    for a, b, c in zip(plain, first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_sentence_prosody_needs_the_split_engine_on_one_session(engine, split_engine):
    cc = dataclasses.replace(engine.cfg.chunking, prosody="sentence")
    with pytest.raises(ConfigError, match="split engine"):
        StreamingSynthesizer(engine, chunking_cfg=cc)
    with pytest.raises(ConfigError, match="pipeline.sessions: 1"):
        StreamingSynthesizer(split_engine, [split_engine, split_engine], chunking_cfg=cc)
    with pytest.raises(chunking.ChunkingError, match="prosody"):
        chunking.validate(dataclasses.replace(cc, prosody="utterance"))


def test_the_endpoint_streams_sentence_prosody_with_every_word(cfg, split_parts, served):
    # what best.json ships when stage 05 picks sentence prosody, over real HTTP
    import base64
    import json

    import httpx

    over = {"chunking.prosody": "sentence", "chunking.schedule": "adaptive",
            "chunking.primer_max_words": 5}
    assert sp.ensure_for(cfg.with_overrides(over)) == split_parts  # what `labkit serve` builds: the same parts
    server = served(*[f"{k}={v}" for k, v in over.items()])
    assert httpx.get(server.url + "/health").json()["engine"] == "SplitEngine"
    r = httpx.post(server.url + "/v1/audio/speech", timeout=300, json={
        "model": "kokoro", "input": TEXT, "voice": "af_heart", "response_format": "pcm",
        "stream_format": "sse", "timestamp_granularities": ["word"]})
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    words = [e["word"] for e in events if e["type"] == "speech.word"]
    assert words == [w.strip(",.") for w in TEXT.split()]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert events[-1]["type"] == "speech.audio.done"
    assert len(pcm) / 2 / 24000 == pytest.approx(events[-1]["audio_seconds"], abs=0.01)


# -- the opening: the first piece from part A over a prefix (issue #32) --------------------
def test_the_opening_prefix_runs_lookahead_words_past_the_piece():
    text = "One two three four five six seven."
    at = text.index(" four")  # the first piece is "One two three"
    assert text[:pr.prefix_end(text, at, len(text), 2)] == "One two three four five"
    assert text[:pr.prefix_end(text, at, len(text), 3)] == "One two three four five six"
    # the sentence ends within the lookahead: its own part A costs no more, no prefix
    assert pr.prefix_end(text, at, len(text), 4) is None
    assert pr.prefix_end(text, at, len(text), 9) is None
    with pytest.raises(ValueError, match=">= 1"):
        pr.prefix_end(text, at, len(text), 0)


def test_a_prefix_is_voiced_with_the_style_row_of_its_whole_sentence():
    # 20 tokens over 40 characters of a 200-character sentence: voiced as ~100 tokens
    assert pr.style_length(20, (0, 40), (0, 200)) == 100
    assert pr.style_length(20, (10, 50), (10, 50)) == 20
    assert pr.style_length(300, (0, 100), (0, 1000)) == 510  # the voice pack's last row
    assert pr.style_length(0, (0, 10), (0, 10)) == 1


@pytest.mark.parametrize("change, match", [({"opening": "utterance"}, "chunking.opening"),
                                           ({"opening_lookahead_words": 0}, "opening_lookahead_words"),
                                           ({"opening_lookahead_words": True}, "opening_lookahead_words"),
                                           ({"opening_lookahead_words": 2.5}, "opening_lookahead_words"),
                                           ({"opening_span_words": -1}, "opening_span_words"),
                                           ({"opening_span_words": 1.5}, "opening_span_words")])
def test_opening_settings_out_of_range_are_refused(change, match):
    with pytest.raises(chunking.ChunkingError, match=match):
        chunking.validate(dataclasses.replace(chunking.ChunkingConfig(), **change))
    with pytest.raises(ValueError, match=">= 1"):
        pr.SentenceWindows(None, None, "", "af_heart", 1.0, 8, 10.0, opening_lookahead=0)


LONG_OPENING = texts.OPENINGS[30]


def _opening_cfg(split_engine, opening):
    # the ramp: pieces that do not depend on the load another process puts on this machine
    return dataclasses.replace(split_engine.cfg.chunking, prosody="sentence", schedule="ramp",
                               primer_max_words=5, opening=opening, opening_lookahead_words=4)


@pytest.mark.model
def test_prosody_voices_a_prefix_with_the_style_row_it_is_given(split_engine, g2p_us):
    tokens = tokenize(clean_phonemes(g2p_us("The trip takes forty minutes.").phonemes)[0])
    pack = split_engine.voices.pack(split_engine.cfg.voice)
    own = split_engine.prosody(tokens, split_engine.cfg.voice)
    np.testing.assert_array_equal(own.extra["style"], style_row(pack, len(tokens)))
    longer = split_engine.prosody(tokens, split_engine.cfg.voice, style_tokens=120)
    np.testing.assert_array_equal(longer.extra["style"], style_row(pack, 120))
    assert longer.frames > 0 and not np.array_equal(own.extra["style"], longer.extra["style"])
    with pytest.raises(ValueError, match="style_tokens"):
        split_engine.prosody(tokens, split_engine.cfg.voice, style_tokens=0)


@pytest.mark.model
def test_the_first_piece_comes_from_a_prefix_and_the_rest_continues_its_phase(split_engine, g2p_us):
    cc = _opening_cfg(split_engine, "prefix")
    pieces = chunking.split(LONG_OPENING, g2p_us, cc)
    first, second = pieces[0], pieces[1]
    sentence = first.context
    assert not first.whole and second.context[0] == sentence[0]
    windows = pr.SentenceWindows(split_engine, g2p_us, LONG_OPENING, split_engine.cfg.voice, 1.0,
                                 cc.window_context_frames, cc.crossfade_ms, cc.opening_lookahead_words)
    a = windows.synthesize(first)
    # part A ran over the piece and four words more, not over the 30-word sentence
    assert windows.opening == (sentence[0], pr.prefix_end(LONG_OPENING, first.end, sentence[1], 4))
    assert windows.opening[1] < sentence[1]
    assert a.seamless_end and not a.seamless_start and windows._contexts == {}
    assert [w for w, _, _ in a.words] == [w.strip(",.") for w in first.text.split()]
    b = windows.synthesize(second)
    assert b.seamless_start and windows.fallbacks == []
    # the sentence's own part A, its source shifted to continue the first piece's phase at the cut
    ctx = windows._contexts[second.context]
    p = ctx.prosody
    steps = p.phase.shape[p.phase_axis] // p.frames
    cut = b.window.start
    carried = windows._carry[sentence[0]][1]
    np.testing.assert_allclose(np.take(p.phase, [cut * steps - 1], axis=p.phase_axis), carried,
                               rtol=1e-5, atol=1e-3)


@pytest.mark.model
@pytest.mark.parametrize("opening", ["prefix", "sentence"])
def test_a_long_opening_sentence_streams_every_word_once_in_order(split_engine, opening):
    synth = StreamingSynthesizer(split_engine, chunking_cfg=_opening_cfg(split_engine, opening))
    stream = synth.open_stream(LONG_OPENING)
    with stream:
        chunks = list(stream)
    assert (stream.windows.opening is not None) == (opening == "prefix")
    assert stream.windows.fallbacks == [] and len(chunks) > 2
    heard = [w.word for c in chunks for w in c.words]
    assert heard == [w.strip(",.") for w in LONG_OPENING.split()]
    assert chunks[0].pause_s == 0.0  # the first piece runs on into the rest of its sentence
    assert all(np.isfinite(c.audio).all() and len(c.audio) for c in chunks)


@pytest.mark.model
def test_the_piece_cache_keeps_an_opening_prefix_apart_from_a_plain_sentence(split_engine, g2p_us):
    """A window of an opening prefix (its own style row) or of a sentence whose phase was
    carried from it is keyed apart from a plain context's: a repeat is served from the
    cache, but a stream that opens without a prefix never gets the shaped audio."""
    cache = PieceCache()
    prefix = StreamingSynthesizer(split_engine, chunking_cfg=_opening_cfg(split_engine, "prefix"),
                                  piece_cache=cache)
    first = [c.audio for c in prefix.stream(LONG_OPENING)]
    made = cache.misses
    again = [c.audio for c in prefix.stream(LONG_OPENING)]
    assert cache.misses == made and cache.hits >= len(first) - 1
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    cc = _opening_cfg(split_engine, "sentence")
    fresh = [c.audio for c in StreamingSynthesizer(split_engine, chunking_cfg=cc).stream(LONG_OPENING)]
    shared = StreamingSynthesizer(split_engine, chunking_cfg=cc, piece_cache=cache)
    misses = cache.misses
    served = [c.audio for c in shared.stream(LONG_OPENING)]
    pieces = chunking.split(LONG_OPENING, g2p_us, cc)
    opening_sentence = [p for p in pieces if p.context == pieces[0].context]
    # the opening sentence's windows are made afresh (their keys say prefix or carried
    # phase in the first stream, plain here); what follows it may come from the cache
    assert len(opening_sentence) >= 2 and cache.misses - misses >= len(opening_sentence)
    assert len(served) == len(fresh)
    for a, b in zip(fresh, served):  # the plain stream's audio, bit for bit
        np.testing.assert_array_equal(a, b)


@pytest.mark.model
def test_the_pieces_after_the_first_come_from_the_prefix_within_its_span(split_engine, g2p_us):
    """``opening_span_words``: the pieces after the first do not wait for part A over the
    30-word sentence either while they end within the span; they are vocoded from the
    prefix (the first piece, eight words and four of lookahead), and the sentence's own
    part A, run for the first piece past the span, continues the phase where the last
    prefix-made piece ended."""
    cc = dataclasses.replace(_opening_cfg(split_engine, "prefix"), primer_max_words=3,
                             primer_min_words=1)
    pieces = chunking.split(LONG_OPENING, g2p_us, cc, budget=lambda h, a: 12)
    first, sentence = pieces[0], pieces[0].context
    until = pr.prefix_end(LONG_OPENING, first.end, sentence[1], 8)
    inside = [p for p in pieces[1:] if p.end <= until]
    after = pieces[1 + len(inside)]
    assert inside and after.context == sentence and after.end < sentence[1]
    windows = pr.SentenceWindows(split_engine, g2p_us, LONG_OPENING, split_engine.cfg.voice, 1.0,
                                 cc.window_context_frames, cc.crossfade_ms, 4, opening_span=8)
    made = [windows.synthesize(first)]
    assert windows.opening == (sentence[0], pr.prefix_end(LONG_OPENING, first.end, sentence[1], 12))
    made += [windows.synthesize(p) for p in inside]
    assert windows.from_prefix == len(inside) and windows._contexts == {}  # no part A over the sentence yet
    assert made[0].part_a_s > 0 and all(m.part_a_s == 0.0 and m.seamless_start for m in made[1:])
    assert windows._carry[sentence[0]][0] == inside[-1].end
    made.append(windows.synthesize(after))
    assert made[-1].part_a_s > 0 and windows.from_prefix == len(inside) and windows.fallbacks == []
    p = windows._contexts[sentence].prosody
    steps = p.phase.shape[p.phase_axis] // p.frames
    np.testing.assert_allclose(np.take(p.phase, [made[-1].window.start * steps - 1], axis=p.phase_axis),
                               windows._carry[sentence[0]][1], rtol=1e-5, atol=1e-3)
    heard = [w for m in made for w, _, _ in m.words]
    assert heard == [w.strip(",.") for w in " ".join(x.text for x in [first, *inside, after]).split()]
    with pytest.raises(ValueError, match=">= 0"):
        pr.SentenceWindows(None, None, "", "af_heart", 1.0, 8, 10.0, 4, opening_span=-1)


@pytest.mark.model
def test_an_adaptive_sentence_prosody_stream_is_sized_and_taught_by_its_windows(split_engine):
    """With sentence prosody the adaptive schedule sizes pieces by the window model
    (labkit.engine.schedule.SpeedModel.windowed) and every windowed piece teaches it; the
    whole-run model learns only from pieces run whole."""
    cc = dataclasses.replace(split_engine.cfg.chunking, prosody="sentence", schedule="adaptive",
                             primer_max_words=3, primer_min_words=1, opening="prefix")
    synth = StreamingSynthesizer(split_engine, chunking_cfg=cc)
    stream = synth.open_stream(LONG_OPENING)
    with stream:
        chunks = list(stream)
    assert stream.schedule.sizing is not None and stream.schedule.sizing == synth.window_models
    assert synth.window_models[0].pieces == stream.windows.windowed >= 2
    assert synth.speed_models[0].pieces == len([c for c in chunks if c.tokens]) - stream.windows.windowed
    assert stream.windows.opening is not None
    assert [w.word for c in chunks for w in c.words] == [w.strip(",.") for w in LONG_OPENING.split()]
