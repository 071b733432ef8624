"""The playback simulator on hand-made schedules, the seam measure, the baselines."""
from __future__ import annotations

import numpy as np
import pytest

from labkit.measure import streaming as bench
from labkit.measure.streaming import simulate_playback


def test_early_chunks_play_without_underruns():
    pb = simulate_playback([1.0, 1.5, 2.0], [2.0, 2.0, 2.0])
    assert pb.ttfa_s == 1.0
    assert pb.underruns == 0 and pb.underrun_s == 0 and pb.dropout == 0
    assert pb.finish_s == pytest.approx(7.0)
    assert pb.starts == [1.0, 3.0, 5.0]


def test_a_late_chunk_is_an_underrun():
    pb = simulate_playback([1.0, 4.0], [2.0, 2.0])
    assert pb.ttfa_s == 1.0
    assert pb.underruns == 1 and pb.underrun_s == pytest.approx(1.0)
    assert pb.finish_s == pytest.approx(6.0)
    assert pb.dropout == pytest.approx(1.0 / 5.0)
    assert pb.max_late_s == pytest.approx(1.0)


def test_startup_buffer_delays_start_and_absorbs_lateness():
    arrivals, durations = [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]
    no_buffer = simulate_playback(arrivals, durations)
    assert no_buffer.underruns == 0  # each arrives exactly as the previous ends
    late = simulate_playback([1.0, 2.5, 3.5], durations)
    assert late.underruns == 1 and late.underrun_s == pytest.approx(0.5)
    buffered = simulate_playback([1.0, 2.5, 3.5], durations, startup_buffer_s=2.0)
    assert buffered.ttfa_s == 2.5 and buffered.underruns == 0


def test_buffer_larger_than_the_stream_starts_at_the_end():
    pb = simulate_playback([0.5, 0.7], [0.2, 0.2], startup_buffer_s=10.0)
    assert pb.ttfa_s == 0.7 and pb.underruns == 0


def test_jitter_is_zero_for_a_steady_stream_and_grows_with_bursts():
    steady = simulate_playback([1, 2, 3, 4], [2, 2, 2, 2])
    assert steady.jitter == pytest.approx(0.0)
    bursty = simulate_playback([1, 1.2, 3.2, 3.4], [2, 2, 2, 2])
    # gaps / previous durations: 0.1, 1.0, 0.1 -> population std
    assert bursty.jitter == pytest.approx(np.std([0.1, 1.0, 0.1]))


def test_tiny_stalls_are_not_counted():
    pb = simulate_playback([0.0, 1.0005], [1.0, 1.0])
    assert pb.underruns == 0


@pytest.mark.parametrize("arrivals,durations", [([1, 2], [1]), ([], []), ([2, 1], [1, 1]), ([1], [-1])])
def test_bad_schedules_are_named(arrivals, durations):
    with pytest.raises(ValueError):
        simulate_playback(arrivals, durations)


def test_run_summary_and_pick():
    fast = bench.Run("a", [0.5, 1.0], [2.0, 2.0], 1.0, 4.0, words_present=True)
    slow = bench.Run("b", [2.0, 2.5], [2.0, 2.0], 2.5, 4.0, words_present=True)
    gappy = bench.Run("c", [0.1, 5.0], [1.0, 1.0], 5.0, 2.0, words_present=True)
    rows = [dict(bench.summarize([r]), name=r.name) for r in (fast, slow, gappy)]
    assert rows[2]["underruns_max"] == 1
    assert bench.pick(rows)["name"] == "a"
    assert fast.rtf == pytest.approx(0.25)


def test_align_finds_a_shifted_segment():
    rng = np.random.default_rng(1)
    ref = (rng.standard_normal(48000) * np.repeat(rng.random(200), 240)).astype(np.float32)
    seg = ref[20000:26000]
    assert abs(bench.align(ref, seg, guess=18000) - 20000) <= 240


def test_seam_lsd_is_zero_for_identical_audio():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(72000) * np.repeat(rng.random(300), 240)).astype(np.float32)

    def fake_lsd(a, b, allow_length_mismatch=False):
        assert len(a) == len(b) and not allow_length_mismatch
        return float(np.sqrt(np.mean((np.log(np.abs(np.fft.rfft(a)) + 1e-5)
                                      - np.log(np.abs(np.fft.rfft(b)) + 1e-5)) ** 2)))

    rows = bench.seam_lsd(x, x, [24000, 48000], window_s=0.1, lsd=fake_lsd)
    assert len(rows) == 2
    assert all(r["seam_lsd_db"] < 1e-6 and r["control_lsd_db"] < 1e-6 for r in rows)


def test_texts_have_the_advertised_sizes():
    assert 1400 <= bench.word_count(bench.article()) <= 1600
    assert 100 <= bench.word_count(bench.paragraph()) <= 140
    assert "\n\n" in bench.article()


def test_baselines_run_on_our_session(cfg, engine):
    base = bench.KokoroBaseline(cfg, session=engine.session)
    text = "Hello there. How are you today?"
    create = base.run_create(text)
    assert len(create.arrivals) == 1 and create.audio_s > 0.5
    stream = base.run_create_stream(text)
    assert stream.arrivals == sorted(stream.arrivals) and stream.audio_s > 0.5


