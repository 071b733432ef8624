"""Joining: trimming, pauses by punctuation, equal-power crossfades, no clicks."""
from __future__ import annotations

import numpy as np
import pytest

from labkit.engine import joining
from labkit.config import ChunkingConfig
from labkit.engine.joining import Joiner, continuity, crossfade, join, trim_bounds
from labkit.kokoro import SAMPLE_RATE

MS = SAMPLE_RATE // 1000


def tone(seconds: float, freq: float = 220.0, phase: float = 0.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def padded(x: np.ndarray, lead_s: float = 0.2, tail_s: float = 0.3) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead_s * SAMPLE_RATE), np.float32), x,
                           np.zeros(int(tail_s * SAMPLE_RATE), np.float32)])


def test_trim_removes_silence_and_keeps_a_margin():
    x = padded(tone(0.5))
    start, end = trim_bounds(x, top_db=40, keep_ms=15)
    assert abs(start - (int(0.2 * SAMPLE_RATE) - 15 * MS)) <= 5 * MS
    assert abs(end - (int(0.7 * SAMPLE_RATE) + 15 * MS)) <= 5 * MS


def test_trim_of_silence_is_empty():
    assert trim_bounds(np.zeros(4800, np.float32)) == (0, 0)


@pytest.mark.parametrize("boundary,ms", [("sentence", 250), ("clause", 100), ("paragraph", 600)])
def test_pause_sized_by_punctuation(boundary, ms):
    cfg = ChunkingConfig()
    a, b = padded(tone(0.3)), padded(tone(0.3))
    out, seams = join([(a, boundary), (b, "sentence")], cfg)
    assert seams[0].kind == "pause" and seams[0].pause_s == pytest.approx(ms / 1000)
    trimmed = len(joining.trim(a, cfg.trim_top_db, cfg.trim_keep_ms))
    gap = out[trimmed:trimmed + int(ms * MS)]
    assert np.all(gap == 0)
    assert joining.pause_seconds("paragraph", cfg) > joining.pause_seconds("sentence", cfg) \
        > joining.pause_seconds("clause", cfg) > joining.pause_seconds("word", cfg) == 0


def test_mid_sentence_join_crossfades_without_pause():
    cfg = ChunkingConfig(crossfade_ms=10)
    a, b = padded(tone(0.3)), padded(tone(0.3, phase=1.0))
    ta = len(joining.trim(a, cfg.trim_top_db, cfg.trim_keep_ms))
    tb = len(joining.trim(b, cfg.trim_top_db, cfg.trim_keep_ms))
    out, seams = join([(a, "word"), (b, "sentence")], cfg)
    assert seams[0].kind == "crossfade"
    assert len(out) == ta + tb - 10 * MS  # the overlap is shared, nothing added


def test_equal_power_curves():
    n = 240
    tail, head = np.ones(n, np.float32), np.zeros(n, np.float32)
    down = crossfade(tail, head)
    up = crossfade(head, tail)
    np.testing.assert_allclose(down ** 2 + up ** 2, 1.0, atol=1e-5)
    # uncorrelated signals keep their power through the overlap
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(48000).astype(np.float32), rng.standard_normal(48000).astype(np.float32)
    assert np.mean(crossfade(x, y) ** 2) == pytest.approx(1.0, rel=0.05)


def test_streaming_joiner_matches_join():
    cfg = ChunkingConfig()
    parts = [(padded(tone(0.2, 200 + 50 * k)), b) for k, b in
             enumerate(["clause", "word", "sentence", "word", "paragraph"])]
    whole, _ = join(parts, cfg)
    joiner = Joiner(cfg)
    streamed = np.concatenate([joiner.push(a, b, i == len(parts) - 1) for i, (a, b) in enumerate(parts)])
    np.testing.assert_array_equal(whole, streamed)


def test_continuity_flags_a_step_and_passes_smooth_joins():
    x = tone(0.2)
    step = np.concatenate([x[:2400], x[2400:] + 0.5])
    assert continuity(step, [2400])[0].ratio > 5
    # two tones cut mid-cycle: naive concatenation clicks, the joiner's crossfade does not
    cfg = ChunkingConfig(trim_silence=False, crossfade_ms=10)
    a, b = tone(0.2, 220, 0.0)[:-37], tone(0.2, 220, 2.0)
    naive = np.concatenate([a, b])
    assert continuity(naive, [len(a)])[0].ratio > 2
    out, seams = join([(a, "word"), (b, "sentence")], cfg)
    assert all(c.ratio < 1.5 for c in continuity(out, seams, crossfade_ms=cfg.crossfade_ms))
    assert continuity(out, seams)[0].window == (seams[0].position, seams[0].position + 240)


def test_continuity_sees_a_click_where_the_pause_begins():
    """A piece cut off at full swing before its pause: the seam's position (the next
    piece's fade-in, out of silence) looks smooth; the pause's window holds the click."""
    a = tone(0.2)[:2437]                         # ends mid-cycle, no fade-out
    pause = np.zeros(int(0.1 * SAMPLE_RATE), np.float32)
    b = joining.fade(tone(0.2), fade_in=True)
    x = np.concatenate([a, pause, b])
    seam = joining.Seam(len(a) + len(pause), "pause", 0.1, 1)
    assert continuity(x, [seam.position])[0].ratio < 2       # the old blind spot
    check = continuity(x, [seam])[0]
    assert check.ratio > 5 and check.window[0] < len(a) < check.window[1]
    # the joiner's own pause fades out first: no click
    out, seams = join([(tone(0.2)[:2437], "sentence"), (tone(0.2), "sentence")],
                      ChunkingConfig(trim_silence=False))
    assert seams[0].kind == "pause" and continuity(out, seams)[0].ratio < 2


def test_real_pieces_join_without_clicks(engine, g2p_us):
    cfg = ChunkingConfig()
    parts = [(engine.synthesize_phonemes(g2p_us(t).phonemes).audio, b)
             for t, b in [("The old ferry", "word"), ("leaves at seven,", "clause"), ("every day.", "sentence")]]
    out, seams = join(parts, cfg)
    checks = continuity(out, seams, crossfade_ms=cfg.crossfade_ms)
    assert len(checks) == 2
    assert all(c.ratio < 2.0 for c in checks), [(c.jump, c.local) for c in checks]


def test_silence_runs_find_pauses():
    x = np.concatenate([tone(0.3), np.zeros(int(0.25 * SAMPLE_RATE), np.float32), tone(0.3)])
    runs = joining.silence_runs(x)
    assert len(runs) == 1 and runs[0][1] == pytest.approx(0.25, abs=0.01)


def test_playable_seconds_counts_the_audible_part_and_the_pause():
    sr = joining.SAMPLE_RATE
    tone = (0.3 * np.sin(np.arange(sr) * 0.05)).astype(np.float32)
    audio = np.concatenate([np.zeros(sr // 5, np.float32), tone, np.zeros(sr // 5, np.float32)])
    cfg = ChunkingConfig()
    played = joining.playable_seconds(audio, "sentence", cfg)
    # the 0.2 s edges of silence are trimmed to keep_ms; the sentence pause is added
    assert played == pytest.approx(1.0 + 2 * cfg.trim_keep_ms / 1000 + cfg.sentence_pause_ms / 1000,
                                   abs=0.006)
    untrimmed = joining.playable_seconds(audio, "word", ChunkingConfig(trim_silence=False))
    assert untrimmed == pytest.approx(1.4)
