"""The competing-load context manager starts its processes and always stops them."""
from __future__ import annotations

import os

import pytest

from labkit.engine.cpuload import LoadMonitor
from labkit.measure.load import competing_load


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a reaped child is gone; a zombie would still answer, so check its state too
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_the_load_runs_inside_the_block_and_stops_after_it():
    with competing_load(1, settle_s=0.05) as load:
        assert len(load.pids) == 1 and all(_alive(p) for p in load.pids)
    assert not any(_alive(p) for p in load.pids) and load.seconds > 0


def test_the_load_stops_when_the_block_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with competing_load(2, settle_s=0.0) as load:
            pids = list(load.pids)
            raise RuntimeError("boom")
    assert len(pids) == 2 and not any(_alive(p) for p in pids)


def test_no_load_starts_nothing_and_bad_counts_are_refused():
    with competing_load(0) as load:
        assert load.pids == []
    with pytest.raises(ValueError, match="competing processes"):
        with competing_load(-1):
            pass


def test_the_first_reading_in_the_block_sees_the_load_whole():
    # the default pause covers the sensor's window (labkit.engine.cpuload.WINDOW_S): a stream
    # opening in the block is sized for one busy core, not for part of it
    mon = LoadMonitor()
    mon.others_busy()  # starts the sampler
    with competing_load(1):
        others = mon.others_busy()
    assert others is not None and others >= 0.8
