"""The Raycast Script Command, run by bash here on a fake Mac (tests/fake_mac: pbcopy,
pbpaste and osascript, node scripts over one pasteboard, each behaving as its manual page or Apple's
reference says; see those files), a stub ``.venv/bin/labkit`` that records how it was
called, and a tiny /health server. It reads its config file, reads the selection as UTF-8
without losing what the clipboard held, says what to do when macOS refuses it a
permission, shows the server's error, cleans up its temp files, and a second run stops
the first."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from labkit.config import REPO_ROOT

SCRIPT = REPO_ROOT / "serve" / "raycast" / "read-selection-aloud.sh"
FAKE_MAC = Path(__file__).resolve().parent / "fake_mac"
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("bash", "curl", "node")),
    reason="needs bash, curl and node (the fake Mac: its osascript runs the script's JXA)")
TEXT = "public.utf8-plain-text"

LABKIT_STUB = """#!/bin/bash
printf '%s\\n' "$@" > {d}/argv
cat > {d}/stdin
printf '%s' "${{KOKORO_LAB_API_KEY:-}}" > {d}/key
case "$(cat {d}/mode)" in
  error) echo '{{"url": "x"}}' >&2; cat {d}/error_line >&2; exit 2 ;;
  long) trap 'echo stopped > {d}/stopped; exit 143' TERM; sleep 30 & wait $! ;;
  *) exit 0 ;;
