"""Streaming pipeline: the pinned interface, order, failover, bounded queue, cancellation."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from labkit.engine import chunking, cpuload, schedule
from labkit.config import ChunkingConfig, PipelineConfig
from labkit.engine.pipeline import StreamingSynthesizer, build_engines
from labkit.engine.chunks import Chunk
from labkit.engine.stream import PipelineError
from labkit.engine.voices import Voicing

TEXT = ("At the edge of the harbor, the old ferry leaves at seven. The captain waves. "
        "Most passengers sleep, some read, and a few watch the sea.")
CLAUSES = ChunkingConfig(strategy="clause", min_tokens=0)


class FakeEngine:
    """Stands in for an Engine: a tone per piece after a delay; can fail. Takes the
    stream's ``run_options`` and, unlike the real one, ignores them (finishes its piece)."""

    def __init__(self, cfg, delay=0.0, fail=False):
        self.cfg = cfg
        self.delay = delay
        self.fail = fail
        self.calls: list[list[int]] = []
        self.active = 0
        self.lock = threading.Lock()

    def run_tokens(self, tokens, voice=None, speed=None, run_options=None):
        with self.lock:
            self.calls.append(tokens)
            self.active += 1
        try:
            time.sleep(self.delay(tokens) if callable(self.delay) else self.delay)
            if self.fail:
                raise RuntimeError("session lost")
            n = 240 * max(1, len(tokens))
            audio = (0.2 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
            return SimpleNamespace(audio=audio, seconds=0.0)
        finally:
            with self.lock:
                self.active -= 1


def session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kokoro-session-") and t.is_alive()]


def synth(engines, routing="first-fast", depth=4, chunk_cfg=CLAUSES,
          first_alone=False) -> StreamingSynthesizer:
    return StreamingSynthesizer(engines[0], engines, PipelineConfig(
        routing=routing, queue_depth=depth, first_alone=first_alone), chunk_cfg, first_session=0)


# -- the real model -------------------------------------------------------------------------
def test_stream_real_model_in_order_with_all_words(engine):
    s = StreamingSynthesizer(engine, chunking_cfg=ChunkingConfig(schedule="adaptive"))
    chunks = list(s.stream(TEXT))
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) >= 3
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunking.words_present(TEXT, [c.text for c in chunks])
    for c in chunks:
        assert isinstance(c, Chunk) and c.audio.dtype == np.float32 and c.duration > 0
        assert c.phonemes and c.synth_seconds > 0 and c.ready_at >= c.done_at >= c.started_at
    assert all(a.ready_at <= b.ready_at for a, b in zip(chunks, chunks[1:]))
    # the adaptive schedule sized every piece after the primer live
    assert s.adaptive and len(s.last_stats.budgets) == len(chunks) - 1
    assert s.speed_models[0].pieces >= len(chunks)  # and learnt from every piece


def test_the_ramp_streams_the_pieces_it_lists(engine):
    s = StreamingSynthesizer(engine, chunking_cfg=ChunkingConfig(schedule="ramp"))
    chunks = list(s.stream(TEXT))
    assert [p.text for p in s.pieces(TEXT)] == [c.text for c in chunks]
    assert not s.last_stats.budgets


def test_synthesize_and_astream_match_stream(engine):
    s = StreamingSynthesizer(engine)
    text = "Hello there. How are you?"
    whole = s.synthesize(text)
    assert len(whole) == sum(len(c.audio) for c in s.stream(text))

    async def collect():
        return [c async for c in s.astream(text)]

    assert [c.text for c in asyncio.run(collect())] == ["Hello there.", "How are you?"]


def test_bad_voice_and_speed_fail_before_any_work(engine):
    s = StreamingSynthesizer(engine)
    with pytest.raises(ValueError, match="af_heart|unknown voice"):
        list(s.stream("Hi.", voice="af_hart"))
    with pytest.raises(ValueError, match="speed"):
        list(s.stream("Hi.", speed=3.0))


def test_two_real_sessions_split_threads(cfg, engine):
    dual = cfg.with_overrides({"pipeline.sessions": 2, "pipeline.first_session": 0,
                               "pipeline.second_session": {"intra_op_threads": 1}})
    engines = build_engines(dual, engine)
    assert len(engines) == 2 and engines[0] is engine
    assert engines[1].session.get_session_options().intra_op_num_threads == 1
    s = StreamingSynthesizer(engines[0], engines, PipelineConfig(routing="round-robin"), CLAUSES, 0)
    chunks = list(s.stream(TEXT))
    assert chunks[0].session == 0
    assert {c.session for c in chunks} == {0, 1}
    assert chunking.words_present(TEXT, [c.text for c in chunks])


