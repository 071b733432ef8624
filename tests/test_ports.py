"""labkit.host.ports: who holds a port, found for real on this machine (a socket this test
opens, a tiny server that answers /health like the endpoint or not)."""
from __future__ import annotations

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labkit.host import ports


class Health(BaseHTTPRequestHandler):
    headers_out: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(503)
        for k, v in type(self).headers_out.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    made = []

    def start(headers):
        handler = type("H", (Health,), {"headers_out": headers})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        made.append(srv)
        return srv.server_port
    yield start
    for srv in made:
        srv.shutdown()
        srv.server_close()


def test_a_free_port_has_no_holder():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert ports.holder("127.0.0.1", port) is None


def test_the_endpoint_is_told_from_something_else(server):
    """The endpoint's /health carries X-Kokoro-Variant even while loading (a 503)."""
    ours = ports.holder("0.0.0.0", server({"X-Kokoro-Variant": "int8"}))
    other = ports.holder("127.0.0.1", server({"Server": "nginx"}))
    assert ours.endpoint and not other.endpoint
    assert other.pid == os.getpid() and "python" in (other.command or "")
    assert ours.describe().startswith(f"the Kokoro endpoint, pid {os.getpid()}")


def test_lsof_field_output_is_read():
    """lsof(8), OUTPUT FOR OTHER PROGRAMS: one field a line, its letter first (p pid,
    c command, f file descriptor)."""
    assert ports.parse_lsof("p4242\ncpython3.11\nf5\n") == (4242, "python3.11")
    assert ports.parse_lsof("") == (None, None)


def test_a_port_that_cannot_be_used_for_another_reason_says_why():
    with pytest.raises(ports.PortUnusable, match="cannot listen on 192.0.2.1:"):
        ports.bindable("192.0.2.1", 8880)  # TEST-NET-1: no interface here has it
