"""Stage 07 (and ``make bench``): the shipped configuration over HTTP beside kokoro-onnx in
process, in one run.

On the same texts (labkit.measure.texts: phrase, sentence, paragraph and article; the
article cut at a paragraph boundary to the endpoint's input cap, ``serve.max_input_chars``,
since OpenAI's API takes no more either), the same model variant and session settings
(the configuration the endpoint serves: best.json when there is one), five ways to get
speech:

- ``kokoro-onnx create`` / ``create_stream``: labkit.measure.baseline.KokoroBaseline, in process;
- ``pipeline``: our StreamingSynthesizer in process (labkit.measure.streaming.run_stream, no cache);
- ``http``: our endpoint (labkit.measure.httpbench), with ``Cache-Control: no-cache`` so
  every repeat synthesizes (G2P's own cache stays warm, as it does for the in-process
  pipeline, so "first time" here is if anything flattered);
- ``http repeat``: the same request again, served from the phrase/primer cache.

For each: time to first audio (request to the first audio sample in the client's hands),
total time, RTF, and underruns of a player that starts after ``buffer_s`` of audio. Then a
soak: ``soak_requests`` sequential requests of mixed lengths and formats, counting errors
and the server's resident memory growth after the first 20. Ratios are taken within the run.
"""
from __future__ import annotations

from pathlib import Path

import httpx

from labkit.config import LabConfig
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.lab.stage import Stage
from labkit.measure.baseline import KokoroBaseline
from labkit.measure.httpbench import RUNNERS, ServerProcess, run_http, soak
from labkit.measure.streaming import run_stream, summarize_runs
from labkit.measure.texts import capped
from labkit.served import resolve

NAME = "08_endpoint"
TEXT_NAMES = ("phrase", "sentence", "paragraph", "article")


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


def run_bench(cfg: LabConfig, run_id: str | None = None, texts: dict[str, str] | None = None,
              repeats: int = 3, long_repeats: int = 1, soak_requests: int = 200,
              buffer_s: float = 0.25, runners: tuple[str, ...] = RUNNERS,
              stage_name: str = "bench") -> Path:
    """Run the side-by-side bench and the soak; write ``bench.md`` and the record under
    ``artifacts/<run>/bench/``; return the record's path. ``repeats`` timed runs (after
    one warm-up) per text and runner; the article gets ``long_repeats`` and no warm-up."""
    served = resolve(cfg)  # the configuration the endpoint ships, for every runner alike
    scfg = served.cfg
    texts = dict(texts or capped(TEXT_NAMES, scfg.serve.max_input_chars))
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
                base = KokoroBaseline(scfg)
                base.warm_up()
                fns["kokoro-onnx create"] = lambda text: base.run_create(text, voice)
                fns["kokoro-onnx create_stream"] = lambda text: base.run_create_stream(text, voice)
            if "pipeline" in runners:
                synth = StreamingSynthesizer.from_config(scfg)
                for e in synth.engines:
                    e.warm_up()
                fns["pipeline"] = lambda text: run_stream(synth, text, voice, speed, lang,
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
                results[name] = {r: summarize_runs(runs[r], buffer_s) for r in order}
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
