"""The endpoint over HTTP, as a client sees it: the real server in a subprocess on a free
loopback port (:class:`ServerProcess`), one request read as raw PCM so the first body
byte is the first audio sample (:func:`run_http`), and a soak of sequential mixed
requests that counts errors and the server's memory growth (:func:`soak`). Stage 07
(labkit.lab.s08_endpoint) and ``make bench`` put it beside kokoro-onnx in process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from labkit import procs, progress
from labkit.measure.streaming import Run
from labkit.measure.client import BYTES_PER_SECOND, stream_speech
from labkit.config import REPO_ROOT, LabConfig

RUNNERS = ("kokoro-onnx create", "kokoro-onnx create_stream", "pipeline", "http", "http repeat")


# -- the server as a subprocess ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m serve`` on a free loopback port, ready (warmed up) on ``__enter__``.

    ``cfg``: the LabConfig to serve (written to a temporary YAML); ``overrides``: extra
    ``key=value`` settings; ``best_json``: "" (default) serves ``cfg`` exactly."""

    def __init__(self, cfg: LabConfig | None = None, overrides: list[str] | None = None,
                 best_json: str = "", port: int | None = None, startup_timeout: float = 300.0,
                 log_path: str | Path | None = None):
        self.cfg = cfg or LabConfig()
        self.port = port or free_port()
        self.overrides = list(overrides or [])
        self.best_json = best_json
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServerProcess":
        self._tmp = tempfile.TemporaryDirectory(prefix="kokoro-serve-")
        cfg_path = Path(self._tmp.name) / "config.yaml"
        cfg_path.write_text(self.cfg.to_yaml())
        log_path = self.log_path or Path(self._tmp.name) / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        argv = [sys.executable, "-m", "serve", "-c", str(cfg_path),
                "-s", "serve.host=127.0.0.1", "-s", f"serve.port={self.port}",
                "--best-json", self.best_json]
        for item in self.overrides:
            argv += ["-s", item]
        env = {k: v for k, v in os.environ.items() if k != "KOKORO_LAB_CONFIG"}
        self._log = open(log_path, "wb")
        # ends with this process however it ends (labkit.procs; the server watches us)
        self.proc = procs.popen(argv, cwd=REPO_ROOT, env=env, stdout=self._log,
                                stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(self.url + "/health", timeout=2.0)
                if r.status_code == 200:
                    return r.json()
                if r.json().get("status") == "failed":
                    raise RuntimeError(f"the server failed to start: {r.json().get('error')}")
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the server was not ready after {self.startup_timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def rss_bytes(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            procs.stop(self.proc, grace_s=15)
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# -- the HTTP runner (the in-process ones are labkit.measure.streaming's) ---------------------------------------
def run_http(url: str, text: str, voice: str, speed: float, lang: str, *, cache: bool,
             api_key: str | None = None, client: httpx.Client | None = None) -> Run:
    """One request, read as raw PCM; a part's arrival is when the client got it."""
    headers = None if cache else {"Cache-Control": "no-cache"}
    res = stream_speech(url, text, voice, speed, "pcm", api_key, client=client,
                        headers=headers, lang=lang)
    if res.status != 200:
        raise RuntimeError(f"HTTP {res.status}: {res.body[:300]!r}")
    arrivals = [a.t for a in res.arrivals]
    durations = [a.nbytes / BYTES_PER_SECOND for a in res.arrivals]
    return Run("http repeat" if cache else "http", arrivals, durations, res.total_s,
                     sum(durations), extra={"headers_s": res.headers_s})


#: the texts a soak cycles through, in order (those it was given)
SOAK_KINDS = ("phrase", "sentence", "paragraph")


def soak_kinds(texts: dict[str, str]) -> list[str]:
    return [k for k in SOAK_KINDS if k in texts] or list(texts)


def soak_text(texts: dict[str, str], i: int) -> str:
    """The soak's ``i``-th request text: phrases and sentences made unique so they
    synthesize; the paragraph repeats, so some come from the cache."""
    kinds = soak_kinds(texts)
    kind = kinds[i % len(kinds)]
    return texts[kind] if kind == "paragraph" else f"{texts[kind]} Number {i}."


def soak(server: ServerProcess, texts: dict[str, str], n: int, voice: str,
         api_key: str | None = None, baseline_after: int = 20) -> dict:
    """``n`` sequential requests of mixed lengths (phrases and sentences made unique so
    they synthesize; the paragraph repeats so some come from the cache); counts errors
    and the server's resident memory growth after the first ``baseline_after``."""
    errors, rss, statuses = 0, [], {}
    kinds = soak_kinds(texts)
    t0 = time.perf_counter()
    with httpx.Client(timeout=300.0) as client, progress.task("soak requests", total=n) as bar:
        for i in range(n):
            text = soak_text(texts, i)
            try:
                res = stream_speech(server.url, text, voice, None, ("pcm", "mp3", "opus")[(i // len(kinds)) % 3],
                                    api_key, client=client)
                statuses[res.status] = statuses.get(res.status, 0) + 1
                errors += res.status != 200
            except httpx.HTTPError:
                errors += 1
            if i + 1 == baseline_after or i + 1 == n:
                rss.append(server.rss_bytes())
            bar.advance(f"{errors} errors")
    base, end = rss[0], rss[-1]
    return {"requests": n, "errors": errors, "statuses": {str(k): v for k, v in statuses.items()},
            "rss_after_first_mb": base / 2**20, "rss_end_mb": end / 2**20,
            "rss_growth_pct": 100.0 * (end - base) / base if n > baseline_after else None,
            "seconds": time.perf_counter() - t0, "server_alive": server.alive()}
