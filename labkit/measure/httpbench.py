"""``make bench``: our endpoint over HTTP beside kokoro-onnx in process, in one run.

On the same texts (labkit.measure.streaming's phrase, sentence, paragraph and article; the article
cut at a paragraph boundary to the endpoint's input cap, ``serve.max_input_chars``, since
OpenAI's API takes no more either), the same model variant and session settings (the
configuration the endpoint serves: best.json when there is one), five ways to get speech:

- ``kokoro-onnx create`` / ``create_stream``: labkit.measure.streaming.KokoroBaseline, in process;
- ``pipeline``: our StreamingSynthesizer in process (labkit.measure.streaming.run_stream, no cache);
- ``http``: our endpoint, the real server in a subprocess on a free loopback port, read
  as raw PCM so the first body byte is the first audio sample, with ``Cache-Control:
  no-cache`` so every repeat synthesizes (G2P's own cache stays warm, as it does for the
  in-process pipeline, so "first time" here is if anything flattered);
- ``http repeat``: the same request again, served from the phrase/primer cache.

For each: time to first audio (TTFA: request to the first audio sample in the client's
hands), total time, RTF (total time over audio seconds: with streaming, the wall clock
is what the listener waits on), and underruns of a player that starts after
``buffer_s`` of audio (labkit.measure.streaming.simulate_playback). Then a soak: ``soak_requests``
sequential requests of mixed lengths and formats, counting errors and the server's
resident memory growth after the first 20. Ratios are taken within the run.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from labkit.measure import streaming as bench
from labkit.measure.client import BYTES_PER_SECOND, stream_speech
from labkit.config import REPO_ROOT, LabConfig
from labkit.lab.stage import Stage
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.served import resolve

TEXT_NAMES = ("phrase", "sentence", "paragraph", "article")


def bench_texts(max_chars: int, names=TEXT_NAMES) -> dict[str, str]:
    """labkit.measure.streaming's texts, each cut at a paragraph (else sentence) boundary to
    ``max_chars``, so the endpoint takes them whole."""
    out = {}
    for name in names:
        text = bench.text(name)
        if len(text) > max_chars:
            kept = ""
            for para in text.split("\n\n"):
                joined = f"{kept}\n\n{para}" if kept else para
                if len(joined) > max_chars:
                    break
                kept = joined
            text = kept or text[:max_chars].rsplit(". ", 1)[0] + "."
        out[name] = text
    return out


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
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=self._log,
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# -- the HTTP runner (the in-process ones are labkit.measure.streaming's) ---------------------------------------
def run_http(url: str, text: str, voice: str, speed: float, lang: str, *, cache: bool,
             api_key: str | None = None, client: httpx.Client | None = None) -> bench.Run:
    """One request, read as raw PCM; a part's arrival is when the client got it."""
    headers = None if cache else {"Cache-Control": "no-cache"}
    res = stream_speech(url, text, voice, speed, "pcm", api_key, client=client,
                        headers=headers, lang=lang)
    if res.status != 200:
        raise RuntimeError(f"HTTP {res.status}: {res.body[:300]!r}")
    arrivals = [a.t for a in res.arrivals]
    durations = [a.nbytes / BYTES_PER_SECOND for a in res.arrivals]
    return bench.Run("http repeat" if cache else "http", arrivals, durations, res.total_s,
                     sum(durations), extra={"headers_s": res.headers_s})


