"""The quality bench on known signals (the corpora it is fed: tests/test_corpora.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from labkit import quality
from labkit.quality import standard
from labkit.measure import dnsmos
from labkit.quality import QualityError

SR = quality.SAMPLE_RATE


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(SR) * 0.1).astype(np.float32)


@pytest.fixture(scope="module")
def voiced() -> np.ndarray:
    """A speech-like signal: harmonics of 140 Hz, syllable-rate envelope, a little noise."""
    t = np.arange(2 * SR) / SR
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    rng = np.random.default_rng(1)
    return (0.2 * tone * env + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def test_lsd_identical_is_zero(noise):
    assert quality.lsd_db(noise, noise.copy()) == 0.0
    assert quality.spectral_convergence(noise, noise) == 0.0


@pytest.mark.parametrize("gain", [2.0, 0.5, 10 ** (3 / 20), 10 ** (6 / 20)])
def test_lsd_known_gain(noise, gain):
    # white noise: no bin sits at the 1e-5 floor, so a uniform gain g gives exactly |20 log10 g|
    expected = abs(20 * math.log10(gain))
    assert quality.lsd_db(noise, noise * gain) == pytest.approx(expected, abs=1e-6)
    assert quality.spectral_convergence(noise, noise * gain) == pytest.approx(abs(gain - 1), rel=1e-6)


def test_lsd_is_rms_over_frequency_then_mean_over_frames():
    """Half the bins 0 dB apart, half 12 dB: the mean of |dB| would read 6 dB, the standard
    LSD (RMS over frequency) reads 12/sqrt(2) = 8.49 dB. A second frame identical halves it."""
    A = np.ones((1, 8))
    B = A.copy()
    B[0, :4] *= 10 ** (12 / 20)
    assert quality.lsd_from_magnitudes(A, B) == pytest.approx(12 / math.sqrt(2))
    assert np.mean(np.abs(20 * np.log10(A / B))) == pytest.approx(6.0)  # the old figure
    two = quality.lsd_from_magnitudes(np.vstack([A, A]), np.vstack([B, A]))
    assert two == pytest.approx(12 / math.sqrt(2) / 2)
    with pytest.raises(QualityError, match="equal non-empty"):
        quality.lsd_from_magnitudes(A, B[:, :4])


def test_summary_reports_worst_and_mean():
    s = quality.summary({"a": 0.5, "b": 3.0, "c": 0.4})
    assert s["worst"] == 3.0 and s["worst_id"] == "b" and s["mean"] == pytest.approx(3.9 / 3)
    assert s["n"] == 3 and s["missing"] == []
    with pytest.raises(QualityError, match="no utterances"):
        quality.summary({})
    with pytest.raises(QualityError, match="non-finite"):
        quality.summary([1.0, float("nan")])


def test_bound_fails_on_the_worst_utterance_even_when_the_mean_passes():
    figures = {f"u{i}": 0.5 for i in range(9)} | {"bad": 4.0}   # mean 0.85 dB
    ok, reason = quality.within_bound(figures, 2.0)
    assert not ok and "bad" in reason and "4.000" in reason and "mean 0.850" in reason
    assert quality.within_bound({k: v for k, v in figures.items() if k != "bad"}, 2.0)[0]
    # an utterance that could not be measured is not within the bound either
    ok, reason = quality.within_bound({"a": 0.1, "b": None}, 2.0)
    assert not ok and "not measured" in reason


def test_lsd_is_symmetric(noise, voiced):
    a, b = voiced[: noise.size], noise
    assert quality.lsd_db(a, b) == pytest.approx(quality.lsd_db(b, a))


def test_nan_and_inf_are_rejected(noise):
    bad = noise.copy()
    bad[100] = np.nan
    with pytest.raises(QualityError, match="NaN"):
        quality.lsd_db(noise, bad)
    bad[100] = np.inf
    with pytest.raises(QualityError, match="NaN/inf"):
        quality.lsd_db(bad, noise)
    assert isinstance(QualityError("x"), ValueError)


def test_length_mismatch_reported_or_truncated(noise):
    with pytest.raises(QualityError, match="length mismatch.*allow_length_mismatch"):
        quality.lsd_db(noise, noise[:-600])
    assert quality.lsd_db(noise, noise[:-600], allow_length_mismatch=True) == 0.0


def test_aligned_lsd_sees_through_a_timing_change(noise, voiced):
    """A stretch of the signal repeated (a phoneme held one frame longer, in effect) or cut:
    the common-prefix LSD reports a big spectral change, the aligned one almost none."""
    hop = standard.HOP
    cut = hop * (voiced.size // hop // 2)
    longer = np.concatenate([voiced[:cut], voiced[cut - 19 * hop:cut], voiced[cut:]])
    shorter = np.concatenate([voiced[:cut], voiced[cut + 19 * hop:]])
    for test in (longer, shorter):
        prefix = quality.lsd_db(voiced, test, allow_length_mismatch=True)
        aligned = quality.aligned_lsd_db(voiced, test)
        # (standard LSD: the splice frames weigh more than under the old mean |dB|)
        assert aligned < 1.5 < prefix and aligned < prefix / 4
    assert quality.aligned_lsd_db(voiced, voiced) == 0.0
    # a pure gain is not a timing change: the aligned figure is the plain one
    assert quality.aligned_lsd_db(noise, noise * 2.0) == pytest.approx(quality.lsd_db(noise, noise * 2.0))
    with pytest.raises(QualityError, match="no path within the band"):
        quality.aligned_lsd_db(voiced, np.concatenate([voiced, voiced, voiced]), band_s=0.05)
    report = quality.compare(voiced, longer, with_pesq=False)
    assert report["truncated"] and report["lsd_db_aligned"] < report["lsd_db"]


def test_check_audio_finds_problems(voiced):
    assert quality.check_audio(voiced) == []
    nan = voiced.copy()
    nan[SR:] = np.nan
    assert any(p.startswith("nan") for p in quality.check_audio(nan))
    assert any(p.startswith("silence") for p in quality.check_audio(np.zeros(SR)))
    assert any(p.startswith("clipping") for p in quality.check_audio(np.sign(voiced)))
    assert quality.check_audio(np.array([])) == ["empty: no samples"]


def test_pesq_and_stoi_identical_are_maximal(voiced):
    assert quality.pesq_wb(voiced, voiced) > 4.5
    assert quality.stoi(voiced, voiced) == pytest.approx(1.0, abs=1e-6)
    noisy = voiced + 0.05 * np.random.default_rng(2).standard_normal(voiced.size).astype(np.float32)
    assert quality.pesq_wb(voiced, noisy) < quality.pesq_wb(voiced, voiced)


def test_dnsmos_runs_offline_and_tells_noise_from_a_voice(voiced):
    """White noise scores at the scale's floor (~1.1); a clean voiced signal's background
    is rated clean (speech under noise: the model's, below)."""
    mos = dnsmos.score(voiced)
    assert mos is not None, dnsmos.NOTE
    assert set(mos) >= {"sig", "bak", "ovrl"}
    white = dnsmos.score((np.random.default_rng(0).standard_normal(2 * SR) * 0.1).astype(np.float32))
    assert all(v < 1.5 for v in white.values()), white
    assert mos["bak"] > 2.5 and mos["ovrl"] > white["ovrl"] + 0.5, mos


def test_dnsmos_reads_the_same_audio_once(voiced, monkeypatch):
    """Issue #31: the reference's score, read beside every variant's, is computed once; a
    copy is returned (a caller's change does not reach the kept score), other audio or
    another rate is read afresh."""
    calls = []
    real = dnsmos._score
    monkeypatch.setattr(dnsmos, "_score", lambda a, sr: calls.append(sr) or real(a, sr))
    monkeypatch.setattr(dnsmos, "_scores", type(dnsmos._scores)())
    first = dnsmos.score(voiced)
    first["ovrl"] = -1.0
    again = dnsmos.score(voiced.copy())
    assert len(calls) == 1 and again["ovrl"] > 1.0
    dnsmos.score(voiced, SR // 2)
    dnsmos.score(voiced * 0.5)
    assert len(calls) == 3


@pytest.mark.model
def test_dnsmos_rates_the_models_speech_well_and_noisy_speech_lower(engine):
    speech = engine.synthesize_phonemes("ðə fˈɛɹi lˈivz æt sˈɛvən ˈɛvɹi mˈɔɹnɪŋ, wˈɛðəɹ ɪt ɹˈAnz ɔɹ nˈɑt.").audio
    mos = dnsmos.score(speech)
    assert mos["sig"] > 3.0 and mos["bak"] > 3.5 and mos["ovrl"] > 3.0, mos
    noisy = dnsmos.score(speech + (np.random.default_rng(0).standard_normal(speech.size) * 0.05).astype(np.float32))
    assert noisy["bak"] < 2.5 and noisy["ovrl"] < mos["ovrl"] - 1.0, noisy


def test_compare_reports_duration_and_failures(voiced):
    rec = quality.compare(voiced, voiced[:-1200])
    assert rec["ok"] and rec["truncated"]
    assert rec["duration"]["diff_s"] == pytest.approx(-0.05)
    assert rec["lsd_db"] == 0.0
    bad = quality.compare(voiced, np.full_like(voiced, np.nan))
    assert not bad["ok"] and bad["lsd_db"] is None and bad["problems"]
