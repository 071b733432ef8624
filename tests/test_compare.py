"""The timing instrument (labkit.measure.compare) on synthetic engines with known ratios
and noise: a fake clock that each fake call advances, so the tests are fast and exact."""
import json
import sys

import numpy as np
import pytest

from labkit.measure.compare import (Entry, bootstrap_median_ci, compare, compare_cold,
                                    control_name, decided, decisions, default_rounds, run_json,
                                    schedule, stopping_round, summarize)


class Machine:
    """A fake machine: a call of cost c advances the clock by c times noise, and the first
    call of each round (every ``n``-th call) by ``first_penalty`` more."""

    def __init__(self, noise: float = 0.0, seed: int = 0, first_penalty: float = 1.0, n: int = 0):
        self.t = 0.0
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.first_penalty = first_penalty
        self.n = n
        self.calls = 0

    def clock(self) -> float:
        return self.t

    def engine(self, cost: float):
        def run():
            c = cost * (1.0 + self.rng.uniform(-self.noise, self.noise))
            if self.n and self.calls % self.n == 0:
                c *= self.first_penalty
            self.calls += 1
            self.t += c
            return c
        return run


def test_a_1_3x_faster_engine_is_found_and_the_control_is_not():
    m = Machine(noise=0.05)
    cmp = compare({"base": m.engine(1.0), "fast": m.engine(1 / 1.3)}, "base", clock=m.clock)
    assert cmp.ratio("fast") == pytest.approx(1.3, rel=0.05)
    lo, hi = cmp.ci95("fast")
    assert 1.0 < lo <= cmp.ratio("fast") <= hi
    assert cmp.beats_baseline("fast")
    # the A/A control (the baseline again) is in the set and its interval holds 1.0
    assert control_name("base") in cmp.entries
    assert cmp.noise_band[0] <= 1.0 <= cmp.noise_band[1]
    assert not cmp.beats_baseline(control_name("base"))
    assert cmp.extra_rounds == 0 and not cmp.noisy


@pytest.mark.parametrize("seed", range(5))
def test_an_equal_engine_under_40_percent_noise_is_not_separated_from_1(seed):
    m = Machine(noise=0.40, seed=seed)
    cmp = compare({"base": m.engine(1.0), "same": m.engine(1.0)}, "base", clock=m.clock)
    lo, hi = cmp.ci95("same")
    assert lo <= 1.0 <= hi
    assert not cmp.beats_baseline("same")
    assert cmp.noise_band[0] <= 1.0 <= cmp.noise_band[1]


def test_a_position_effect_cancels():
    # whatever runs first in a round takes 1.5x as long; with the baseline always first a
    # 1.3x engine would look 1.95x faster, with it never first 0.87x
    entries = 4  # base, its A/A control, fast, other
    m = Machine(first_penalty=1.5, n=entries)
    cmp = compare({"base": m.engine(1.0), "fast": m.engine(1 / 1.3), "other": m.engine(1.0)},
                  "base", rounds=8, max_rounds=8, clock=m.clock)
    assert [o[0] for o in cmp.order].count("base") == 2  # each entry leads equally often
    assert {o[0] for o in cmp.order} == set(cmp.entries)
    assert cmp.ratio("fast") == pytest.approx(1.3)
    assert cmp.ratio("other") == pytest.approx(1.0)
    assert cmp.ratio(control_name("base")) == pytest.approx(1.0)
    lo, hi = cmp.ci95("fast")
    assert lo <= 1.3 <= hi
    # per round the ratio was distorted both ways: rotation, not luck, cancelled it
    assert max(cmp.entries["fast"].round_ratios) == pytest.approx(1.95)
    assert min(cmp.entries["fast"].round_ratios) == pytest.approx(1.3 / 1.5)


class CarryOver:
    """A fake machine where a call right after "heavy" (its cache pollution) takes 1.5x."""

    def __init__(self):
        self.t, self.prev = 0.0, None

    def clock(self) -> float:
        return self.t

    def engine(self, name: str, cost: float):
        def run():
            self.t += cost * (1.5 if self.prev == "heavy" else 1.0)
            self.prev = name
        return run


