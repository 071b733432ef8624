"""The playback simulator on hand-made schedules, the seam measure, the baselines."""
from __future__ import annotations

import numpy as np
import pytest

from labkit.measure import baseline
from labkit.measure import chunkings
from labkit.lab import s05_chunking as s05
from labkit.lab import s06_dual_sessions as s06
from labkit.measure import seams
from labkit.measure import streaming
from labkit.measure import texts
from labkit.measure.playback import simulate_playback


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


def test_run_summary_counts_underruns_and_rtf():
    fast = streaming.Run("a", [0.5, 1.0], [2.0, 2.0], 1.0, 4.0, words_present=True)
    gappy = streaming.Run("c", [0.1, 5.0], [1.0, 1.0], 5.0, 2.0, words_present=True)
    rows = [streaming.summarize_runs([r]) for r in (fast, gappy)]
    assert rows[0]["underruns_max"] == 0 and rows[1]["underruns_max"] == 1
    assert streaming.stream_failures(rows[1]) == ["underruns"]
    assert fast.rtf == pytest.approx(0.25)


def test_align_finds_a_shifted_segment():
    rng = np.random.default_rng(1)
    ref = (rng.standard_normal(48000) * np.repeat(rng.random(200), 240)).astype(np.float32)
    seg = ref[20000:26000]
    assert abs(seams.align(ref, seg, guess=18000) - 20000) <= 240


def test_seam_lsd_is_zero_for_identical_audio():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(72000) * np.repeat(rng.random(300), 240)).astype(np.float32)

    def fake_lsd(a, b, allow_length_mismatch=False):
        assert len(a) == len(b) and not allow_length_mismatch
        return float(np.sqrt(np.mean((np.log(np.abs(np.fft.rfft(a)) + 1e-5)
                                      - np.log(np.abs(np.fft.rfft(b)) + 1e-5)) ** 2)))

    rows = seams.seam_lsd(x, x, [24000, 48000], window_s=0.1, lsd=fake_lsd)
    assert len(rows) == 2
    assert all(r["seam_lsd_db"] < 1e-6 and r["control_lsd_db"] < 1e-6 for r in rows)


def _rows(pairs):
    return [{"position_s": float(k), "seam_lsd_db": a, "control_lsd_db": b}
            for k, (a, b) in enumerate(pairs)]


def test_seam_excess_is_paired_seam_by_seam():
    # stage 05's figures (run-20261130-024620): the default's seams, and the adaptive cut
    # (the same seams plus one near the start)
    default = [(12.7, 12.5), (16.1, 9.7), (4.0, 11.6), (19.3, 8.3), (4.6, 9.2), (10.1, 10.6)]
    adaptive = [(15.1, 13.4), (13.9, 10.9), (16.1, 9.7), (4.0, 11.6), (19.3, 8.3), (4.6, 9.2),
                (10.7, 10.6)]
    assert seams.seam_excess(_rows(default)) == pytest.approx(-0.15)
    assert seams.seam_excess(_rows(adaptive)) == pytest.approx(1.7)
    # a join that clicks at every seam: +6 dB over each control, beyond the stage's bound
    clicks = [(c + 6.0, c) for _, c in default]
    assert seams.seam_excess(_rows(clicks)) == pytest.approx(6.0)
    # rows without a control (a seam too close to the start) are left out; none: None
    assert seams.seam_excess(_rows([(9.0, None), (12.0, 10.0)])) == pytest.approx(2.0)
    assert seams.seam_excess([]) is None


def test_texts_have_the_advertised_sizes():
    assert 1400 <= texts.word_count(texts.article()) <= 1600
    assert 100 <= texts.word_count(texts.paragraph()) <= 140
    assert "\n\n" in texts.article()


def test_baselines_run_on_our_session(cfg, engine):
    base = baseline.KokoroBaseline(cfg, session=engine.session)
    text = "Hello there. How are you today?"
    create = base.run_create(text)
    assert len(create.arrivals) == 1 and create.audio_s > 0.5
    stream = base.run_create_stream(text)
    assert stream.arrivals == sorted(stream.arrivals) and stream.audio_s > 0.5


