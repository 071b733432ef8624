"""Shared fixtures: one config, one engine per test session (loading costs ~1 s), the
provisioned model copies (word timings, the split) reused, one server per configuration,
a taken port; and the ``model`` marker kept honest.

The marker: a test that uses a model fixture (:data:`MODEL_FIXTURES`) is marked ``model``
here; any other test that loads the model must carry the marker itself. A test without it
that loads the model -- an ONNX Runtime session or ``onnx.load`` of a file in the assets
folder or the artifacts cache, in this process or in one it starts (tests/standins/no_model.py
through sitecustomize) -- fails, so ``pytest -m "not model"`` loads none.
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

from labkit.config import LabConfig

STANDINS = Path(__file__).parent / "standins"

#: fixtures that load the model (directly or through a server that does)
MODEL_FIXTURES = {"engine", "timed_engine", "plain_engine", "split_parts", "split_engine", "server",
                  "pcm_reference", "served", "default_server"}


def pytest_configure(config):
    """The guard in this process; processes the tests start read tests/standins/sitecustomize.py."""
    sys.path.insert(0, str(STANDINS))
    from standin_no_model import install

    install()
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(STANDINS), path) if p)
    config.model_guard_log = Path(tempfile.mkdtemp(prefix="model-guard-")) / "loads.log"


#: set to 1 to run the ``notebooks`` tests (the smoke batch, ~7 min): make test-notebooks
NOTEBOOKS_ENV = "LABKIT_NOTEBOOK_TESTS"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    run_notebooks = os.environ.get(NOTEBOOKS_ENV) == "1"
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
        if item.get_closest_marker("notebooks") and not run_notebooks:
            item.add_marker(pytest.mark.skip(reason=f"executes the smoke batch (~7 min): "
                                                    f"make test-notebooks ({NOTEBOOKS_ENV}=1)"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """While a test without the ``model`` marker runs (setup and teardown included),
    loading the model raises, here and in the processes it starts."""
    from standin_no_model import forbid

    with forbid(item.get_closest_marker("model") is None, item.nodeid, item.config.model_guard_log):
        yield


@pytest.fixture(autouse=True)
def _model_guard(request):
    """Fails a test without the ``model`` marker that loaded the model, even where the
    code under test caught the guard's error."""
    log = request.config.model_guard_log
    yield
    loads = [line for line in (log.read_text(encoding="utf-8").splitlines() if log.exists() else [])
             if line.startswith(request.node.nodeid + " ")]
    if loads:
        pytest.fail("loaded the model without @pytest.mark.model:\n" + "\n".join(loads), pytrace=False)


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
def timed_model(cfg):
    """The int8 model's copy with the durations output, where `labkit assets --provision`
    keeps it (built there once if missing)."""
    from labkit.engine import assets
    from labkit.engine.words import timed_cache_dir
    from labkit.optimize import durations

    return durations.ensure(assets.model_path(cfg, "int8"), timed_cache_dir(cfg))


@pytest.fixture(scope="session")
def engine(cfg, timed_model):
    """The engine LabConfig's defaults give: the int8 model's provisioned copy with word timings."""
    from labkit.engine.runtime import Engine

    eng = Engine(cfg)
    assert eng.model_path == timed_model and eng.durations_index is not None
    eng.warm_up(repeats=1)
    return eng


@pytest.fixture(scope="session")
def timed_engine(engine):
    """An engine on the int8 model edited to output per-token durations (word timings)."""
    return engine


@pytest.fixture(scope="session")
def plain_engine(cfg, engine):
    """An engine on the int8 model as released: no durations output (no word timings)."""
    from labkit.engine import assets
    from labkit.engine.sessions import new_session
    from labkit.engine.runtime import Engine

    model = assets.model_path(cfg, "int8")
    eng = Engine.from_session(cfg, new_session(model, cfg.session), model, voices=engine.voices,
                              variant="int8")
    assert eng.durations_index is None
    return eng


@pytest.fixture(scope="session")
def split_parts(cfg, timed_model):
    """The split of the timed int8 model (part A, part B) in the split cache, as the lab
    and `labkit serve` build it for sentence prosody."""
    from labkit.optimize import split as sp

    return sp.ensure_for(cfg.with_overrides({"chunking.prosody": "sentence"}))


@pytest.fixture(scope="session")
def g2p_us():
    from labkit.engine.g2p import get_g2p

    return get_g2p("en-us")


@pytest.fixture(scope="session")
def served(cfg, timed_model):
    """``served(*overrides)``: the real server (a subprocess) with those settings, started
    once per configuration for the whole session."""
    from contextlib import ExitStack

    from labkit.measure.httpbench import ServerProcess

    servers: dict[tuple[str, ...], ServerProcess] = {}
    with ExitStack() as stack:
        def get(*overrides: str) -> ServerProcess:
            key = tuple(sorted(overrides))
            if key not in servers:
                servers[key] = stack.enter_context(ServerProcess(cfg, overrides=list(key)))
            return servers[key]
        yield get


@pytest.fixture(scope="session")
def default_server(served, tmp_path_factory):
    """The server the endpoint tests share (tests/test_serve.py, tests/test_serve_hostile.py):
    LabConfig's defaults, a personal lexicon it reads (``.lexicon``: a test may edit it), a
    short queue timeout (a second request gets its 429 at once) and 1 s header, body and
    keep-alive deadlines (the timeout cases stay fast)."""
    lexicon = tmp_path_factory.mktemp("lexicon") / "lexicon.yaml"
    lexicon.write_text("en:\n  zorblax: zˈɔɹblæks\n", encoding="utf-8")
    s = served("serve.queue_timeout_s=0.5", "serve.header_timeout_s=1", "serve.body_timeout_s=1",
               "serve.keep_alive_s=1", f"lexicon={lexicon}")
    s.lexicon = lexicon
    return s