def test_a_carry_over_effect_cancels_too():
    # with plain rotation (base, fast, heavy, A/A, then shifted) the A/A control would
    # always run right after heavy and measure the baseline 1.5x slower than itself
    m = CarryOver()
    cmp = compare({"base": m.engine("base", 1.0), "fast": m.engine("fast", 1 / 1.3),
                   "heavy": m.engine("heavy", 1.0)}, "base", rounds=8, max_rounds=8, clock=m.clock)
    assert cmp.ratio(control_name("base")) == pytest.approx(1.0)
    assert cmp.ratio("fast") == pytest.approx(1.3)
    assert cmp.ratio("heavy") == pytest.approx(1.0)


@pytest.mark.parametrize("n", range(2, 8))
def test_the_schedule_balances_positions_and_neighbours(n):
    rows = schedule(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(r) == list(range(n)) for r in rows)
    per_position = [[r[p] for r in rows].count(x) for p in range(n) for x in range(n)]
    assert len(set(per_position)) == 1  # every entry in every position equally often
    pairs = [(r[i], r[i + 1]) for r in rows for i in range(n - 1)]
    counts = {(a, b): pairs.count((a, b)) for a in range(n) for b in range(n) if a != b}
    assert len(set(counts.values())) == 1  # every entry right after every other equally often


def test_default_rounds_are_whole_squares():
    cmp = compare({"base": lambda: 1.0, "x": lambda: 1.0}, "base", measure=float)
    assert cmp.rounds == 6  # 3 entries: a square of 6 rows
    cmp = compare({"base": lambda: 1.0, "x": lambda: 1.0, "y": lambda: 1.0}, "base", measure=float)
    assert cmp.rounds == 8  # 4 entries: two squares of 4


def test_a_noisy_machine_gets_extra_rounds_up_to_the_cap():
    m = Machine(noise=0.40)
    cmp = compare({"base": m.engine(1.0), "b": m.engine(1.0)}, "base", rounds=7, max_rounds=13,
                  noise_width=0.05, clock=m.clock)
    assert cmp.rounds == 13 and cmp.extra_rounds == 6 and cmp.noisy
    assert all(len(e.samples) == 13 for e in cmp.entries.values())
    # a quiet machine needs none
    q = Machine(noise=0.001)
    cmp = compare({"base": q.engine(1.0), "b": q.engine(1.0)}, "base", rounds=7, max_rounds=13,
                  noise_width=0.05, clock=q.clock)
    assert cmp.rounds == 7 and cmp.extra_rounds == 0 and not cmp.noisy


def test_extra_rounds_stop_once_the_band_is_narrow_enough():
    m = Machine(noise=0.40, seed=3)
    wide = compare({"base": m.engine(1.0), "b": m.engine(1.0)}, "base", rounds=3, max_rounds=60,
                   noise_width=0.5, clock=m.clock)
    assert 0 < wide.extra_rounds < 57 and not wide.noisy
    assert wide.noise_band[1] - wide.noise_band[0] <= 0.5


def test_warmup_calls_are_not_timed():
    m = Machine()
    slow_first = {"n": 0}

    def base():
        slow_first["n"] += 1
        m.t += 100.0 if slow_first["n"] == 1 else 1.0

    cmp = compare({"base": base, "x": m.engine(0.5)}, "base", warmup=1, rounds=3, clock=m.clock)
    assert max(cmp.entries["base"].samples) == 1.0
    assert cmp.ratio("x") == pytest.approx(2.0)


def test_calls_that_measure_their_own_figure():
    # a candidate returning a record with its own TTFA, and one returning the float itself
    rng = np.random.default_rng(0)
    calls = {"base": lambda: {"ttfa_s": 0.8 * rng.uniform(0.97, 1.03)},
             "primer": lambda: {"ttfa_s": 0.4 * rng.uniform(0.97, 1.03)}}
    cmp = compare(calls, "base", measure=lambda r: r["ttfa_s"], criterion="ttfa_s")
    assert cmp.ratio("primer") == pytest.approx(2.0, rel=0.05) and cmp.beats_baseline("primer")
    assert cmp.criterion == "ttfa_s"
    assert cmp.selection_fields("primer") == {"criterion": "ttfa_s", "ratio": cmp.ratio("primer"),
                                              "ci95": list(cmp.ci95("primer"))}
    assert cmp.baseline_fields() == {"baseline": True, "criterion": "ttfa_s",
                                     "ci95": list(cmp.noise_band)}
    floats = compare({"base": lambda: 0.3, "half": lambda: 0.15}, "base", measure=float)
    assert floats.ratio("half") == pytest.approx(2.0) and floats.criterion == "value"