# -- the bench -------------------------------------------------------------------------------
def _table(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| text | runner | TTFA median s | TTFA p90 s | total s | audio s | RTF | "
             "underruns (max) | underrun s (max) | chunks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for text, by_runner in results.items():
        for runner, s in by_runner.items():
            lines.append(
                f"| {text} | {runner} | {s['ttfa_s']:.3f} | {s['ttfa_p90_s']:.3f} | "
                f"{s['total_s']:.2f} | {s['audio_s']:.2f} | {s['rtf']:.3f} | "
                f"{s['underruns_max']} | {s['underrun_s_max']:.2f} | {s['chunks']} |")
    return "\n".join(lines)


def soak(server: ServerProcess, texts: dict[str, str], n: int, voice: str,
         api_key: str | None = None, baseline_after: int = 20) -> dict:
    """``n`` sequential requests of mixed lengths (phrases and sentences made unique so
    they synthesize; the paragraph repeats so some come from the cache); counts errors
    and the server's resident memory growth after the first ``baseline_after``."""
    kinds = [k for k in ("phrase", "sentence", "paragraph") if k in texts] or list(texts)
    errors, rss, statuses = 0, [], {}
    t0 = time.perf_counter()
    with httpx.Client(timeout=300.0) as client:
        for i in range(n):
            kind = kinds[i % len(kinds)]
            text = texts[kind] if kind == "paragraph" else f"{texts[kind]} Number {i}."
            try:
                res = stream_speech(server.url, text, voice, None, ("pcm", "mp3", "opus")[(i // len(kinds)) % 3],
                                    api_key, client=client)
                statuses[res.status] = statuses.get(res.status, 0) + 1
                errors += res.status != 200
            except httpx.HTTPError:
                errors += 1
            if i + 1 == baseline_after or i + 1 == n:
                rss.append(server.rss_bytes())
    base, end = rss[0], rss[-1]
    return {"requests": n, "errors": errors, "statuses": {str(k): v for k, v in statuses.items()},
            "rss_after_first_mb": base / 2**20, "rss_end_mb": end / 2**20,
            "rss_growth_pct": 100.0 * (end - base) / base if n > baseline_after else None,
            "seconds": time.perf_counter() - t0, "server_alive": server.alive()}


def run_bench(cfg: LabConfig, run_id: str | None = None, texts: dict[str, str] | None = None,
              repeats: int = 3, long_repeats: int = 1, soak_requests: int = 200,
              buffer_s: float = 0.25, runners: tuple[str, ...] = RUNNERS,
              stage_name: str = "bench") -> Path:
    """Run the side-by-side bench and the soak; write ``bench.md`` and the record under
    ``artifacts/<run>/bench/``; return the record's path. ``repeats`` timed runs (after
    one warm-up) per text and runner; the article gets ``long_repeats`` and no warm-up."""
    served = resolve(cfg)  # the configuration the endpoint ships, for every runner alike
    scfg = served.cfg
    texts = dict(texts or bench_texts(scfg.serve.max_input_chars))
    params = {"texts": {k: len(v) for k, v in texts.items()}, "repeats": repeats,
              "long_repeats": long_repeats, "soak_requests": soak_requests,
              "buffer_s": buffer_s, "runners": list(runners)}
    with Stage(stage_name, scfg, run_id, params) as st:
        st.note(f"served configuration: {served.header}")
        voice, speed, lang = scfg.voice, scfg.speed, scfg.lang
        results: dict[str, dict[str, dict]] = {name: {} for name in texts}

        def reps(name):
            return (long_repeats, 0) if name == "article" else (repeats, 1)

        # all runners stay loaded and take turns (text by text, repeat by repeat), so a
        # change in the machine's load hits them alike; the server idles while others run
        soak_result = None
        with ServerProcess(scfg, log_path=st.path("server.log")) as server, \
                httpx.Client(timeout=600.0) as client:
            key = scfg.serve.api_key
            fns: dict[str, object] = {}
            if any(r.startswith("kokoro-onnx") for r in runners):
                base = bench.KokoroBaseline(scfg)
                base.warm_up()
                fns["kokoro-onnx create"] = lambda text: base.run_create(text, voice)
                fns["kokoro-onnx create_stream"] = lambda text: base.run_create_stream(text, voice)
            if "pipeline" in runners:
                synth = StreamingSynthesizer.from_config(scfg)
                for e in synth.engines:
                    e.warm_up()
                fns["pipeline"] = lambda text: bench.run_stream(synth, text, voice, speed, lang,
                                                                name="pipeline")
            fns["http"] = lambda text: run_http(server.url, text, voice, speed, lang,
                                                cache=False, api_key=key, client=client)
            fns["http repeat"] = lambda text: run_http(server.url, text, voice, speed, lang,
                                                       cache=True, api_key=key, client=client)
            order = [r for r in runners if r in fns]
            for name, text in texts.items():
                n, warm = reps(name)
                runs: dict[str, list] = {r: [] for r in order}
                for r in order:
                    # a warm-up each; "http repeat" always gets one: it fills the cache
                    for _ in range(max(warm, 1 if r == "http repeat" else 0)):
                        fns[r](text)
                for _ in range(max(1, n)):
                    for r in order:
                        runs[r].append(fns[r](text))
                results[name] = {r: bench.summarize(runs[r], buffer_s) for r in order}
            fns.clear()
            st.metrics["server_health"] = client.get(server.url + "/health").json()
            if soak_requests:
                soak_result = soak(server, texts, soak_requests, voice, key)
            st.metrics["server_metrics"] = client.get(server.url + "/metrics").text[-6000:]

        st.metrics["results"] = results
        st.metrics["soak"] = soak_result
        ratios = _ratios(results)
        st.metrics["ratios"] = ratios
        table = _table(results)
        st.metrics["table_md"] = table
        st.path("bench.md").write_text(
            f"# bench ({st.run_id})\n\nserved configuration: {served.header}; variant "
            f"{scfg.variant}, voice {voice}; start-up buffer {buffer_s} s\n\n{table}\n\n"
            + "\n".join(f"- {k}: {v:.2f}" if v is not None else f"- {k}: n/a"
                         for k, v in ratios.items())
            + f"\n\nsoak: {soak_result}\n")
        head = {k: round(v, 2) for k, v in ratios.items() if v is not None}
        para = results.get("paragraph", {})
        for runner in ("http", "pipeline", "kokoro-onnx create_stream", "http repeat"):
            if runner in para:
                head[f"paragraph TTFA {runner} (s)"] = round(para[runner]["ttfa_s"], 3)
        if soak_result:
            head["soak errors"] = soak_result["errors"]
            if soak_result["rss_growth_pct"] is not None:
                head["soak RSS growth after 20 (%)"] = round(soak_result["rss_growth_pct"], 1)
        st.metrics["headline"] = head
    return st.record_path


def _ratios(results: dict[str, dict[str, dict]]) -> dict[str, float | None]:
    def ratio(text, a, b):
        try:
            return results[text][a]["ttfa_s"] / results[text][b]["ttfa_s"]
        except (KeyError, ZeroDivisionError, TypeError):
            return None

    out = {
        "paragraph: create_stream TTFA / http TTFA (goal >= 6)":
            ratio("paragraph", "kokoro-onnx create_stream", "http"),
        "paragraph: http TTFA / pipeline TTFA (goal <= 1.3)": ratio("paragraph", "http", "pipeline"),
    }
    for text in results:
        out[f"{text}: first / repeat TTFA (goal >= 10)"] = ratio(text, "http", "http repeat")
    return out