def test_run_stream_records_every_chunk(engine):
    from labkit.engine.pipeline import StreamingSynthesizer

    run = streaming.run_stream(StreamingSynthesizer(engine), "One, two. Three four five.", keep_audio=True)
    assert run.words_present and len(run.arrivals) == len(run.chunks) >= 2
    assert run.audio is not None and len(run.audio) / 24000 == pytest.approx(run.audio_s)
    # what says why a stream stalled: the cores it used and the pages it read back
    assert 0 < run.cpu_utilization <= 1 and isinstance(run.extra["major_faults"], int)
    assert run.extra["major_faults"] >= 0
    each = chunkings.each_run([run, run])
    assert each["major_faults_each"] == [run.extra["major_faults"]] * 2
    assert each["rtf_each"] == [round(run.rtf, 3)] * 2 and len(each["cpu_utilization_each"]) == 2


class _Clock:
    """A clock that moves only when told (the fake stream moves it as chunks arrive)."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


class _LateStream:
    """StreamingSynthesizer.open_stream's stream on a fake clock: chunk k of ``durations[k]``
    seconds arrives ``arrivals[k]`` seconds after the stream opened."""

    def __init__(self, clock, text, arrivals, durations):
        from types import SimpleNamespace

        self.clock, self.t0, self.source_text = clock, clock.now, text
        self.schedule = list(zip(text.split(), arrivals, durations))
        self.stats = SimpleNamespace(failures=[], retries=0, max_ahead=1, opening_load=0.0,
                                     primer_floor=0, per_session={})
        self.chunk = lambda i, word, d: SimpleNamespace(
            index=i, text=word, tokens=3, boundary="sentence", session=0, synth_seconds=0.1,
            started_at=0.0, done_at=0.0, ready_at=0.0, duration=d, attempts=1,
            audio=np.full(int(d * 24000), 0.1, np.float32), words=[])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        for i, (word, at, d) in enumerate(self.schedule):
            self.clock.now = self.t0 + at
            yield self.chunk(i, word, d)


def test_run_stream_counts_the_underruns_of_a_stream_that_arrives_late(monkeypatch):
    """Chunks of 1 s arriving at 0.5, 1.0, 3.0 and 4.7 s: playback starts at 0.5 and stalls
    0.5 s before the third chunk and 0.7 s before the fourth: two underruns, 1.2 s."""
    from types import SimpleNamespace

    clock = _Clock()
    monkeypatch.setattr(streaming, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    text = "One. Two. Three. Four."
    synth = SimpleNamespace(open_stream=lambda t, *a: _LateStream(clock, t, [0.5, 1.0, 3.0, 4.7], [1.0] * 4))
    run = streaming.run_stream(synth, text)
    assert run.arrivals == pytest.approx([0.5, 1.0, 3.0, 4.7]) and run.words_present
    summary = run.summary()
    assert summary["underruns"] == 2 and summary["underrun_s"] == pytest.approx(1.2)
    assert summary["ttfa_s"] == pytest.approx(0.5) and summary["total_s"] == pytest.approx(4.7)
    row = streaming.summarize_runs([run])
    assert row["underruns_max"] == 2 and streaming.stream_failures(row) == ["underruns"]
    # a 1.5 s start-up buffer starts playback at 1.0 s: the third chunk comes just in time,
    # the fourth 0.7 s late
    late = run.summary(startup_buffer_s=1.5)
    assert late["underruns"] == 1 and late["underrun_s"] == pytest.approx(0.7)
    on_time = streaming.run_stream(SimpleNamespace(open_stream=lambda t, *a: _LateStream(
        clock, t, [0.5, 1.0, 1.5, 2.5], [1.0] * 4)), text)
    assert on_time.summary()["underruns"] == 0


def test_coreml_candidates_are_skipped_with_the_reason_where_missing(cfg):
    import onnxruntime as ort

    cand = {"name": "coreml", "sessions": 2, "session": {"providers": ["CoreMLExecutionProvider"]}}
    missing = s06.unavailable_providers(cand)
    if "CoreMLExecutionProvider" in ort.get_available_providers():
        pytest.skip("CoreML is available here")
    assert missing == ["CoreMLExecutionProvider"]
    rows, comparisons = s06.compare_sessions(cfg, [cand], ["phrase"], rounds=1)
    assert rows[0]["status"].startswith("skipped: CoreMLExecutionProvider not available")
    assert comparisons == {}
    dual = s06.candidate_config(cfg, {"sessions": 2, "session": {"intra_op_threads": 1},
                                        "second_session": {"intra_op_threads": 1}})
    assert dual.pipeline.sessions == 2 and dual.session.intra_op_threads == 1


@pytest.mark.model
def test_many_layouts_are_screened_and_only_the_leaders_confirmed(cfg):
    """Issue #31: with more layouts than ``confirm_top`` beside the first, every layout streams
    the screen text briefly and only the leaders stream the stage's texts; the others keep a
    row saying by how much they trailed, and the screen's comparison is recorded."""
    cands = [{"name": "single", "sessions": 1},
             {"name": "single 1 thread", "sessions": 1, "session": {"intra_op_threads": 1}},
             {"name": "dual 1+1", "sessions": 2, "session": {"intra_op_threads": 1},
              "second_session": {"intra_op_threads": 1}}]
    rows, comparisons = s06.compare_sessions(cfg, cands, ["phrase"], rounds=1, screen_text="phrase",
                                             screen_rounds=1, confirm_top=1)
    screen = comparisons["screen: whole-stream time, phrase"]
    assert set(screen["candidates"]) == {"single", "single 1 thread", "dual 1+1", "single (A/A)"}
    assert screen["rounds"] == 1
    ok = [r["candidate"] for r in rows if r["status"] == "ok"]
    out = [r for r in rows if r["status"].startswith("screened out")]
    assert len(ok) == 2 and ok[0] == "single" and len(out) == 1 and out[0]["candidate"] not in ok
    leader = ok[1]
    ratio = screen["candidates"][out[0]["candidate"]]["ratio"]
    assert f"{ratio:.2f}x the first layout's" in out[0]["status"] and f"({leader})" in out[0]["status"]
    assert list(comparisons) == ["screen: whole-stream time, phrase", "whole-stream time, phrase"]
    assert set(comparisons["whole-stream time, phrase"]["candidates"]) == {"single", leader, "single (A/A)"}