# -- the scheduler with stand-in sessions ---------------------------------------------------------
def test_output_in_text_order_under_out_of_order_completion(cfg):
    slow, fast = FakeEngine(cfg, delay=0.4), FakeEngine(cfg, delay=0.01)
    # the look-ahead starts beside the first piece here (pipeline.first_alone off)
    chunks = list(synth([slow, fast]).stream(TEXT))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].session == 0
    # later pieces finished before the first one: order was restored, not given
    assert any(c.done_at < chunks[0].done_at for c in chunks[1:])


@pytest.mark.parametrize("first_alone", [True, False])
def test_nothing_starts_beside_the_first_piece_until_it_is_handed_out(cfg, first_alone):
    # a free second session would start the next pieces at once; with first_alone they
    # wait until the first chunk is out (their chunking and G2P included)
    slow, fast = FakeEngine(cfg, delay=0.3), FakeEngine(cfg, delay=0.01)
    chunks = list(synth([slow, fast], first_alone=first_alone).stream(TEXT))
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) > 2
    first_out = chunks[0].ready_at
    waited = all(c.started_at >= first_out for c in chunks[1:])
    assert waited is first_alone
    assert chunking.words_present(TEXT, [c.text for c in chunks])


def test_round_robin_alternates_sessions(cfg):
    a, b = FakeEngine(cfg), FakeEngine(cfg)
    chunks = list(synth([a, b], routing="round-robin").stream(TEXT))
    assert [c.session for c in chunks] == [i % 2 for i in range(len(chunks))]


def test_failover_retries_on_the_other_session_and_counts(cfg):
    good, bad = FakeEngine(cfg, delay=0.02), FakeEngine(cfg, fail=True)
    s = synth([good, bad], routing="round-robin")
    chunks = list(s.stream(TEXT))
    assert chunking.words_present(TEXT, [c.text for c in chunks])
    assert all(c.session == 0 for c in chunks)
    stats = s.last_stats
    assert len(stats.failures) == len(bad.calls) > 0
    assert stats.retries == len(stats.failures)
    assert any(c.attempts == 2 for c in chunks)
    assert stats.per_session[1]["failures"] == len(bad.calls)


def test_failure_on_every_session_raises(cfg):
    s = synth([FakeEngine(cfg, fail=True), FakeEngine(cfg, fail=True)])
    with pytest.raises(PipelineError, match="failed on every session"):
        list(s.stream(TEXT))
    assert not session_threads()


def test_single_session_retries_once(cfg):
    calls = {"n": 0}

    class Flaky(FakeEngine):
        def run_tokens(self, tokens, voice=None, speed=None, run_options=None):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("transient")
            return super().run_tokens(tokens, voice, speed, run_options)

    s = synth([Flaky(cfg)])
    chunks = list(s.stream(TEXT))
    assert chunking.words_present(TEXT, [c.text for c in chunks])
    assert len(s.last_stats.failures) == 1


@pytest.mark.parametrize("depth", [1, 2])
def test_queue_stays_bounded_with_a_slow_consumer(cfg, depth):
    engines = [FakeEngine(cfg), FakeEngine(cfg)]
    s = synth(engines, depth=depth)
    stream = s.open_stream(TEXT)
    with stream:
        for _ in stream:
            time.sleep(0.05)  # the consumer is the bottleneck
    assert stream.stats.max_ahead <= depth
    assert stream.stats.pieces == len(s.pieces(TEXT))


def test_cancel_event_mid_stream_leaves_no_running_work(cfg):
    engines = [FakeEngine(cfg, delay=0.1), FakeEngine(cfg, delay=0.1)]
    cancel = threading.Event()
    s = synth(engines)
    got = []
    for c in s.stream(TEXT, cancel=cancel):
        got.append(c)
        cancel.set()
    assert len(got) == 1
    assert s.last_stats.cancelled
    assert not session_threads()
    assert all(e.active == 0 for e in engines)
    started = sum(len(e.calls) for e in engines)
    time.sleep(0.3)
    assert sum(len(e.calls) for e in engines) == started  # nothing starts afterwards


def test_closing_the_iterator_early_stops_workers(cfg):
    engines = [FakeEngine(cfg, delay=0.05)]
    s = synth(engines)
    gen = s.stream(TEXT)
    next(gen)
    gen.close()
    assert not session_threads()
    assert engines[0].active == 0
    assert len(engines[0].calls) < len(s.pieces(TEXT))


def test_close_while_a_piece_is_running_waits_for_it(cfg):
    engine = FakeEngine(cfg, delay=lambda tokens: 0.5)
    stream = synth([engine]).open_stream(TEXT)
    time.sleep(0.1)  # the first piece is running
    stream.close()
    assert not stream.running and engine.active == 0


