"""The Raycast Script Command, run by bash here with the Mac's tools faked: pbpaste/pbcopy/
osascript stubs, a stub ``.venv/bin/labkit`` that records how it was called, and a tiny
/health server. It reads its config file, shows the server's error, cleans up its temp
files, and a second run stops the first."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labkit.config import REPO_ROOT

SCRIPT = REPO_ROOT / "serve" / "raycast" / "read-selection-aloud.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("curl") is None,
                                reason="needs bash and curl")

LABKIT_STUB = """#!/bin/bash
printf '%s\\n' "$@" > {d}/argv
cat > {d}/stdin
printf '%s' "${{KOKORO_LAB_API_KEY:-}}" > {d}/key
case "$(cat {d}/mode)" in
  error) echo '{{"url": "x"}}' >&2; echo "labkit say: HTTP 400: unknown voice 'zz_nobody'" >&2; exit 2 ;;
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


@pytest.fixture
def mac(tmp_path):
    """A fake Mac: stubs on PATH, a lab dir with a stub labkit, a config file, a server."""
    stubs, lab, tmp, rec = (tmp_path / n for n in ("bin", "lab", "tmp", "rec"))
    for d in (stubs, lab / ".venv" / "bin", tmp, rec):
        d.mkdir(parents=True)
    (stubs / "pbpaste").write_text(f"#!/bin/bash\ncat {rec}/clipboard\n")
    (stubs / "pbcopy").write_text(f"#!/bin/bash\ncat > {rec}/restored\n")
    (stubs / "osascript").write_text(f"#!/bin/bash\ncp {rec}/selection {rec}/clipboard\n")
    labkit = lab / ".venv" / "bin" / "labkit"
    labkit.write_text(LABKIT_STUB.format(d=rec))
    (lab / ".venv" / "bin" / "python").symlink_to(sys.executable)
    for f in [*stubs.iterdir(), labkit]:
        f.chmod(0o755)
    (rec / "clipboard").write_text("what was on the clipboard")
    (rec / "selection").write_text("Read this, please.")
    (rec / "mode").write_text("short")
    handler = type("H", (Health,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "raycast.env"
    config.write_text(f"# my settings\nKOKORO_LAB_DIR={lab}\n"
                      f"KOKORO_URL = \"http://127.0.0.1:{server.server_port}/\"\n"
                      "KOKORO_SPEED=1.2\nKOKORO_API_KEY='sekrit'\nSOMETHING_ELSE=ignored\n")
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp),
           "KOKORO_RAYCAST_CONFIG": str(config)}

    def run(*args):
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                              text=True, timeout=30)

    ns = type("Mac", (), {})()
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
    assert (mac.rec / "restored").read_text() == "what was on the clipboard"
    assert list(mac.tmp.iterdir()) == []  # no log, no pid file left


def test_the_argument_picks_the_voice_and_the_servers_error_is_shown(mac):
    (mac.rec / "mode").write_text("error")
    out = mac.run("zz_nobody")
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[-1] == "HTTP 400: unknown voice 'zz_nobody'"
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


def test_nothing_selected_and_no_labkit(mac, tmp_path):
    (mac.rec / "selection").write_text("  \n")
    (mac.rec / "clipboard").write_text("")
    assert mac.run().stdout.strip() == "Nothing selected"
    mac.config.write_text(f"KOKORO_LAB_DIR={tmp_path / 'nowhere'}\n")
    out = mac.run()
    assert out.returncode == 1 and "set KOKORO_LAB_DIR in" in out.stdout