# -- candidates offered to the journal's selection -------------------------------------------
def _row(label, ttfa, rtf, chunking, ci, underruns=0, words=True):
    return {"label": label, "ttfa_s": ttfa, "rtf": rtf, "chunking": chunking, "ttfa_ratio": 1.0,
            "ttfa_ci95": ci, "underruns_max": underruns, "words_present": words}


def _seam(passed=True, excess=0.4, reasons=()):
    return {"seam_excess_db": excess, "quality_passed": passed, "quality_reasons": list(reasons),
            "clicks": {"chunked": {"per_minute": 0.0}, "worst_seam_db": 3.0}}


def test_chunking_candidates_mark_the_default_and_carry_the_seams_verdict():
    from labkit.config import ChunkingConfig, SelectionConfig
    from labkit.lab.selection import rank

    base = ChunkingConfig()
    rows = [_row("default", 0.5, 0.3, dict(vars(base)), [0.97, 1.03]),
            _row("max_tokens=400", 0.5, 0.29, {**vars(base), "max_tokens": 400}, [1.1, 1.2], underruns=2),
            _row("primer_max_words=5", 0.4, 0.3, {**vars(base), "primer_max_words": 5}, [1.1, 1.3])]
    seam = {"default": _seam(), "primer_max_words=5": _seam(excess=-0.2)}
    out = s05.candidates(rows, seam, base)
    by = {c["name"]: c for c in out}
    assert by["chunking default"]["baseline"] is True and by["chunking default"]["overrides"] == {}
    assert by["chunking default"]["quality"]["verdict"] == "pass"
    assert by["chunking max_tokens=400"]["failed_checks"] == ["underruns"]
    assert by["chunking max_tokens=400"]["quality"]["verdict"] is None  # seams not measured
    assert by["chunking primer_max_words=5"]["lsd_db"] == 0.0  # the old excess, reported
    assert [c["name"] for c in rank(out, SelectionConfig())] == ["chunking primer_max_words=5"]
    # a click at a seam fails the check, whatever the old LSD excess said
    seam["primer_max_words=5"] = _seam(False, -0.2, ["1 seam(s) hold a click (worst 30 dB > 21 dB)"])
    out = s05.candidates(rows, seam, base)
    assert rank(out, SelectionConfig()) == []


def test_the_chosen_chunking_carries_the_opening_its_sweep_earned():
    from labkit.config import ChunkingConfig

    base = ChunkingConfig()
    rows = [_row("default", 0.5, 0.3, dict(vars(base)), [0.97, 1.03]),
            _row("primer_max_words=5", 0.4, 0.3, {**vars(base), "primer_max_words": 5}, [1.1, 1.3])]
    seam = {"default": _seam(), "primer_max_words=5": _seam()}
    earned = {"chosen": "primer_max_words=5",
              "overrides": {"chunking.opening": "prefix", "pipeline.first_alone": True}}
    by = {c["name"]: c for c in s05.candidates(rows, seam, base, opening=earned)}
    assert by["chunking primer_max_words=5"]["overrides"] == {
        "chunking.primer_max_words": 5, "chunking.opening": "prefix", "pipeline.first_alone": True}
    assert by["chunking default"]["overrides"] == {}  # only the choice was swept
    by = {c["name"]: c for c in s05.candidates(rows, seam, base, opening={**earned, "overrides": {}})}
    assert by["chunking primer_max_words=5"]["overrides"] == {"chunking.primer_max_words": 5}