# -- cancellation frees the session mid-piece ---------------------------------------------------
def _long_piece_stream(engine, terminate=True):
    text = " ".join([TEXT] * 3)
    s = StreamingSynthesizer(engine, pipeline=PipelineConfig(terminate_on_cancel=terminate),
                             chunking_cfg=ChunkingConfig(strategy="none"))  # ~400-token pieces
    return s, s.open_stream(text)


def test_cancel_aborts_the_piece_in_flight_and_frees_the_session(engine):
    s, stream = _long_piece_stream(engine)
    time.sleep(0.3)  # the first (long) piece is being synthesized
    assert stream.running
    stream.cancel()
    stream.close()
    assert not stream.running and stream.stats.cancelled
    # aborted mid-run, not synthesized to its end; not a failure, no retry
    assert stream.stats.aborted == 1 and not stream.stats.failures
    assert stream.stats.per_session[0]["pieces"] == 0
    # the session is free and works
    assert engine.synthesize_phonemes("həlˈO.").audio.size > 0


def test_a_cancel_event_also_aborts_the_run(engine):
    s, stream = _long_piece_stream(engine)
    cancel = threading.Event()
    stream.cancel_event = cancel
    time.sleep(0.3)
    cancel.set()
    with pytest.raises(StopIteration):
        next(stream)  # the consumer sees the cancel and stops the stream
    stream.close()
    assert stream.stats.cancelled and stream.stats.aborted == 1


def test_without_terminate_the_piece_finishes(engine):
    s, stream = _long_piece_stream(engine, terminate=False)
    time.sleep(0.3)
    stream.cancel()
    stream.close()
    assert stream.stats.aborted == 0 and stream.stats.per_session[0]["pieces"] == 1


def test_a_checked_voicing_is_taken_as_it_is(cfg):
    s = synth([FakeEngine(cfg)])
    stream = s.open_stream(TEXT, Voicing("af_heart", "en-us", 1.25))
    with stream:
        chunks = list(stream)
    assert (stream.voice, stream.speed) == ("af_heart", 1.25)
    assert chunking.words_present(TEXT, [c.text for c in chunks])


def faked_load(others: list[float]) -> cpuload.LoadMonitor:
    """A load monitor on a faked machine: other processes busy on ``others[0]`` cores
    (change it between streams), sampled when read."""
    machine = {"t": 0.0, "busy": 0.0}

    def read():
        machine["t"] += 0.3
        machine["busy"] += others[0] * 0.3
        return machine["busy"], 0.0

    return cpuload.LoadMonitor(period_s=0.2, window_s=0.3, read=read, clock=lambda: machine["t"],
                               background=False)


def test_the_primer_holds_fewer_tokens_idle_than_loaded_when_the_config_says_so(cfg):
    """``chunking.primer_max_tokens_idle``: the primer's token cap when the stream opens
    on an idle machine (the slowdown sensed then at most LOADED_SLOWDOWN); loaded,
    ``primer_max_tokens``."""
    others = [0.0]
    s = synth([FakeEngine(cfg)])
    g2p = s.g2p("en-us")
    three, two = (len(g2p(t).phonemes) for t in ("At the edge", "At the"))
    capped = ChunkingConfig(schedule="adaptive", primer_max_words=3, primer_min_words=1,
                            primer_max_tokens_idle=three - 1)
    s.chunking_cfg = capped
    s.load_monitor = faked_load(others)

    def fast():  # sessions predicted so fast that no floor lifts the primer, loaded or not
        for m in s.speed_models:
            m.factor = 1e-4

    s.load_monitor.sample()
    fast()
    idle = list(s.stream(TEXT))
    assert s.last_stats.opening_load <= schedule.LOADED_SLOWDOWN
    assert idle[0].text == "At the" and idle[0].tokens == two < three
    others[0] = float(os.cpu_count() or 1)  # every core taken by others
    s.load_monitor.sample()
    fast()
    loaded = list(s.stream(TEXT))
    assert s.last_stats.opening_load > schedule.LOADED_SLOWDOWN and loaded[0].text == "At the edge"
    for pieces in (idle, loaded):
        assert chunking.words_present(TEXT, [c.text for c in pieces])
    assert s.opening_chunking(SimpleNamespace(opening_load=1.0)).primer_max_tokens == three - 1
    assert s.opening_chunking(SimpleNamespace(opening_load=2.0)) is s.chunking_cfg
    assert s.opening_chunking(None) is s.chunking_cfg  # no adaptive schedule: as configured
    # without the idle cap, an idle stream opens as a loaded one would
    s.chunking_cfg = dataclasses.replace(capped, primer_max_tokens_idle=0)
    others[0] = 0.0
    s.load_monitor.sample()
    fast()
    assert list(s.stream(TEXT))[0].text == "At the edge"
    with pytest.raises(chunking.ChunkingError, match="primer_max_tokens_idle=-1"):
        chunking.validate(dataclasses.replace(capped, primer_max_tokens_idle=-1))


