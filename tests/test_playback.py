"""Playback in ``labkit say --server`` with a faked sounddevice and a mocked endpoint:
one output stream for the whole answer, errors never played, SIGINT/SIGTERM stop it."""
from __future__ import annotations

import json
import signal
import sys
import types

import httpx
import pytest

from labkit import cli
from labkit.measure import client


class FakeStream:
    instances: list["FakeStream"] = []
    on_write = None

    def __init__(self, **kw):
        self.kw, self.written, self.events = kw, [], []
        FakeStream.instances.append(self)

    def start(self):
        self.events.append("start")

    def write(self, data):
        self.written.append(bytes(data))
        if FakeStream.on_write:
            FakeStream.on_write(len(self.written))

    def stop(self):
        self.events.append("stop")

    def abort(self):
        self.events.append("abort")

    def close(self):
        self.events.append("close")


@pytest.fixture
def fake_sd(monkeypatch):
    FakeStream.instances, FakeStream.on_write = [], None
    mod = types.SimpleNamespace(RawOutputStream=FakeStream,
                                query_devices=lambda kind=None: {"name": "MacBook Pro Speakers"})
    monkeypatch.setitem(sys.modules, "sounddevice", mod)
    return mod


def mock_client(parts, status=200, body=None):
    def handler(request):
        assert json.loads(request.content)["response_format"] == "pcm"
        if status != 200:
            return httpx.Response(status, content=iter([json.dumps(body).encode()]))
        return httpx.Response(200, content=iter(parts))
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_one_stream_plays_every_part_in_order(fake_sd):
    parts = [b"\x01" * 4801, b"\x02" * 9999, b"\x03" * 14400, b"\x04" * 10]  # odd cuts
    info = client.say_from_server("http://mac:8880", "hi", buffer_s=0.1,
                                  client=mock_client(parts))
    (stream,) = FakeStream.instances
    assert stream.kw["samplerate"] == 24_000 and stream.kw["dtype"] == "int16"
    assert b"".join(stream.written) == b"".join(parts)  # whole samples, nothing lost
    assert all(len(w) % 2 == 0 for w in stream.written)
    assert stream.events == ["start", "stop", "close"]  # drained, never restarted
    assert info["status"] == 200 and info["audio_s"] == pytest.approx(len(b"".join(parts)) / 48_000)


def test_an_error_is_raised_with_the_servers_message_and_never_played(fake_sd):
    body = {"error": {"message": "unknown voice 'af_nobody'; did you mean af_nova?"}}
    with pytest.raises(client.ServerError, match="HTTP 400: unknown voice 'af_nobody'"):
        client.say_from_server("http://mac:8880", "hi", voice="af_nobody",
                               client=mock_client([], status=400, body=body))
    assert FakeStream.instances == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cuts_the_sound_and_restores_the_handlers(fake_sd, sig):
    before = signal.getsignal(sig)
    FakeStream.on_write = lambda n: signal.raise_signal(sig) if n == 2 else None
    parts = [b"\x00" * 48_000] * 5
    with pytest.raises(client.Stopped) as exc:
        client.say_from_server("http://mac:8880", "hi", buffer_s=0.1, client=mock_client(parts))
    assert exc.value.signum == sig
    (stream,) = FakeStream.instances
    assert stream.events == ["start", "abort", "close"] and len(stream.written) == 2
    assert all(len(w) == 4800 for w in stream.written)  # 0.1 s slices: a stop never waits long
    assert signal.getsignal(sig) == before


def test_labkit_say_exits_128_plus_the_signal(monkeypatch, capsys):
    def stopped(*a, **kw):
        raise client.Stopped(signal.SIGTERM)

    monkeypatch.setattr(client, "say_from_server", stopped)
    assert cli.main(["say", "hi", "--server", "http://127.0.0.1:1"]) == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err


def test_pipe_player_abort_kills_the_player():
    p = client._PipePlayer([sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(30)"])
    p.write(b"\x00\x00" * 10)
    p.abort()
    assert p._proc.returncode is not None and p._proc.returncode < 0
    p.close()  # after an abort: nothing left to do


def test_player_choice(fake_sd, monkeypatch):
    assert client.player_choice() == {"player": "sounddevice",
                                      "detail": "one stream to MacBook Pro Speakers"}
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    monkeypatch.setattr(client.shutil, "which", lambda n: "/opt/homebrew/bin/play" if n == "play" else None)
    assert client.player_choice() == {"player": "play", "detail": "/opt/homebrew/bin/play"}
    monkeypatch.setattr(client.shutil, "which", lambda n: None)
    none = client.player_choice()
    assert none["player"] is None and "pip install sounddevice" in none["detail"]
    with pytest.raises(RuntimeError, match="no way to play audio"):
        client.open_player()


def test_no_output_device_is_no_sounddevice(fake_sd, monkeypatch):
    def no_device(kind=None):
        raise RuntimeError("Error querying device -1")

    fake_sd.query_devices = no_device
    monkeypatch.setattr(client.shutil, "which", lambda n: "/usr/bin/aplay" if n == "aplay" else None)
    assert client.player_choice()["player"] == "aplay"


def test_sounddevice_is_a_dependency_on_the_mac_only():
    import tomllib

    from packaging.requirements import Requirement

    from labkit.config import REPO_ROOT

    deps = [Requirement(d) for d in
            tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    (sd,) = [r for r in deps if r.name == "sounddevice"]
    assert sd.marker.evaluate({"sys_platform": "darwin"})
    assert not sd.marker.evaluate({"sys_platform": "linux"})