esac
"""


class Health(BaseHTTPRequestHandler):
    status, body = 200, {"status": "ok"}

    def do_GET(self):  # noqa: N802 - http.server's name
        data = json.dumps(type(self).body).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def item(types: dict[str, bytes | str]) -> dict:
    """A pasteboard item: type identifier -> base64 of its data."""
    return {k: base64.b64encode(v.encode() if isinstance(v, str) else v).decode()
            for k, v in types.items()}


def text_item(text: str) -> dict:
    return item({TEXT: text})


class Mac:
    def __init__(self, root: Path):
        self.root = root

    def pasteboard(self) -> dict:
        return json.loads((self.root / "pasteboard.json").read_text())

    def set_pasteboard(self, *items: dict) -> None:
        (self.root / "pasteboard.json").write_text(json.dumps({"changeCount": 7, "items": list(items)}))

    def select(self, text: str) -> None:
        (self.root / "selection").write_text(text, encoding="utf-8")

    def refuse(self, permission: str) -> None:
        (self.root / "permission").write_text(permission)


@pytest.fixture
def mac(tmp_path):
    """A fake Mac: its tools on PATH, a lab dir with a stub labkit, a config file, a server.
    Raycast's environment has no LANG (and no LC_*)."""
    lab, tmp, rec, state = (tmp_path / n for n in ("lab", "tmp", "rec", "mac"))
    for d in (lab / ".venv" / "bin", tmp, rec, state):
        d.mkdir(parents=True)
    labkit = lab / ".venv" / "bin" / "labkit"
    labkit.write_text(LABKIT_STUB.format(d=rec))
    labkit.chmod(0o755)
    (lab / ".venv" / "bin" / "python").symlink_to(sys.executable)
    ns = Mac(state)
    ns.set_pasteboard(text_item("what was on the clipboard"))
    ns.select("Read this, please.")
    ns.refuse("granted")
    (rec / "mode").write_text("short")
    handler = type("H", (Health,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "raycast.env"
    config.write_text(f"# my settings\nKOKORO_LAB_DIR={lab}\n"
                      f"KOKORO_URL = \"http://127.0.0.1:{server.server_port}/\"\n"
                      "KOKORO_SPEED=1.2\nKOKORO_API_KEY='sekrit'\nSOMETHING_ELSE=ignored\n")
    env = {"PATH": f"{FAKE_MAC}:{os.path.dirname(shutil.which('node'))}:/usr/bin:/bin",
           "HOME": str(tmp_path), "TMPDIR": str(tmp), "KOKORO_RAYCAST_CONFIG": str(config),
           "FAKE_MAC": str(state)}

    def run(*args):
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                              text=True, timeout=30)

    ns.run, ns.rec, ns.tmp, ns.handler, ns.config, ns.lab = run, rec, tmp, handler, config, lab
    yield ns
    server.shutdown()
    server.server_close()


def test_streams_the_selection_through_labkit_with_the_config_files_settings(mac):
    out = mac.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "Read aloud"
    argv = (mac.rec / "argv").read_text().split("\n")
    port = mac.config.read_text().split("127.0.0.1:")[1].split("/")[0]
    assert argv[:9] == ["say", "--server", f"http://127.0.0.1:{port}", "--voice", "af_heart",
                        "--speed", "1.2", "-", ""]
    assert (mac.rec / "stdin").read_text() == "Read this, please.\n"
    assert (mac.rec / "key").read_text() == "sekrit"
    assert mac.pasteboard()["items"] == [text_item("what was on the clipboard")]
    assert list(mac.tmp.iterdir()) == []  # no log, no pid file, no selection file left


def real_say_error(voice: str) -> str:
    """The line the real ``labkit say --server`` prints last, and its exit status, when the
    endpoint refuses ``voice``: the real server's answer (serve.voices on the provisioned
    voices, in serve.errors' shape) from a stand-in HTTP server, through the real CLI."""
    from labkit.config import LabConfig
    from labkit.engine import assets
    from labkit.engine.voices import VoiceBank
    from serve import voices
    from serve.errors import APIError

    cfg = LabConfig.load(env={})
    with pytest.raises(APIError) as err:
        voices.request_voicing(voice, cfg.serve.voice_aliases, VoiceBank.load(assets.voices_path(cfg)))
    answer = err.value.response()

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        proc = subprocess.run([sys.executable, "-m", "labkit.cli", "say", "-", "--server",
                               f"http://127.0.0.1:{httpd.server_address[1]}", "--voice", voice],
                              input="Read this.", capture_output=True, text=True, timeout=120)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 2, proc.stderr  # what the stub exits with
    return proc.stderr.strip().splitlines()[-1]


def test_the_argument_picks_the_voice_and_the_servers_error_is_shown(mac):
    line = real_say_error("zz_nobody")
    assert line.startswith("labkit say: HTTP 400: voice 'zz_nobody'")
    (mac.rec / "mode").write_text("error")
    (mac.rec / "error_line").write_text(line + "\n")
    out = mac.run("zz_nobody")
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[-1] == line.removeprefix("labkit say: ")
    assert "zz_nobody" in (mac.rec / "argv").read_text().split("\n")
    assert list(mac.tmp.iterdir()) == []


def test_a_second_run_stops_the_first(mac):
    (mac.rec / "mode").write_text("long")
    first = mac.run()
    assert first.stdout.strip().startswith("Reading aloud"), first.stdout + first.stderr
    assert (mac.tmp / "kokoro-read-aloud.pid").exists()
    second = mac.run()
    assert second.stdout.strip() == "Stopped"
    deadline = time.monotonic() + 10
    while (list(mac.tmp.iterdir()) or not (mac.rec / "stopped").exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (mac.rec / "stopped").read_text().strip() == "stopped"  # labkit got SIGTERM
    assert list(mac.tmp.iterdir()) == []  # its log and the pid file are gone


def test_a_stale_pid_file_does_not_stop_anything(mac):
    (mac.tmp / "kokoro-read-aloud.pid").write_text(str(os.getpid()))  # alive, but not labkit
    out = mac.run()
    assert out.stdout.strip().splitlines()[-1] == "Read aloud"


def test_endpoint_down_or_loading(mac):
    mac.handler.status, mac.handler.body = 503, {"status": "loading", "error": None}
    out = mac.run()
    assert out.returncode == 1 and out.stdout.strip() == "Kokoro endpoint not ready (HTTP 503): loading"
    mac.config.write_text(f"KOKORO_LAB_DIR={mac.lab}\nKOKORO_URL=http://127.0.0.1:9\n")
    out = mac.run()
    assert out.returncode == 1 and "not running at http://127.0.0.1:9" in out.stdout
    assert not (mac.rec / "argv").exists()
    assert mac.pasteboard()["changeCount"] == 7  # no Cmd-C pressed for nothing


def test_nothing_selected_and_no_labkit(mac, tmp_path):
    mac.select("")
    mac.set_pasteboard(text_item("  \n"))
    assert mac.run().stdout.strip() == "Nothing selected"
    mac.config.write_text(f"KOKORO_LAB_DIR={tmp_path / 'nowhere'}\n")
    out = mac.run()
    assert out.returncode == 1 and "set KOKORO_LAB_DIR in" in out.stdout


# -- finding 7: non-ASCII text -----------------------------------------------------------------
def test_curly_quotes_dashes_and_accents_arrive_intact(mac):
    """Raycast gives its scripts no LANG; pbcopy/pbpaste then use the C encoding (pbcopy(1))."""
    words = "\u201cCurly\u201d quotes \u2014 and caf\u00e9, na\u00efve \u2019til 5\u20138"
    mac.select(words)
    clipboard = "kept \u2018as is\u2019 \u2013 d\u00e9j\u00e0 vu"
    mac.set_pasteboard(text_item(clipboard))
    out = mac.run()
    assert out.returncode == 0, out.stdout + out.stderr
    assert (mac.rec / "stdin").read_text(encoding="utf-8") == words + "\n"
    assert mac.pasteboard()["items"] == [text_item(clipboard)]


def test_with_nothing_selected_the_clipboard_is_read_in_utf8_and_left_alone(mac):
    mac.select("")
    clipboard = "from the clipboard \u2014 \u00e0 la carte"
    mac.set_pasteboard(text_item(clipboard))
    out = mac.run()
    assert out.returncode == 0, out.stdout + out.stderr
    assert (mac.rec / "stdin").read_text(encoding="utf-8") == clipboard + "\n"
    assert mac.pasteboard() == {"changeCount": 7, "items": [text_item(clipboard)]}


# -- finding 8: the clipboard, whatever it held, and the permission ----------------------------
def test_an_image_files_and_rich_text_on_the_clipboard_are_put_back_as_they_were(mac):
    png = bytes(range(256)) * 4  # binary data, not text
    before = [item({"public.png": png, "public.tiff": png[::-1]}),
              item({"public.file-url": "file:///Users/me/report.pdf"}),
              item({"public.rtf": "{\\rtf1 \\b bold\\b0}", TEXT: "bold"})]
    mac.set_pasteboard(*before)
    out = mac.run()
    assert out.returncode == 0, out.stdout + out.stderr
    assert (mac.rec / "stdin").read_text() == "Read this, please.\n"
    assert mac.pasteboard()["items"] == before  # every item, every type, every byte


def test_an_empty_clipboard_stays_empty(mac):
    mac.set_pasteboard()
    assert mac.run().returncode == 0
    assert mac.pasteboard()["items"] == []


@pytest.mark.parametrize("missing, says", [
    ("accessibility", "Raycast needs the Accessibility permission to copy the selection: "
                      "System Settings > Privacy & Security > Accessibility, turn on Raycast"),
    ("automation", "Raycast may not control System Events: System Settings > Privacy & "
                   "Security > Automation > Raycast, turn on System Events"),
])
def test_a_refused_permission_is_said_and_the_old_clipboard_is_not_read_aloud(mac, missing, says):
    mac.refuse(missing)
    out = mac.run()
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[-1].startswith(says)
    assert not (mac.rec / "argv").exists()  # nothing read aloud
    assert mac.pasteboard()["items"] == [text_item("what was on the clipboard")]
    assert list(mac.tmp.iterdir()) == []