def test_a_loaded_stream_opens_with_at_least_the_loaded_floor_when_the_config_says_so(cfg):
    """``chunking.primer_min_tokens_loaded``: when the stream opens loaded (the slowdown
    sensed then above LOADED_SLOWDOWN), the first piece holds at least that many tokens
    however small the speed model's break-even; idle it stays as the primer cuts it; never
    past ``primer_max_tokens``."""
    others = [0.0]
    s = synth([FakeEngine(cfg)])
    g2p = s.g2p("en-us")
    three = len(g2p("At the edge").phonemes)
    floored = ChunkingConfig(schedule="adaptive", primer_max_words=3, primer_min_words=1,
                             primer_min_tokens_loaded=three + 1)
    s.chunking_cfg = floored
    s.load_monitor = faked_load(others)

    def fast():  # sessions predicted so fast that the break-even is a token or two
        for m in s.speed_models + s.window_models:
            m.factor = 1e-4

    s.load_monitor.sample()
    fast()
    idle = list(s.stream(TEXT))
    assert s.last_stats.opening_load <= schedule.LOADED_SLOWDOWN and idle[0].text == "At the edge"
    others[0] = float(os.cpu_count() or 1)  # every core taken by others
    s.load_monitor.sample()
    fast()
    loaded = list(s.stream(TEXT))
    assert s.last_stats.opening_load > schedule.LOADED_SLOWDOWN
    assert loaded[0].text.startswith("At the edge of") and loaded[0].tokens >= three + 1
    for pieces in (idle, loaded):
        assert chunking.words_present(TEXT, [c.text for c in pieces])
    model = schedule.SpeedModel(factor=1e-4)
    assert schedule.primer_floor([model], floored, 250, load=1.0) < three + 1
    assert schedule.primer_floor([model], floored, 250, load=2.0) == three + 1
    assert schedule.primer_floor([model], dataclasses.replace(floored, primer_max_tokens=three),
                                 250, load=2.0) == three  # the cap still holds
    with pytest.raises(chunking.ChunkingError, match="primer_min_tokens_loaded=-1"):
        chunking.validate(dataclasses.replace(floored, primer_min_tokens_loaded=-1))


def test_an_engine_that_ignores_run_options_still_cancels_between_pieces(cfg):
    e = FakeEngine(cfg, delay=0.05)
    s = synth([e])
    stream = s.open_stream(TEXT)
    next(stream)
    stream.cancel()
    stream.close()
    assert stream.stats.cancelled and not stream.running and stream.stats.aborted == 0


def test_the_first_piece_grows_with_the_load_sensed_when_the_stream_opens(cfg):
    others = [0.0]
    # a primer may hold up to 250 tokens here: the floor is not given up for the load
    adaptive = ChunkingConfig(schedule="adaptive", primer_max_words=3, primer_max_tokens=250)
    s = synth([FakeEngine(cfg)], chunk_cfg=adaptive)
    s.load_monitor = faked_load(others)
    s.load_monitor.sample()
    idle = list(s.stream(TEXT))
    assert s.last_stats.opening_load == 1.0 and idle[0].text == "At the edge"
    others[0] = float(os.cpu_count() or 1)  # every core taken by others
    s.load_monitor.sample()
    loaded = list(s.stream(TEXT))
    assert s.last_stats.opening_load > 1.0 and s.last_stats.primer_floor > idle[0].tokens
    assert loaded[0].tokens > idle[0].tokens and loaded[0].text.startswith("At the edge")
    assert chunking.words_present(TEXT, [c.text for c in loaded])
    # where breaking even would take more than a primer may hold, the floor is what a
    # primer may hold: the first piece still grows, the first audio is not held back further
    cap = (idle[0].tokens + s.last_stats.primer_floor) // 2
    assert idle[0].tokens < cap < s.last_stats.primer_floor
    s.chunking_cfg = dataclasses.replace(adaptive, primer_max_tokens=cap)
    s.load_monitor.sample()
    capped = list(s.stream(TEXT))
    assert s.last_stats.primer_floor == cap and capped[0].text.startswith("At the edge")
    assert idle[0].tokens < capped[0].tokens <= loaded[0].tokens
