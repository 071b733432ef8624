"""Words checked in the audio: labkit.measure.coverage, `labkit say --words`, `labkit verify`."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from labkit.config import REPO_ROOT
from labkit.measure import coverage
from labkit.measure.coverage import WordsFileError

SR = 24_000
LABKIT = [sys.executable, "-m", "labkit.cli"]


def _bursts():
    """Three 'words' (tone bursts) with quiet gaps, and their spans."""
    t = np.arange(int(0.3 * SR)) / SR
    word = 0.3 * np.sin(2 * np.pi * 220 * t)
    gap = 1e-4 * np.random.default_rng(0).standard_normal(int(0.2 * SR))
    audio = np.concatenate([gap, word, gap, word, gap, word, gap])
    spans = [{"word": w, "start": 0.2 + 0.5 * k, "end": 0.5 + 0.5 * k}
             for k, w in enumerate(["one", "two", "three"])]
    return audio, spans


def test_every_word_heard_passes_and_a_silenced_one_is_named():
    audio, spans = _bursts()
    assert coverage.check(audio, SR, spans).ok
    bad = audio.copy()
    bad[int(0.7 * SR):int(1.0 * SR)] = 0.0  # "two"
    rep = coverage.check(bad, SR, spans)
    assert not rep.ok and [w.word for w in rep.failed] == ["two"]
    assert "'two'" in rep.summary() and "silent" in rep.summary()
    quiet = audio.copy()
    quiet[int(0.7 * SR):int(1.0 * SR)] *= 1e-4  # 80 dB down: near the floor, not above it
    assert [w.word for w in coverage.check(quiet, SR, spans).failed] == ["two"]


def test_empty_audio_spans_and_lists_fail():
    audio, spans = _bursts()
    rep = coverage.check(np.zeros(0), SR, spans)
    assert not rep.ok and len(rep.failed) == 3 and "outside the audio" in rep.failed[0].reason
    rep = coverage.check(audio, SR, [{"word": "x", "start": 0.3, "end": 0.3}])
    assert rep.failed[0].reason == "empty span"
    rep = coverage.check(audio, SR, [{"word": "late", "start": 9.0, "end": 9.5}])
    assert "outside the audio" in rep.failed[0].reason
    rep = coverage.check(audio, SR, [])
    assert not rep.ok and "empty" in rep.summary()


@pytest.mark.parametrize("bad, match", [
    ({"word": "a"}, "expected a JSON list"),
    ([{"word": "a", "start": 0.1}], "word, start and end"),
    ([{"word": "a", "start": "0", "end": 1}], "numbers of seconds"),
    ([{"word": "a", "start": 0.5, "end": 0.2}], "start <= end"),
])
def test_malformed_words_are_refused(bad, match):
    with pytest.raises(WordsFileError, match=match):
        coverage.parse_words(bad)


def test_skipped_entries_are_left_out_of_the_check():
    """labkit say --words writes what the clean-up left out beside the words: not audio."""
    words = coverage.parse_words([{"word": "a", "start": 0.1, "end": 0.2, "input_start": 0, "input_end": 1},
                                  {"skipped": "emoji dropped", "text": "🎉", "input_start": 2,
                                   "input_end": 3}])
    assert words == [{"word": "a", "start": 0.1, "end": 0.2}]


# -- with the model ----------------------------------------------------------------------------
TEXT = "The kettle is on, and the biscuits are in the blue tin."


@pytest.mark.model
def test_real_synthesis_passes_and_a_zeroed_word_fails(cfg, timed_engine):
    from labkit.lab.speak import say

    audio, words = say(cfg, TEXT, engine=timed_engine)
    assert [w["word"] for w in words] == [w.strip(",.") for w in TEXT.split()]
    rep = coverage.check(audio, SR, words)
    assert rep.ok, rep.summary()
    target = words[6]  # "biscuits"
    silenced = audio.copy()
    silenced[int(target["start"] * SR):int(np.ceil(target["end"] * SR))] = 0.0
    rep = coverage.check(silenced, SR, words)
    assert [w.word for w in rep.failed] == ["biscuits"]


class _Mute:
    """An engine that returns zero samples (with the real engine's durations)."""

    def __init__(self, real):
        self.real, self.cfg, self.voices = real, real.cfg, real.voices
        self.durations_index, self.model_path = real.durations_index, real.model_path

    def run_tokens(self, *a, **k):
        syn = self.real.run_tokens(*a, **k)
        syn.audio = np.zeros(0, np.float32)
        return syn


@pytest.mark.model
def test_an_engine_returning_zero_samples_fails(cfg, timed_engine):
    from labkit.lab.speak import say

    audio, words = say(cfg, TEXT, engine=_Mute(timed_engine))
    assert not np.any(audio) and len(words) == len(TEXT.split())  # only the joiner's pauses
    rep = coverage.check(audio, SR, words)
    assert not rep.ok and len(rep.failed) == len(words)


@pytest.mark.model
def test_say_words_then_verify_on_the_command_line(tmp_path):
    wav, js = tmp_path / "out.wav", tmp_path / "out.json"
    run = lambda *a: subprocess.run(LABKIT + list(a), capture_output=True, text=True,
                                    cwd=REPO_ROOT, timeout=600)
    p = run("say", TEXT, "-o", str(wav), "--words", str(js), "--voice", "bm_george",
            "-s", f"artifacts_dir={tmp_path / 'artifacts'}")
    assert p.returncode == 0, p.stderr
    words = json.loads(js.read_text())
    assert [w["word"] for w in words] == [w.strip(",.") for w in TEXT.split()]
    assert set(words[0]) == {"word", "start", "end", "input_start", "input_end"}
    assert all(TEXT[w["input_start"]:w["input_end"]] == w["word"] for w in words)
    p = run("verify", str(wav), str(js))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0].startswith("the model's spans: ok")
    assert p.stdout.splitlines()[1].startswith("the recognizer's alignment: ok")
    audio, sr = sf.read(str(wav))
    w = words[2]  # "is"
    silenced = audio.copy()
    silenced[int(w["start"] * sr):int(np.ceil(w["end"] * sr))] = 0.0
    sf.write(str(wav), silenced, sr)
    p = run("verify", str(wav), str(js))
    assert p.returncode == 1 and "'is'" in p.stdout.splitlines()[0], p.stdout + p.stderr
    js.write_text("{}")
    p = run("verify", str(wav), str(js))
    assert p.returncode == 2 and "JSON list" in p.stderr


