"""The adaptive schedule: speed model, playback clock and budget (no model needed)."""
from __future__ import annotations

import pytest

from labkit.config import ChunkingConfig
from labkit.engine.chunking import ChunkingError, validate
from labkit.engine.schedule import (LiveSchedule, PlannedSchedule, PlaybackClock, SpeedModel,
                                    break_even, budget, part_a_due_s, part_a_s,
                                    primer_floor)

CFG = ChunkingConfig()


def test_the_speed_model_follows_a_slowdown_faster_than_a_speedup():
    m = SpeedModel(overhead_s=0.1, per_token_s=0.01)
    m.update(100, 3 * m.shape(100))  # three times slower now (another process)
    assert 2.0 < m.factor <= 3.0
    m2 = SpeedModel(overhead_s=0.1, per_token_s=0.01, factor=3.0)
    m2.update(100, m2.shape(100))  # three times faster
    assert 1.0 <= m2.factor and (3.0 - m2.factor) < (m.factor - 1.0)
    assert m.predict(200) > m.predict(100) > m.predict(0) == m.factor * m.overhead_s


def test_load_learnt_on_a_short_piece_applies_to_long_ones():
    m = SpeedModel(overhead_s=0.3, per_token_s=0.017)
    for _ in range(5):
        m.update(10, 2 * m.shape(10))  # the primer ran at half speed
    assert m.predict(200) == pytest.approx(2 * m.shape(200), rel=0.02)
    assert m.tokens_within(m.predict(120)) == pytest.approx(120)


def test_nonsense_observations_are_ignored():
    m = SpeedModel()
    before = (m.overhead_s, m.per_token_s, m.pieces)
    m.update(0, 1.0)
    m.update(50, 0.0)  # a cache hit: no compute
    assert (m.overhead_s, m.per_token_s, m.pieces) == before


def test_the_playback_clock_stalls_when_the_next_chunk_is_late():
    c = PlaybackClock()
    assert c.ahead(5.0) == 0.0
    c.deliver(2.0, now=1.0)  # plays 1..3
    assert c.ahead(1.5) == pytest.approx(1.5)
    c.deliver(1.0, now=2.0)  # queued: plays 3..4
    assert c.ahead(2.0) == pytest.approx(2.0)
    c.deliver(1.0, now=6.0)  # late: a stall from 4 to 6, plays 6..7
    assert c.ahead(6.0) == pytest.approx(1.0)
    c.adjust(0.25)
    assert c.ahead(6.0) == pytest.approx(1.25)


def test_budget_grows_with_the_buffer_and_shrinks_with_the_speed():
    fast, slow = SpeedModel(0.1, 0.01), SpeedModel(0.1, 0.03)
    thin, thick = budget([fast], 1.0, CFG, 250), budget([fast], 3.0, CFG, 250)
    assert CFG.schedule_min_tokens <= thin < thick <= 250
    assert budget([fast], 100.0, CFG, 250) == 250  # never over max_tokens
    assert budget([slow], 3.0, CFG, 250) < thick
    assert budget([fast, slow], 3.0, CFG, 250) == budget([slow], 3.0, CFG, 250)  # the slowest
    # the piece chosen is predicted ready, with the margin, before the buffer runs out
    n = budget([fast], 2.0, CFG, 250)
    assert fast.predict(n) * CFG.schedule_margin + CFG.schedule_safety_s <= 2.0


def test_when_no_piece_can_be_ready_in_time_it_takes_an_efficient_one():
    m = SpeedModel(overhead_s=0.5, per_token_s=0.01)
    n = budget([m], 0.2, CFG, 250)  # nothing fits: a stall is coming anyway
    assert n == 200  # fixed cost a fifth of the piece's compute, not a sliver


def test_live_schedule_counts_undelivered_audio_and_learns():
    now = [0.0]
    models = [SpeedModel(0.1, 0.01)]
    live = LiveSchedule(CFG, models, 250, clock=lambda: now[0])
    assert live.ahead() == 0.0
    live.synthesized(0, 40, 0.5, 2.0)  # the primer is ready, not yet handed out
    assert live.ahead() == pytest.approx(2.0)
    assert models[0].pieces == 1
    live.delivered(2.0, 2.1)
    now[0] = 1.0
    assert live.ahead() == pytest.approx(1.1)
    b = live.budget([40])
    assert live.decisions == [(b, 1.1)]


