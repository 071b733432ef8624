"""Shared fixtures: one config, one engine per test session (loading costs ~1 s), a taken port."""
from __future__ import annotations

import socket

import pytest

from labkit.config import LabConfig


@pytest.fixture(scope="session")
def cfg() -> LabConfig:
    return LabConfig.load(env={})


@pytest.fixture
def listener():
    """A port something else listens on (a hand-started server): this test process."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


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


@pytest.fixture(scope="session")
def timed_engine(cfg, tmp_path_factory):
    """An engine on the int8 model edited to output per-token durations (word timings)."""
    from labkit.engine import assets
    from labkit.engine.runtime import Engine
    from labkit.optimize import durations

    path = durations.ensure(assets.model_path(cfg, "int8"), tmp_path_factory.mktemp("durations"))
    eng = Engine(cfg.with_overrides({"variant": "int8", "model_path": str(path)}))
    eng.warm_up(repeats=1)
    return eng