def test_higher_is_better_figures():
    cmp = compare({"base": lambda: 100.0, "more": lambda: 150.0}, "base", measure=float,
                  lower_is_better=False, criterion="chars_per_s")
    assert cmp.ratio("more") == pytest.approx(1.5) and cmp.beats_baseline("more")


def test_to_dict_is_json_and_complete():
    m = Machine(noise=0.05)
    cmp = compare({"base": m.engine(1.0), "fast": m.engine(0.5)}, "base", rounds=4, clock=m.clock)
    d = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert d["baseline"] == "base" and d["control"] == "base (A/A)" and d["rounds"] == 4
    assert d["order"][0] == ["base", "fast", "base (A/A)"]
    assert d["order"][1] == ["fast", "base (A/A)", "base"]
    fast = d["candidates"]["fast"]
    assert set(fast) >= {"median", "ratio", "ci95", "samples", "n"}
    assert fast["n"] == 4 and len(fast["ci95"]) == 2
    assert fast["median"] == pytest.approx(0.5, rel=0.1)
    assert d["noise_band"] == d["candidates"]["base (A/A)"]["ci95"]


def test_same_inputs_same_result():
    def run():
        m = Machine(noise=0.2, seed=7)
        return compare({"base": m.engine(1.0), "x": m.engine(0.9)}, "base", clock=m.clock).to_dict()
    assert run() == run()


def test_bad_input_is_refused_clearly():
    ok = {"base": lambda: 1.0, "x": lambda: 1.0}
    with pytest.raises(ValueError, match="baseline 'nope'"):
        compare(ok, "nope")
    with pytest.raises(ValueError, match="reserved"):
        compare({**ok, "base (A/A)": lambda: 1.0}, "base")
    with pytest.raises(ValueError, match="rounds"):
        compare(ok, "base", rounds=5, max_rounds=3)
    with pytest.raises(ValueError, match="'x'.*positive"):
        compare({"base": lambda: 1.0, "x": lambda: 0.0}, "base", measure=float)
    with pytest.raises(ValueError, match="'x'.*measure could not read"):
        compare({"base": lambda: 1.0, "x": lambda: "fast"}, "base", measure=float)
    with pytest.raises(ValueError, match="'x'.*not a number"):
        compare({"base": lambda: 1.0, "x": lambda: None}, "base", measure=lambda r: r)
    with pytest.raises(KeyError, match="no candidate 'y'"):
        compare(ok, "base", measure=float, rounds=2).ratio("y")


def test_bootstrap_interval_is_seeded_and_brackets_the_median():
    x = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8]
    lo, hi = bootstrap_median_ci(x, seed=1)
    assert lo <= float(np.median(x)) <= hi
    assert bootstrap_median_ci(x, seed=1) == (lo, hi)
    assert bootstrap_median_ci([2.0] * 5) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_median_ci([])


def test_cold_starts_interleave_processes_and_keep_their_json():
    seen = []

    def runner(cmd):
        seen.append(cmd[0])
        return {"first_audio_s": {"a": 2.0, "b": 1.0}[cmd[0]], "create_s": 0.1}

    cmp = compare_cold({"a": ["a"], "b": ["b"]}, "a", rounds=3, warmup=1, runner=runner)
    assert seen[:3] == ["a", "b", "a"]  # warm-up: each entry once (the A/A control too)
    assert seen[3:6] == ["a", "b", "a"] and seen[6:9] == ["b", "a", "a"]  # rotated rounds
    assert cmp.ratio("b") == pytest.approx(2.0) and cmp.criterion == "first_audio_s"
    assert cmp.kept["b"][0]["create_s"] == 0.1
    with pytest.raises(ValueError, match="no 'ttfa'"):
        compare_cold({"a": ["a"], "b": ["b"]}, "a", key="ttfa", rounds=1, runner=runner)


