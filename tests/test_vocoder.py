"""Like with like (labkit.measure.vocoder): a variant's part B on the reference's part A,
durations compared token by token, and the boundary tensors paired by name."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labkit.engine import assets
from labkit.engine.voices import VoiceBank
from labkit.engine.words import timed_cache_dir
from labkit.engine.split_runtime import split_dir
from labkit.lab import s07_verify
from labkit.measure import corpora, vocoder
from labkit.quality import ladder
from labkit.optimize import durations
from labkit.optimize import split as splitting


def test_boundary_tensors_pair_by_name_then_by_shape():
    assert vocoder.pairing(["asr", "f0", "n"], ["asr", "n", "f0"], None, None) == [0, 2, 1]
    shapes = {"a": [1, 512, 1], "b": [1, 2]}
    assert vocoder.pairing(["a", "b"], ["x", "y"], shapes, {"x": [1, 512, 1], "y": [1, 2]}) == [0, 1]
    with pytest.raises(vocoder.NotComparable, match="cannot be paired"):
        vocoder.pairing(["a", "b"], ["x", "y"], shapes, {"x": [1, 2], "y": [1, 512, 1]})
    with pytest.raises(vocoder.NotComparable, match="reads 1 boundary"):
        vocoder.pairing(["a", "b"], ["a"], None, None)


@pytest.mark.model
def test_the_reference_against_itself_and_a_variant_that_lists_its_boundary_in_another_order(cfg):
    """The quantizer may list part B's inputs in another order (F0 and N swapped in the QDQ
    builds): paired by position, the F0 curve would drive the energy input (clipped noise);
    paired by name, the same part B gives the same audio bit for bit."""
    # the reference with its durations output, built here as stage 03 builds it (a clean
    # clone provisions the timed copy of the shipped model only)
    ref = assets.model_path(cfg, assets.reference(cfg).variant)
    parts = splitting.split_files(durations.ensure(ref, timed_cache_dir(cfg)), split_dir(cfg))
    meta = dict(parts.meta)
    meta["boundary"] = [meta["boundary"][0], meta["boundary"][2], meta["boundary"][1]]
    swapped = dataclasses.replace(parts, meta=meta)
    voices = VoiceBank.load(assets.voices_path(cfg))
    p = corpora.prepare(corpora.load("dev", purpose="choose").select(ids=["dev-02"]))[0]
    at = vocoder.AtReference(parts)
    same = at.render(parts, p.feeds(voices), key=p.utt.id)
    np.testing.assert_array_equal(same.reference, same.variant)
    assert same.frames_differ == 0 and same.max_token_shift == 0
    other = at.render(swapped, p.feeds(voices), key=p.utt.id)
    np.testing.assert_array_equal(other.reference, other.variant)
    judged = vocoder.judge(at, swapped, [p], voices)
    assert judged["summary"]["passed"] and judged["per_utterance"]["dev-02"]["verdict"] == "pass"
    # the recognizer's jitter on this utterance: the unchanged rerun is left out, an inaudible
    # rung is read, an audible one is not
    rungs = {r.label: r for r in ladder.RUNGS}
    ref_wer = vocoder.reference_word_errors(
        {p.utt.id: same.reference}, {p.utt.id: p.utt.text},
        rungs=[rungs["rerun"], rungs["noise 50 dB SNR"], rungs["low-pass 4 kHz"]])
    assert list(ref_wer["jitter"]["rungs"]) == ["noise 50 dB SNR"]
    heard = ref_wer["jitter"]["rungs"]["noise 50 dB SNR"]
    assert ref_wer["jitter"]["band"] == max(0.0, heard - ref_wer["corpus"])


def _per(verdict="pass"):
    return {"u": {"verdict": verdict, "reasons": [] if verdict == "pass" else ["x"],
                  "figures": {"masked_lsd_db": 0.5},
                  "durations": {"max_token_shift": 0, "tokens_moved": 0.0}}}


def test_the_word_error_bound_is_the_recognizers_jitter_where_that_is_larger():
    """A variant 4 points worse than the reference fails against the fixed 2 points, and
    passes where the recognizer moved 5 points on a change nobody hears; 6 points fails
    either way."""
    ref = {"corpus": 0.30}
    jittery = {"corpus": 0.30, "jitter": {"rungs": {"delay 1 ms": 0.35}, "band": 0.05}}
    assert vocoder.wer_bound(ref) == vocoder.MAX_WER_INCREASE
    assert vocoder.wer_bound(jittery) == 0.05
    four, six = {"corpus": 0.34}, {"corpus": 0.36}
    failed = vocoder.summarize(_per(), four, ref)
    assert not failed["passed"] and "word error rate 0.340" in failed["reasons"][0]
    assert vocoder.summarize(_per(), four, jittery)["passed"]
    assert vocoder.summarize(_per(), four, jittery)["wer_allowed_increase"] == 0.05
    assert not vocoder.summarize(_per(), six, jittery)["passed"]


def test_stage_07_allows_the_rise_the_shipped_summary_was_allowed():
    """Stage 07's verdict holds the shipped word error rate to the same bound as stage 03:
    the recognizer's jitter where that is larger than two points."""
    def judged(wer, allowed=None):
        summary = {"wer": wer} if allowed is None else {"wer": wer, "wer_allowed_increase": allowed}
        return {"per_utterance": {"u": {"verdict": "pass"}}, "summary": summary}
    fixed = s07_verify.verdict((1.0, 1.1), (1.0, 1.1), {"stock": 0, "shipped": 0},
                               {"stock": judged(0.30), "shipped": judged(0.34)})
    assert fixed["ships"] == "stock" and "(+0.020 allowed)" in fixed["losses"][0]
    jittery = s07_verify.verdict((1.0, 1.1), (1.0, 1.1), {"stock": 0, "shipped": 0},
                                 {"stock": judged(0.30), "shipped": judged(0.34, 0.05)})
    assert jittery == {"losses": [], "ships": "shipped"}