@pytest.mark.model
def test_the_recognizer_catches_a_word_cut_out_that_the_energy_check_misses(cfg, timed_engine):
    """The words keep their spans from the model while a word's audio is gone and the rest
    moves up: every span still holds speech, but the recognizer cannot place the words."""
    from labkit.lab.speak import say

    text = "The quick brown fox jumps over the lazy dog near the river bank today."
    audio, words = say(cfg, text, engine=timed_engine)
    assert coverage.check(audio, SR, words).ok and coverage.heard(audio, SR, words).ok
    w = words[3]  # "fox"
    cut = np.concatenate([audio[:int(w["start"] * SR)], audio[int(w["end"] * SR):]])
    assert coverage.check(cut, SR, words[:-2]).ok  # the energy check: every span holds speech
    rep = coverage.heard(cut, SR, words[:-2])
    assert not rep.ok


def _levels_file(levels_db: list[float], floor_db: float = -90.0, word_s: float = 0.2):
    """A file of 0.2 s tones at the given levels (dBFS RMS), each after 0.2 s at the floor,
    and the words list of their spans."""
    rng = np.random.default_rng(0)
    parts, words, t = [], [], 0.0
    for k, db in enumerate(levels_db):
        parts.append(rng.normal(0, 10 ** (floor_db / 20), int(0.2 * SR)))
        t += 0.2
        tone = np.sin(2 * np.pi * 220 * np.arange(int(word_s * SR)) / SR) * np.sqrt(2) * 10 ** (db / 20)
        parts.append(tone)
        words.append({"word": f"w{k}", "start": t, "end": t + word_s})
        t += word_s
    parts.append(rng.normal(0, 10 ** (floor_db / 20), int(0.2 * SR)))
    return np.concatenate(parts), words


def test_words_the_model_barely_voices_are_named_and_excused_only_where_the_same():
    """unvoiced: under the floor + VOICED_DB in the model's own take; lost: a failure is
    excused only for the same word at the same index."""
    audio, words = _levels_file([-20.0, -70.0, -22.0, -80.0])
    cov = coverage.check(audio, SR, words)
    assert [w.word for w in cov.failed] == ["w3"]  # -80 dBFS is within 15 dB of the floor
    assert coverage.unvoiced(cov) == {1: "w1", 3: "w3"}  # -70 is voiced, but barely
    gone, spared = coverage.lost(cov, {3: "w3"})
    assert gone == [] and [w.word for w in spared] == ["w3"]
    gone, spared = coverage.lost(cov, {3: "w1", 2: "w3"})  # another word there: not excused
    assert [w.word for w in gone] == ["w3"] and spared == []
    assert coverage.unvoiced(coverage.check(np.zeros(0), SR, words)) == {k: w["word"] for k, w in enumerate(words)}


@pytest.mark.model
def test_stream_runs_check_words_in_the_audio(timed_engine, plain_engine):
    from labkit.engine.pipeline import StreamingSynthesizer
    from labkit.measure.streaming import run_stream, summarize_runs, unvoiced_words

    run = run_stream(StreamingSynthesizer(timed_engine), TEXT)
    assert run.words_present and run.extra["words_in_audio"]["ok"]
    assert run.extra["words_in_audio"]["words"] == len(TEXT.split())
    assert summarize_runs([run])["words_checked_in_audio"] is True
    mute = run_stream(StreamingSynthesizer(_Mute(timed_engine)), TEXT)
    assert mute.words_present is False and mute.extra["words_in_audio"]["not_heard"]
    # the model's unchunked take voices every word of TEXT: nothing excused; a stream is
    # not blamed for the words excused (here: all of them, as a mute take would have it)
    assert unvoiced_words(StreamingSynthesizer(timed_engine), TEXT) == {}
    everything = unvoiced_words(StreamingSynthesizer(_Mute(timed_engine)), TEXT)
    assert sorted(everything.values()) == sorted(w.strip(",.") for w in TEXT.split())
    spared = run_stream(StreamingSynthesizer(_Mute(timed_engine)), TEXT, excused=everything)
    assert spared.words_present and spared.extra["words_in_audio"]["not_heard"] == []
    assert len(spared.extra["words_in_audio"]["model_unvoiced"]) == len(TEXT.split())
    # without timings the record says the audio was not asked
    plain = run_stream(StreamingSynthesizer(plain_engine), TEXT)
    assert plain.extra["words_in_audio"] is None and plain.words_present
    assert summarize_runs([plain])["words_checked_in_audio"] is False