def test_the_planned_schedule_ramps_up_to_max_tokens():
    plan = PlannedSchedule(CFG, SpeedModel(0.1, 0.01, audio_per_token_s=0.06), 250)
    history, budgets = [10], []
    for _ in range(8):
        budgets.append(plan.budget(history))
        history.append(budgets[-1])
    assert budgets == sorted(budgets) and budgets[-1] == 250


@pytest.mark.parametrize("bad", [{"schedule": "fast"}, {"schedule_margin": 0.5},
                                 {"schedule_safety_s": -1}, {"schedule_min_tokens": 0}])
def test_bad_schedule_settings_are_named(bad):
    with pytest.raises(ChunkingError, match=f"chunking.{next(iter(bad))}"):
        validate(ChunkingConfig(**bad))


def test_a_thin_buffer_that_still_fits_the_smallest_piece_gets_it():
    m = SpeedModel(overhead_s=0.3, per_token_s=0.017)
    # fits raw (with the safety), not with the margin
    ahead = m.predict(CFG.schedule_min_tokens) + CFG.schedule_safety_s + 0.05
    assert budget([m], ahead, CFG, 250) == CFG.schedule_min_tokens


def test_after_a_short_primer_the_second_piece_is_what_can_be_ready_in_time():
    m = SpeedModel()
    ahead = 0.65  # a 10-token primer's audio
    n = budget([m], ahead, CFG, 250)
    assert break_even([m]) <= n < CFG.schedule_min_tokens
    assert m.predict(n) + CFG.schedule_safety_s <= ahead < m.predict(n + 1) + CFG.schedule_safety_s
    # the same buffer on a machine twice as slow: no piece that adds to the buffer can be
    # ready, so one efficient piece (the stall is coming anyway), not a shrinking one
    slow = budget([m], ahead, CFG, 250, load=2.0)
    assert slow >= CFG.schedule_min_tokens and m.predict(slow, 2.0) > ahead


def test_observations_under_a_sensed_load_teach_the_sessions_own_speed():
    m = SpeedModel()
    for _ in range(5):
        m.update(60, 2 * m.shape(60), load=2.0)  # twice as slow, and the sensor said so
    assert m.factor == pytest.approx(1.0)
    assert m.predict(60, load=2.0) == pytest.approx(2 * m.shape(60))
    # the same slowdown unsensed is learnt as the session's own
    m2 = SpeedModel()
    for _ in range(5):
        m2.update(60, 2 * m2.shape(60))
    assert m2.factor == pytest.approx(2.0, rel=0.05)


def test_a_noisy_sensed_load_does_not_drift_the_factor_upward():
    m = SpeedModel()
    for _ in range(40):  # truly 2x slower; the sensor reads 1.6 and 2.5 in turn
        for sensed in (1.6, 2.5):
            m.update(60, 2 * m.shape(60), load=sensed)
    assert m.factor == pytest.approx(1.0, abs=0.05)


def test_the_longest_pieces_cost_more_per_token_than_short_ones():
    m = SpeedModel()
    assert m.shape(244) / 244 > m.shape(140) / 140 * 1.01 > 0
    assert m.tokens_within(m.predict(200)) == pytest.approx(200)


def test_the_first_piece_is_longer_under_load():
    idle = primer_floor([SpeedModel()], CFG, 250)
    loaded = primer_floor([SpeedModel()], CFG, 250, load=2.0)
    assert 5 <= idle <= 12  # three short words: the configured primer stands
    assert loaded >= 3 * idle
    # at the floor, a second piece as long is predicted ready (with the margin) before
    # the first has played; one token less and it is not
    m = SpeedModel()
    for load, n in ((1.0, idle), (2.0, loaded)):
        assert m.predict(n, load) * CFG.schedule_margin <= n * m.audio_per_token_s
        assert m.predict(n - 1, load) * CFG.schedule_margin > (n - 1) * m.audio_per_token_s
    # a machine slower than real time cannot keep up at any length, and one may need a
    # first piece longer than a primer may be: the floor is then what a primer may hold
    # (the first audio is not held back further for a gap that may come anyway)
    assert break_even([SpeedModel(factor=4.0)], 1.0, 250, CFG.schedule_margin) == 250
    assert primer_floor([SpeedModel(factor=4.0)], CFG, 250) == CFG.primer_max_tokens
    assert loaded <= CFG.primer_max_tokens
    tight = ChunkingConfig(primer_max_tokens=loaded - 1)
    assert primer_floor([SpeedModel()], tight, 250, load=2.0) == loaded - 1
    assert primer_floor([SpeedModel()], tight, 250) == idle