def test_run_stream_records_every_chunk(engine):
    from labkit.engine.pipeline import StreamingSynthesizer

    run = bench.run_stream(StreamingSynthesizer(engine), "One, two. Three four five.", keep_audio=True)
    assert run.words_present and len(run.arrivals) == len(run.chunks) >= 2
    assert run.audio is not None and len(run.audio) / 24000 == pytest.approx(run.audio_s)
    assert run.summary()["underruns"] >= 0


def test_dual_rule_keeps_single_unless_dual_clearly_wins():
    def row(name, sessions, ttfa, total, underruns=0):
        return {"candidate": name, "text": "t", "status": "ok", "sessions": sessions, "ttfa_s": ttfa,
                "total_s": total, "underruns_max": underruns, "cpu_utilization": 0.9,
                "pipeline": {"sessions": sessions}, "session": {}}
    lose = bench.dual_rule([row("one", 1, 1.0, 10.0), row("two", 2, 1.5, 9.0)])
    assert not lose["use_dual"] and lose["pipeline"] == {"sessions": 1} and lose["candidate"] == "one"
    win = bench.dual_rule([row("one", 1, 1.0, 10.0), row("two", 2, 1.0, 8.0)])
    assert win["use_dual"] and win["candidate"] == "two"
    assert win["per_text"]["t"]["total_dual_over_single"] == pytest.approx(0.8)


def test_coreml_candidates_are_skipped_with_the_reason_where_missing(cfg):
    import onnxruntime as ort

    cand = {"name": "coreml", "sessions": 2, "session": {"providers": ["CoreMLExecutionProvider"]}}
    missing = bench.unavailable_providers(cand)
    if "CoreMLExecutionProvider" in ort.get_available_providers():
        pytest.skip("CoreML is available here")
    assert missing == ["CoreMLExecutionProvider"]
    rows = bench.compare_sessions(cfg, [cand], ["phrase"], repeats=1)
    assert rows[0]["status"].startswith("skipped: CoreMLExecutionProvider not available")
    dual = bench.candidate_config(cfg, {"sessions": 2, "session": {"intra_op_threads": 1},
                                        "second_session": {"intra_op_threads": 1}})
    assert dual.pipeline.sessions == 2 and dual.session.intra_op_threads == 1


# -- candidates offered to the journal's selection -------------------------------------------
def _row(label, ttfa, rtf, chunking, underruns=0, words=True):
    return {"label": label, "ttfa_s": ttfa, "rtf": rtf, "chunking": chunking,
            "underruns_max": underruns, "words_present": words}


def test_chunking_candidates_put_the_choice_first_with_its_seam_cost():
    from labkit.measure.streaming import chunking_candidates
    from labkit.config import ChunkingConfig

    base = ChunkingConfig()
    rows = [_row("default", 0.5, 0.3, dict(vars(base))),
            _row("max_tokens=400", 0.5, 0.29, {**vars(base), "max_tokens": 400}, underruns=2)]
    out = chunking_candidates(rows, "max_tokens=400", base, seam_excess_db=-0.2)
    assert [c["name"] for c in out] == ["chunking max_tokens=400", "chunking default"]
    assert out[0]["overrides"] == {"chunking.max_tokens": 400}
    assert out[0]["lsd_db"] == 0.0  # a negative seam cost is no cost
    assert out[0]["failed_checks"] == ["underruns"]
    assert out[1]["overrides"] == {} and out[1]["lsd_db"] is None


def test_session_candidates_from_measured_rows():
    from labkit.measure.streaming import session_candidates

    common = {"status": "ok", "text": "paragraph", "underruns_max": 0, "words_present": True}
    rows = [
        {**common, "candidate": "single 2", "sessions": 1, "ttfa_s": 0.4, "rtf": 0.3,
         "session": {"intra_op_threads": 2}, "pipeline": {"sessions": 1, "second_session": {},
                                                         "routing": "first-fast"},
         "change_vs_first_db": 0.0, "length_matches_first": True},
        {**common, "candidate": "dual 1+1", "sessions": 2, "ttfa_s": 0.6, "rtf": 0.35,
         "session": {"intra_op_threads": 1}, "pipeline": {"sessions": 2, "second_session": {"intra_op_threads": 1},
                                                         "routing": "first-fast"},
         "change_vs_first_db": 0.01, "length_matches_first": True},
        {"candidate": "coreml", "text": "paragraph", "status": "skipped: no CoreML"},
    ]
    out = session_candidates(rows, {"candidate": "single 2"})
    assert [c["name"] for c in out] == ["single 2", "dual 1+1"]
    assert out[0]["overrides"] == {"session.intra_op_threads": 2, "pipeline.sessions": 1}
    assert out[1]["overrides"]["pipeline.second_session"] == {"intra_op_threads": 1}
    assert out[1]["lsd_db"] == 0.01 and out[1]["failed_checks"] == ["not the stage's rule"]
    assert out[0]["failed_checks"] == []
    # the rule kept one session although it underran once: the journal may drop that
    # candidate (an honest check) but never swaps in the pair the rule measured as worse
    rows[0]["underruns_max"] = 1
    out = session_candidates(rows, {"candidate": "single 2"})
    from labkit.config import SelectionConfig
    from labkit.lab.selection import rank
    assert out[0]["failed_checks"] == ["underruns"] and rank(out, SelectionConfig()) == []
