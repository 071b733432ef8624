"""Shared fixtures: one config, one engine per test session (loading costs ~1 s)."""
from __future__ import annotations

import pytest

from labkit.config import LabConfig


@pytest.fixture(scope="session")
def cfg() -> LabConfig:
    return LabConfig.load(env={})


@pytest.fixture(scope="session")
def engine(cfg):
    from labkit.engine.runtime import Engine

    eng = Engine(cfg)
    eng.warm_up(repeats=1)
    return eng


@pytest.fixture(scope="session")
def g2p_us():
    from labkit.engine.g2p import get_g2p

    return get_g2p("en-us")
