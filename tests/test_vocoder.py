"""Like with like (labkit.measure.vocoder): a variant's part B on the reference's part A,
durations compared token by token, and the boundary tensors paired by name."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labkit.engine import assets
from labkit.engine.runtime import VoiceBank
from labkit.engine.words import timed_cache_dir
from labkit.engine.split_runtime import split_dir
from labkit.measure import corpora, vocoder
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