def test_run_json_reads_the_last_line_of_a_fresh_process():
    out = run_json([sys.executable, "-c", "print('log line'); print('{\"first_audio_s\": 0.5}')"])
    assert out["first_audio_s"] == 0.5 and out["process_wall_s"] > 0
    with pytest.raises(RuntimeError, match="exited 3"):
        run_json([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(RuntimeError, match="JSON object"):
        run_json([sys.executable, "-c", "print('no json')"])


def test_a_second_instance_as_the_control_widens_the_noise_band_to_cover_it():
    """Two sessions of the same settings can differ (memory placement, warm caches): with
    the baseline's own callable as the control the band misses that; with a second
    instance it shows it, and a candidate no better than that instance is not taken."""
    def const(v):
        return lambda: v

    same_callable = compare({"a": const(1.0), "b": const(0.95)}, "a", rounds=6, measure=float)
    assert same_callable.noise_band == (1.0, 1.0) and same_callable.beats_baseline("b")
    second = compare({"a": const(1.0), "b": const(0.95)}, "a", rounds=6, measure=float,
                     control=const(0.95))
    assert second.noise_band[0] > 1.0  # the instances alone differ by 5 %: read with care
    assert second.to_dict()["candidates"]["a (A/A)"]["median"] == 0.95


class Simulated:
    """Candidates with known true ratios and multiplicative noise, on a fake clock: every
    run of the same comparison draws the same samples in the same call order."""

    def __init__(self, speedups, sigma=0.04, seed=7):
        self.rng = np.random.default_rng(seed)
        self.speedups, self.sigma, self.t = speedups, sigma, 0.0

    def clock(self):
        return self.t

    def fn(self, name):
        def call():
            self.t += float(np.exp(self.rng.normal(0, self.sigma))) / self.speedups[name]
        return call

    def compare(self, **kw):
        fns = {n: self.fn(n) for n in self.speedups}
        return compare(fns, "base", warmup=0, clock=self.clock, control=self.fn("base"), **kw)


SPEEDUPS = {"base": 1.0, "much faster": 1.4, "a bit faster": 1.15, "slower": 0.8}
BAR = 1.03  # 1 + selection.min_gain


def _chosen(cmp, bar=BAR):
    return {n: cmp.ci95(n)[0] > bar for n in SPEEDUPS if n != "base"}


def test_rounds_stop_once_every_interval_is_decided_and_the_decisions_stand():
    # the A/A band can never be as narrow as asked: without the rule, rounds go to the cap
    full = Simulated(SPEEDUPS).compare(noise_width=1e-6, max_rounds=40)
    early = Simulated(SPEEDUPS).compare(noise_width=1e-6, max_rounds=40, decide_at=BAR)
    assert full.rounds == 40 and not full.stopped_early
    assert early.stopped_early and early.rounds < full.rounds
    assert early.rounds % len(schedule(5)) == 0 and early.rounds >= default_rounds(5)
    assert _chosen(early) == _chosen(full) == {"much faster": True, "a bit faster": True,
                                               "slower": False}
    # the same rounds (a prefix of the full run's): the rule replayed on the full run's
    # record stops where the early run did, with the full run's decisions there
    stop = stopping_round(full.to_dict(), BAR)
    assert stop == early.rounds
    at_stop = summarize({n: e.samples for n, e in full.entries.items()}, "base", rounds=stop)
    assert decisions(at_stop, "base", BAR) == decisions(full.entries, "base", BAR)


def test_an_undecided_candidate_keeps_the_rounds_going():
    # a true ratio at the bar itself: its interval straddles it however long it runs
    sim = {"base": 1.0, "at the bar": BAR, "much faster": 1.4}
    cmp = Simulated(sim).compare(noise_width=1e-6, max_rounds=24, decide_at=BAR)
    assert not cmp.stopped_early and cmp.rounds == 24
    assert decisions(cmp.entries, "base", BAR)["at the bar"] == "undecided"


def test_overlapping_winners_are_not_decided():
    e = {"a": Entry("a", [1.0], [1.0], 1.2, (1.10, 1.30)),
         "b": Entry("b", [1.0], [1.0], 1.25, (1.20, 1.35)), "base": Entry("base", [1.0], [1.0], 1.0, (0.99, 1.01))}
    assert decisions(e, "base", BAR) == {"a": "above", "b": "above"}
    assert not decided(e, "base", BAR)  # which of the two is best is not settled
    e["b"] = Entry("b", [1.0], [1.0], 1.4, (1.31, 1.5))
    assert decided(e, "base", BAR)


def test_without_the_rule_nothing_changes():
    a = Simulated(SPEEDUPS).compare(noise_width=1e-6, max_rounds=16)
    b = Simulated(SPEEDUPS).compare(noise_width=1e-6, max_rounds=16, decide_at=None)
    assert a.to_dict() == b.to_dict()