def test_the_live_schedule_sizes_the_first_piece_for_the_load_it_senses():
    load = [1.0]
    models = [SpeedModel()]
    live = LiveSchedule(CFG, models, 250, load=lambda: load[0])
    idle = live.primer_floor()
    load[0] = 2.0
    assert live.primer_floor() > idle and live.opening_load == 2.0
    # a finished piece is learnt net of the load sensed around it
    live.synthesized(0, 60, 2 * models[0].shape(60), 3.0)
    assert models[0].factor == pytest.approx(1.0)
    # and the audio per token is what the listener hears, not the raw model output
    live.played(0, 50, 2.5)
    assert models[0].audio_per_token_s == pytest.approx(0.06 + 0.3 * (0.05 - 0.06))


def test_a_window_breaks_even_shorter_than_a_whole_run_and_a_part_a_to_come_lengthens_it():
    """A piece vocoded from its sentence's part A has no padded silence to pay for
    (SpeedModel.windowed): on the same machine (factor 2, as this one learns) its break-even
    first piece is less than half the whole run's. A second piece that must first run part
    A over a long sentence (the rest of a prefix-made opening) needs a longer first piece:
    at the floor, the part A and a second piece as long fit in the first's audio."""
    whole, win = SpeedModel(factor=2.0), SpeedModel.windowed()
    win.factor = 2.0
    assert 2 * primer_floor([win], CFG, 250) < primer_floor([whole], CFG, 250)
    plain = primer_floor([win], CFG, 250)
    after = primer_floor([win], CFG, 250, then_part_a=250)
    assert after > plain
    need = lambda n: CFG.schedule_margin * win.factor * (win.shape(n) + part_a_s(250))
    assert need(after) <= after * win.audio_per_token_s
    assert need(after - 1) > (after - 1) * win.audio_per_token_s


def test_the_live_schedule_sizes_windows_by_the_window_model_net_of_part_a():
    whole, win = SpeedModel(), SpeedModel.windowed()
    live = LiveSchedule(CFG, [whole], 250, window_models=[win])
    assert live.primer_floor() == primer_floor([win], CFG, 250)
    assert live.budget() == budget([win], 0.0, CFG, 250)
    # a window learns its part B: the part A it paid for its sentence is taken out
    live.synthesized(0, 40, 2 * win.shape(40) + 0.3, 2.4, windowed=True, part_a_s=0.3)
    assert win.factor == pytest.approx(1.0 + win.up) and whole.factor == 1.0
    # a piece run whole teaches the whole-run model, all of its seconds
    live.synthesized(0, 40, 2 * whole.shape(40), 2.4)
    assert whole.factor == pytest.approx(1.0 + whole.up)
    # the audio per token is the text's: both learn it
    live.played(0, 50, 2.5)
    assert whole.audio_per_token_s == win.audio_per_token_s
    # without window models (piece prosody) every piece teaches the whole-run model
    solo = LiveSchedule(CFG, [SpeedModel()], 250)
    solo.synthesized(0, 40, 2 * SpeedModel().shape(40), 2.4, windowed=True, part_a_s=0.3)
    assert solo.models[0].factor > 1.0 and solo.sizing is solo.models


def test_a_window_opening_a_sentence_is_budgeted_net_of_its_part_a():
    """The part A a piece runs first comes off the audio buffered ahead, at the window
    model's learnt speed and the load now; a stream without sentence windows pays none."""
    win = SpeedModel.windowed()
    win.factor = 2.0
    now = [0.0]
    live = LiveSchedule(CFG, [SpeedModel()], 250, clock=lambda: now[0], load=lambda: 1.5,
                        window_models=[win])
    live.delivered(3.0, 3.0)  # 3 s of audio buffered ahead of the listener
    due = part_a_due_s([win], 230, 1.5)
    assert due == pytest.approx(2.0 * 1.5 * part_a_s(230))
    assert live.budget([10], 230) == budget([win], 3.0 - due, CFG, 250, 1.5)
    assert live.budget([10], 230) < live.budget([10], 0) == budget([win], 3.0, CFG, 250, 1.5)
    whole = LiveSchedule(CFG, [SpeedModel()], 250, clock=lambda: now[0])
    whole.delivered(3.0, 3.0)
    assert whole.budget([10], 230) == whole.budget([10], 0)
    assert part_a_due_s([win], 0) == 0.0 and part_a_due_s([], 230) == 0.0
