"""``labkit serve --host/--port``: flags win over settings, settings still work."""
import os

import pytest

from labkit import cli


def _cfg(argv):
    return cli.serve_config(cli.build_parser().parse_args(argv))


def test_flags_win_over_settings():
    cfg = _cfg(["serve", "-s", "serve.port=8000", "-s", "serve.host=0.0.0.0", "--port", "9001"])
    assert (cfg.serve.host, cfg.serve.port) == ("0.0.0.0", 9001)
    cfg = _cfg(["serve", "--host", "::1", "-s", "serve.host=0.0.0.0"])
    assert (cfg.serve.host, cfg.serve.port) == ("::1", 8880)


def test_settings_still_work_without_flags():
    assert _cfg(["serve", "-s", "serve.port=8123"]).serve.port == 8123


@pytest.mark.parametrize("bad", ["0", "70000", "http"])
def test_bad_port_is_refused(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["serve", "--port", bad])
    assert exc.value.code == 2
    assert "not a port number" in capsys.readouterr().err


def test_serve_runs_with_the_flagged_port(monkeypatch):
    import serve

    seen = {}
    monkeypatch.setattr(serve, "serve", lambda cfg: seen.setdefault("port", cfg.serve.port))
    assert cli.main(["serve", "--port", "8999"]) == 0
    assert seen == {"port": 8999}


def test_a_taken_port_fails_before_the_model_loads(monkeypatch, capsys, listener):
    """Finding 5: a port held by a hand-started labkit serve cost the agent a model load
    every restart; now serve says who holds it at once, and the login agent exits 0 (with
    KeepAlive {SuccessfulExit: false}, launchd restarts only a failure: launchd.plist(5))."""
    import serve

    from labkit.optimize import split as splitting

    started = []
    monkeypatch.setattr(serve, "serve", started.append)
    monkeypatch.setattr(splitting, "ensure_for", started.append)
    assert cli.main(["serve", "--port", str(listener)]) == 2
    err = capsys.readouterr().err
    assert f"port {listener} on 127.0.0.1 is held by pid {os.getpid()}" in err
    assert cli.main(["serve", "--port", str(listener), "--as-login-agent"]) == 0
    assert "the login agent stays stopped" in capsys.readouterr().err
    assert started == []  # nothing loaded
