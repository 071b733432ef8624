"""``labkit serve --host/--port``: flags win over settings, settings still work."""
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
