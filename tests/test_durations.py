"""The durations graph edit, word spans from the G2P, and word timings through the pipeline."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from labkit.engine import words
from labkit.engine.phonemized import even_spans
from labkit.optimize import durations
from labkit.optimize.durations import DurationsError


# -- word timings from frame counts (no model) -----------------------------------------------
def test_input_words_point_back_into_the_input():
    """Spoken words grouped into stretches of the input: an expansion is one entry
    spanning what was written, nothing covered twice, the removed reported as skipped."""
    from labkit.engine.text import sanitize

    W = words.WordTime
    text = "Go 40\u201360\u00b0C, see https://example.com \U0001F389 now."
    clean = sanitize(text)
    url = (text.index("https"), text.index(" \U0001F389"))
    a = words.InputWords(text, clean)
    got = a.feed([W("Go", 0, 1, 0, 2), W("forty", 1, 2, 3, 5), W("to", 2, 3, 5, 6),
                  W("sixty", 3, 4, 6, 8), W("degrees", 4, 5, 8, 10),
                  W("see", 5, 6, 12, 15), W("example", 6, 7, url[0] + 8, url[0] + 15),
                  W("dot", 7, 8, *url)])
    assert [(e["word"], e["start"], e["end"]) for e in got] == [
        ("Go", 0, 1), ("40\u201360\u00b0C", 1, 5), ("see", 5, 6), ("https://example.com", 6, 8)]
    assert all(text[e["input_start"]:e["input_end"]] == e["word"] for e in got)
    # the next piece: a word inside the URL already given is folded away (not twice)
    got = a.feed([W("com", 8, 9, url[1] - 3, url[1]), W("now", 9, 10, *_span(text, "now"))])
    assert [e.get("word") or e["skipped"] for e in got] == ["emoji dropped (text.emoji=drop)", "now"]
    assert got[0]["text"] == "\U0001F389" and text[got[0]["input_start"]:got[0]["input_end"]] == "\U0001F389"
    assert a.finish() == []  # the full stop is punctuation: nothing left out


def test_input_words_keep_cjk_words_apart_and_report_what_was_not_spoken():
    from labkit.engine.text import sanitize

    W = words.WordTime
    zh = "\u5317\u4eac\u662f\u9996\u90fd"  # 北京是首都
    a = words.InputWords(zh, sanitize(zh, lang="zh"))
    got = a.feed([W("北京", 0, 1, 0, 2), W("是", 1, 2, 2, 3), W("首都", 2, 3, 3, 5)])
    assert [e["word"] for e in got] == ["北京", "是", "首都"]  # glued, but CJK: three words
    text = "Hello zxq there"
    b = words.InputWords(text, sanitize(text))
    got = b.feed([W("Hello", 0, 1, 0, 5), W("there", 1, 2, 10, 15)])
    assert got[1] == {"skipped": "not spoken (the G2P read no phonemes for it)", "text": "zxq",
                      "input_start": 6, "input_end": 9}


def _span(text: str, word: str) -> tuple[int, int]:
    at = text.index(word)
    return at, at + len(word)


def test_piece_samples_from_frame_counts():
    # pad 2 frames, tokens "ab cd" (5 tokens: a b space c d), pad 1
    d = np.array([2, 1, 3, 1, 2, 2, 1])
    spans = [("ab", 0, 2), ("cd", 3, 5)]
    out = words.piece_samples(spans, d, n_tokens=5)
    f = words.SAMPLES_PER_FRAME
    assert out == [("ab", 2 * f, 6 * f), ("cd", 7 * f, 11 * f)]
    with pytest.raises(ValueError, match="expected 7"):
        words.piece_samples(spans, d[:-1], n_tokens=5)
    with pytest.raises(ValueError, match="outside"):
        words.piece_samples([("x", 4, 6)], d, n_tokens=5)


def test_place_shifts_by_the_trim_and_the_base():
    placed = words.place([("a", 1000, 3000), ("b", 3000, 9000)], base=24_000, trim_start=2000,
                         trim_end=8000)
    assert placed[0] == words.WordTime("a", (24_000 + 0) / 24_000, (24_000 + 1000) / 24_000)
    assert placed[1].end == (24_000 + 6000) / 24_000  # clamped to the kept part


def test_even_spans():
    assert even_spans(["one", "two"], "wˈʌn tˈu") == [("one", 0, 4), ("two", 5, 8)]
    assert even_spans(["a", "b", "c"], "abcdef") == [("a", 0, 2), ("b", 2, 4), ("c", 4, 6)]


def test_g2p_spans_cover_every_spoken_word(g2p_us):
    p = g2p_us("It's 3:30 on Jan 5th; pay $5.50 & go!")
    assert [w for w, _, _ in p.spans] == ["It's", "3:30", "on", "Jan", "5th", "pay", "5.50", "&", "go"]
    assert len(p.spans) == len(p.words)
    ends = [b for _, _, b in p.spans]
    assert all(a < b for _, a, b in p.spans) and ends == sorted(ends)
    assert p.phonemes[p.spans[2][1]:p.spans[2][2]] == "ˌɔn"


# -- the graph edit ------------------------------------------------------------------------------
def test_a_graph_without_rounded_durations_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [0])
    g = helper.make_graph([helper.make_node("CumSum", ["x", "axis"], ["y"])], "g", [x], [y], [axis])
    with pytest.raises(DurationsError, match="found 0"):
        durations.find_durations_tensor(helper.make_model(g))


@pytest.fixture(scope="module")
def int8(cfg):
    from labkit.engine import assets

    return assets.model_path(cfg, "int8")


@pytest.mark.model
def test_both_graphs_have_one_duration_tensor(cfg, int8):
    from labkit.engine import assets

    for path in (int8, assets.model_path(cfg, "fp32-recon")):
        if path.exists():
            m = onnx.load(str(path), load_external_data=False)
            assert durations.find_durations_tensor(m) == "/encoder/Gather_output_0"


@pytest.mark.model
def test_edit_keeps_the_audio_and_matches_its_length(int8, timed_engine, tmp_path):
    edited = timed_engine.model_path
    report = durations.check(int8, edited)  # also run by ensure() before the file was kept
    assert report["audio_identical"] and report["length_matches"]
    assert all(r["frames"] * 600 == r["samples"] for r in report["runs"])
    assert durations.ensure(int8, edited.parent) == edited  # cached
    # known-bad: an "edit" that also scales the audio is caught
    m = onnx.load(str(edited))
    out = next(o for o in m.graph.output if o.name == "audio")
    for n in m.graph.node:
        n.input[:] = ["audio_pre" if i == "audio" else i for i in n.input]
        n.output[:] = ["audio_pre" if o == "audio" else o for o in n.output]
    m.graph.initializer.append(helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]))
    m.graph.node.append(helper.make_node("Mul", ["audio_pre", "half"], ["audio"]))
    assert out.name == "audio"
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(DurationsError, match="changed the audio"):
        durations.check(int8, bad)


def test_a_models_copy_with_durations_is_discarded_by_the_key_it_was_built_under(tmp_path):
    """Issue #31: the copies are keyed by their source's path and mtime, so a stage-03 run's
    variants' copies are never hit again; the stage discards those of the variants that
    failed (they cannot ship) by the same key (labkit.engine.words.timed_model_path)."""
    src = tmp_path / "variant.onnx"
    src.write_bytes(b"model")
    cache = tmp_path / "durations"
    copy = words.timed_model_path(src, cache)
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"x" * 1000)
    other = cache / "kokoro-v1.0.int8.e6f6421333de.durations.onnx"
    other.write_bytes(b"kept")
    assert durations.discard(src, cache) == 1000
    assert not copy.exists() and other.exists()
    assert durations.discard(src, cache) == 0


@pytest.mark.model
def test_wrong_frame_size_is_caught(int8, timed_engine, monkeypatch):
    monkeypatch.setattr(durations, "SAMPLES_PER_FRAME", 601)
    with pytest.raises(DurationsError, match="sum\\(durations\\)"):
        durations.check(int8, timed_engine.model_path)


def test_engine_reads_durations_only_when_the_model_has_them(plain_engine, timed_engine):
    syn = timed_engine.synthesize_phonemes("həlˈO wˈɜɹld.")
    assert syn.durations is not None and syn.durations.size == syn.tokens + 2
    assert int(syn.durations.sum()) * 600 == syn.audio.size
    # the original model stays usable without them: the same audio, no durations
    plain = plain_engine.synthesize_phonemes("həlˈO wˈɜɹld.")
    assert plain.durations is None
    np.testing.assert_array_equal(plain.audio, syn.audio)


def test_without_durations_the_pipeline_streams_every_piece_without_word_timings(plain_engine):
    from labkit.engine.pipeline import StreamingSynthesizer

    text = "Good morning, everyone. The train to Leeds leaves from platform four."
    chunks = list(StreamingSynthesizer(plain_engine).stream(text))
    assert len(chunks) > 1 and all(len(c.audio) for c in chunks)
    assert all(c.words == [] for c in chunks)


@pytest.mark.model
def test_pipeline_chunks_carry_their_words_in_stream_time(timed_engine):
    from labkit.engine.pipeline import StreamingSynthesizer

    text = ("Good morning, everyone. The train to Leeds leaves from platform four, "
            "and the next one after that is cancelled")
    chunks = list(StreamingSynthesizer(timed_engine).stream(text))
    assert len(chunks) > 1
    got = [w for c in chunks for w in c.words]
    assert [w.word for w in got] == [w.strip(",.") for w in text.split()]
    total = sum(len(c.audio) for c in chunks) / 24_000
    starts = [w.start for w in got]
    assert starts == sorted(starts) and all(w.start < w.end <= total + 1e-9 for w in got)
    # each chunk's words lie where that chunk's audio plays (a crossfade tail may run on)
    at = 0.0
    for c in chunks:
        assert all(at - 0.02 <= w.start < at + c.duration for w in c.words), c.index
        at += c.duration


@pytest.mark.model
def test_engine_loads_the_built_copy_from_the_cache(cfg, int8, timed_engine, tmp_path):
    import os

    from labkit.engine.runtime import Engine

    local = cfg.with_overrides({"variant": "int8", "artifacts_dir": str(tmp_path)})
    assert Engine(local).durations_index is None  # nothing built: the original model
    target = words.timed_model_path(int8, words.timed_cache_dir(local))
    target.parent.mkdir(parents=True)
    os.symlink(timed_engine.model_path, target)   # as `labkit assets --provision` builds it
    eng = Engine(local)
    assert eng.model_path == target and eng.durations_index is not None