def test_the_seams_verdict_needs_no_click_at_a_seam_and_no_more_clicks_than_unchunked():
    SR = 24_000
    rng = np.random.default_rng(0)
    t = np.arange(SR * 4) / SR
    voiced = 0.2 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    noise = voiced + 1e-4 * rng.standard_normal(t.size)
    clean = seams.click_report(noise, noise, [SR, 2 * SR])
    assert clean["clicks_at_seams"] == 0 and seams.verdict(clean) == (True, [])
    clicked = noise.copy()
    clicked[SR] += 0.3  # a step at the first seam
    rep = seams.click_report(clicked, noise, [SR, 2 * SR])
    ok, why = seams.verdict(rep)
    assert not ok and rep["clicks_at_seams"] == 1 and "hold a click" in why[0]
    many = noise.copy()
    for k in range(1, 12):  # clicks between the seams, far more often than the reference
        many[int(k * SR / 3) + 100] += 0.3
    rep = seams.click_report(many, noise, [])
    assert not rep["no_more_than_unchunked"] and "per minute" in seams.verdict(rep)[1][0]


def test_session_candidates_from_measured_rows():

    common = {"status": "ok", "text": "paragraph", "underruns_max": 0, "words_present": True}
    rows = [
        {**common, "candidate": "single 2", "sessions": 1, "ttfa_s": 0.4, "rtf": 0.3,
         "session": {"intra_op_threads": 2}, "pipeline": {"sessions": 1, "second_session": {},
                                                         "routing": "first-fast"},
         "change_vs_first_db": 0.0, "length_matches_first": True, "ci95": [0.97, 1.03]},
        {**common, "candidate": "dual 1+1", "sessions": 2, "ttfa_s": 0.6, "rtf": 0.35,
         "session": {"intra_op_threads": 1}, "pipeline": {"sessions": 2, "second_session": {"intra_op_threads": 1},
                                                         "routing": "first-fast"},
         "change_vs_first_db": 0.01, "length_matches_first": True, "ratio": 0.9, "ci95": [0.85, 0.95]},
        {"candidate": "coreml", "text": "paragraph", "status": "skipped: no CoreML"},
    ]
    out = s06.session_candidates(rows, {"candidate": "single 2"})
    assert [c["name"] for c in out] == ["single 2", "dual 1+1"]
    assert out[0]["overrides"] == {"session.intra_op_threads": 2, "pipeline.sessions": 1}
    assert out[1]["overrides"]["pipeline.second_session"] == {"intra_op_threads": 1}
    assert out[1]["lsd_db"] == 0.01 and out[1]["failed_checks"] == ["not the stage's rule"]
    assert out[0]["failed_checks"] == [] and out[0]["baseline"] is True
    assert out[1]["ratio"] == 0.9 and out[1]["ci95"] == [0.85, 0.95]
    # the rule kept one session although it underran once: the journal may drop that
    # candidate (an honest check) but never swaps in the pair the rule measured as worse
    rows[0]["underruns_max"] = 1
    out = s06.session_candidates(rows, {"candidate": "single 2"})
    from labkit.config import SelectionConfig
    from labkit.lab.selection import rank
    assert out[0]["failed_checks"] == ["underruns"] and rank(out, SelectionConfig()) == []


def test_chunking_candidates_fail_on_underruns_a_listener_heard_under_load():
    from labkit.config import ChunkingConfig

    base = ChunkingConfig()
    rows = [_row("default", 0.5, 0.3, dict(vars(base)), [0.97, 1.03]),
            _row("schedule=adaptive", 0.4, 0.3, {**vars(base), "schedule": "adaptive"}, [1.1, 1.3])]
    seam = {"default": _seam(), "schedule=adaptive": _seam(excess=0.3)}
    heard = [{"label": "schedule=adaptive", "load_processes": 0, "underruns_max": 0},
             {"label": "schedule=adaptive", "load_processes": 1, "underruns_max": 2}]
    by = {c["name"]: c for c in s05.candidates(rows, seam, base, heard)}
    assert by["chunking schedule=adaptive"]["failed_checks"] == [
        "underruns as a listener hears it (+1 busy)"]
    assert by["chunking default"]["failed_checks"] == []


