"""Who holds the endpoint's port: nobody, the Kokoro endpoint, or something else (named).

``labkit serve`` asks before it loads the model (a taken port fails in a second, with the
holder named, instead of after the load); ``labkit service install`` refuses to install
over something else's port (launchd would restart the agent forever); ``labkit doctor``
reports it.

Free means this process can bind the address the way uvicorn does (``SO_REUSEADDR``). The
holder is named by ``lsof -nP -iTCP:PORT -sTCP:LISTEN -Fpc`` (lsof(8) "output for other
programs": a ``p`` line with the pid, a ``c`` line with the command; it sees this user's
processes without root) or, where there is no lsof, psutil (on macOS psutil's
net_connections needs root). It is the Kokoro endpoint when ``GET /health`` answers with
the ``X-Kokoro-Variant`` header every answer of the endpoint carries.
"""
from __future__ import annotations

import errno
import socket
import subprocess
from dataclasses import dataclass

import httpx
import psutil

#: a header every /health answer of the Kokoro endpoint carries, ready or not (serve.app)
ENDPOINT_HEADER = "X-Kokoro-Variant"


def local_host(host: str) -> str:
    """Where to reach a server listening on ``host`` from this machine (a wildcard address
    is asked on the loopback), bracketed for a URL when IPv6."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def url(host: str, port: int) -> str:
    return f"http://{local_host(host)}:{port}"


@dataclass(frozen=True)
class Holder:
    """The process listening on a port, as far as this user may see it."""

    port: int
    pid: int | None
    command: str | None
    #: it answered GET /health like the Kokoro endpoint
    endpoint: bool

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid else "a process this user cannot see"
        if self.command:
            who += f" ({self.command})"
        return f"the Kokoro endpoint, {who}" if self.endpoint else who

    def to_dict(self) -> dict:
        return {"port": self.port, "pid": self.pid, "command": self.command,
                "endpoint": self.endpoint, "described": self.describe()}


class PortUnusable(RuntimeError):
    """The address cannot be bound for another reason than a listener (no such address,
    a privileged port); the message says which."""


def bindable(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (bound as uvicorn binds:
    SO_REUSEADDR, so a closing connection's TIME_WAIT does not count). False when something
    listens there; :class:`PortUnusable` for any other refusal."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise PortUnusable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return True


def parse_lsof(text: str) -> tuple[int | None, str | None]:
    """(pid, command) from ``lsof -F pc`` output (the first process listed)."""
    pid = command = None
    for line in text.splitlines():
        if line.startswith("p") and pid is None and line[1:].isdigit():
            pid = int(line[1:])
        elif line.startswith("c") and command is None and pid is not None:
            command = line[1:]
    return pid, command


def _lsof(port: int) -> tuple[int | None, str | None]:
    try:
        out = subprocess.run(["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return parse_lsof(out.stdout)


def _psutil_pid(port: int) -> int | None:
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    return next((c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr
                 and c.laddr.port == port and c.pid), None)


def command_line(pid: int) -> str | None:
    """``pid``'s command line, shortened to what names it, where this user may read it."""
    try:
        args = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return None
    text = " ".join(args)
    return text if len(text) <= 120 else text[:117] + "..."


def answers_as_endpoint(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        resp = httpx.get(f"{url(host, port)}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return ENDPOINT_HEADER in resp.headers


def holder(host: str, port: int, timeout: float = 1.0) -> Holder | None:
    """None when ``host:port`` is free, else who listens there."""
    if bindable(host, port):
        return None
    pid, command = _lsof(port)
    pid = pid or _psutil_pid(port)
    command = (command_line(pid) if pid else None) or command
    return Holder(port, pid, command, answers_as_endpoint(host, port, timeout))
