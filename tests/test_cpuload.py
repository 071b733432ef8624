"""The load sensor: cores other processes keep busy, on a faked machine, and its slowdown."""
from __future__ import annotations

import pytest

from labkit.engine.cpuload import MAX_SLOWDOWN, LoadMonitor, slowdown


class FakeMachine:
    """Busy CPU seconds of the machine and of this process, advanced by hand."""

    def __init__(self):
        self.t, self.busy, self.own = 0.0, 0.0, 0.0

    def run(self, seconds: float, others: float, own: float) -> None:
        self.t += seconds
        self.busy += (others + own) * seconds
        self.own += own * seconds

    def read(self):
        return self.busy, self.own


def monitor(machine: FakeMachine) -> LoadMonitor:
    return LoadMonitor(period_s=0.2, window_s=0.6, read=machine.read, clock=lambda: machine.t,
                       background=False)


def test_an_idle_machine_reads_zero_and_a_busy_process_one_core():
    m = FakeMachine()
    mon = monitor(m)
    assert mon.others_busy() is None  # one sample: nothing to compare yet
    m.run(0.6, others=0.0, own=0.0)
    assert mon.others_busy() == pytest.approx(0.0)
    m.run(0.6, others=1.0, own=0.0)  # a busy loop on one core
    assert mon.others_busy() == pytest.approx(1.0)


def test_this_process_own_work_is_not_counted_as_load():
    m = FakeMachine()
    mon = monitor(m)
    mon.others_busy()
    m.run(0.6, others=0.0, own=2.0)  # a synthesis on both cores, nobody else
    assert mon.others_busy() == pytest.approx(0.0)
    assert mon.others_demand(threads=2, cores=2) == pytest.approx(0.0)


def test_a_process_squeezed_by_the_synthesis_is_read_at_what_it_wants():
    m = FakeMachine()
    mon = monitor(m)
    mon.others_busy()
    # 3 runnable threads on 2 cores: the busy loop gets 2/3 of a core, the synthesis 4/3
    m.run(0.6, others=2 / 3, own=4 / 3)
    assert mon.others_busy() == pytest.approx(2 / 3)
    assert mon.others_demand(threads=2, cores=2) == pytest.approx(1.0)


def test_only_the_last_window_counts():
    m = FakeMachine()
    mon = monitor(m)
    mon.others_busy()
    m.run(0.6, others=1.0, own=0.0)
    mon.others_busy()
    m.run(0.6, others=0.0, own=0.0)  # the other process ended
    assert mon.others_busy() == pytest.approx(0.0)


@pytest.mark.parametrize("others, threads, cores, expected", [
    (None, 2, 2, 1.0),   # not measured yet: no slowdown assumed
    (0.0, 2, 2, 1.0),
    (1.0, 2, 2, 2.0),    # 2 threads on the one core left (measured ~2x on this x86 box)
    (1.0, 8, 10, 1.0),   # the M1 Max: one busy process leaves 9 cores for 8 threads
    (4.0, 8, 10, 8 / 6),
    (2.0, 2, 2, MAX_SLOWDOWN),  # a saturated machine: capped
])
def test_slowdown(others, threads, cores, expected):
    assert slowdown(others, threads, cores) == pytest.approx(expected)