def test_the_stage_measures_what_the_journal_would_ship():
    # the sweep's fastest variant underran for a listener: the stage's own choice (what its
    # article, cancel and targets are measured on) is the configured chunking, as the
    # journal's selection decides; without the underrun the variant is the choice
    from labkit.config import ChunkingConfig, SelectionConfig

    base = ChunkingConfig()
    rows = [_row("default", 0.5, 0.3, dict(vars(base)), [0.97, 1.03]),
            _row("schedule=adaptive", 0.4, 0.3, {**vars(base), "schedule": "adaptive"}, [1.1, 1.3])]
    seam = {"default": _seam(), "schedule=adaptive": _seam(excess=0.3)}
    heard = [{"label": lab, "load_processes": n, "underruns_max": 0}
             for lab in ("default", "schedule=adaptive") for n in (0, 1)]
    rules = SelectionConfig()
    assert s05.stage_choice(rows, seam, base, heard, rules) == "schedule=adaptive"
    heard[2]["underruns_max"] = 1  # the variant, idle
    assert s05.stage_choice(rows, seam, base, heard, rules) == s05.BASELINE


def test_a_variant_whose_seams_click_is_not_chosen():
    # the seams are judged by the click detector, not by the old LSD excess: the adaptive
    # cut's 1.72 dB excess (run-20261130-024620) is no reason, a click at a seam is
    from labkit.config import ChunkingConfig, SelectionConfig

    base = ChunkingConfig()
    rows = [_row("default", 0.5, 0.3, dict(vars(base)), [0.97, 1.03]),
            _row("schedule=adaptive", 0.4, 0.3, {**vars(base), "schedule": "adaptive"}, [1.1, 1.3]),
            _row("prosody=sentence", 0.45, 0.3, {**vars(base), "prosody": "sentence"}, [1.05, 1.2])]
    seam = {"default": _seam(excess=-0.18),
            "schedule=adaptive": _seam(False, 1.72, ["1 seam(s) hold a click (worst 25.0 dB > 21.0 dB)"]),
            "prosody=sentence": _seam(excess=-0.18)}
    heard = [{"label": lab, "load_processes": n, "underruns_max": 0}
             for lab in ("default", "schedule=adaptive", "prosody=sentence") for n in (0, 1)]
    by = {c["name"]: c for c in s05.candidates(rows, seam, base, heard)}
    assert by["chunking schedule=adaptive"]["quality"]["verdict"] == "fail"
    assert by["chunking prosody=sentence"]["failed_checks"] == []
    assert s05.stage_choice(rows, seam, base, heard, SelectionConfig()) == "prosody=sentence"


def test_a_variant_no_listener_heard_cannot_be_chosen():
    from labkit.config import ChunkingConfig, SelectionConfig

    base = ChunkingConfig()
    rows = [_row("default", 0.5, 0.3, dict(vars(base)), [0.97, 1.03]),
            _row("schedule=adaptive", 0.4, 0.3, {**vars(base), "schedule": "adaptive"}, [1.1, 1.3])]
    seam = {"default": _seam(), "schedule=adaptive": _seam(excess=0.3)}
    heard = [{"label": "default", "load_processes": n, "underruns_max": 0} for n in (0, 1)]
    by = {c["name"]: c for c in s05.candidates(rows, seam, base, heard)}
    assert by["chunking schedule=adaptive"]["failed_checks"] == [
        "not heard as a listener (idle and under load)"]
    assert s05.stage_choice(rows, seam, base, heard, SelectionConfig()) == s05.BASELINE


def test_the_discontinuity_scale_is_read_where_audio_has_no_join():
    t = np.arange(24000 * 3) / 24000
    smooth = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    scale = seams.natural_discontinuity(smooth)
    assert set(scale) == {"p50", "p90", "p99"} and scale["p50"] <= scale["p90"] <= scale["p99"]
    assert scale["p99"] < 1.5  # a steady tone moves the same everywhere
    clicky = smooth.copy()
    clicky[::2400] += 0.8  # a click every 0.1 s: every 10 ms window next to one reads high
    assert seams.natural_discontinuity(clicky)["p99"] > 3 * scale["p99"]
    assert seams.natural_discontinuity(smooth[:12000]) == {}  # shorter than its edges
