"""Stage 08 (and ``make bench``): the shipped configuration over HTTP beside kokoro-onnx in
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
and the server's resident memory growth after the first 20. Per text every runner is timed by the one instrument (labkit.measure.compare:
interleaved rounds, an A/A control, paired ratios with bootstrap intervals) on time to
first audio, the in-process pipeline as the baseline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

import httpx

from labkit import progress
from labkit.config import LabConfig
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.lab.costs import Costs
from labkit.lab.stage import Stage
from labkit.measure.baseline import KokoroBaseline
from labkit.measure.httpbench import RUNNERS, ServerProcess, run_http, soak, soak_text
from labkit.measure.compare import compare, default_rounds
from labkit.measure.streaming import run_stream, summarize_runs
from labkit.measure.texts import capped
from labkit.optimize import split as splitting
from labkit.best_config import resolve
from labkit.tables import interval

NAME = "08_endpoint"
TEXT_NAMES = ("phrase", "sentence", "paragraph", "article")


BASELINE = "pipeline"


def runners(scfg: LabConfig, server: ServerProcess, client: httpx.Client,
            names: tuple[str, ...]) -> dict[str, Any]:
    """runner name -> a function of the text returning a Run; the baseline always."""
    voice, speed, lang, key = scfg.voice, scfg.speed, scfg.lang, scfg.serve.api_key
    fns: dict[str, Any] = {}
    if any(r.startswith("kokoro-onnx") for r in names):
        base = KokoroBaseline(scfg)
        base.warm_up()
        fns["kokoro-onnx create"] = lambda text: base.run_create(text, voice)
        fns["kokoro-onnx create_stream"] = lambda text: base.run_create_stream(text, voice)
    synth = StreamingSynthesizer.from_config(scfg)
    for e in synth.engines:
        e.warm_up()
    fns[BASELINE] = lambda text: run_stream(synth, text, voice, speed, lang, name=BASELINE)
    fns["http"] = lambda text: run_http(server.url, text, voice, speed, lang, cache=False,
                                        api_key=key, client=client)
    fns["http repeat"] = lambda text: run_http(server.url, text, voice, speed, lang, cache=True,
                                               api_key=key, client=client)
    return {r: fns[r] for r in names if r in fns} | {BASELINE: fns[BASELINE]}


class EndpointResult(TypedDict):
    """What :func:`run` returns: the notebook's cells read it, :func:`record` writes it."""

    #: the served configuration's one-line header (labkit.best_config)
    served: str
    variant: str
    voice: str
    #: the playback buffer the underruns are counted with
    buffer_s: float
    #: text -> runner -> its runs summarized, with its ratio to the pipeline
    results: dict[str, dict[str, dict[str, Any]]]
    #: title -> Comparison.to_dict()
    comparisons: dict[str, dict[str, Any]]
    #: the soak's figures (None: no soak)
    soak: dict[str, Any] | None
    server_health: dict[str, Any]
    #: the tail of the server's /metrics text
    server_metrics: str


def run(cfg: LabConfig, st, *, texts: list[str] = ("phrase", "sentence", "paragraph"),
        rounds: int | None = None, max_rounds: int | None = None, soak_requests: int = 40,
        buffer_s: float = 0.25, runner_names: tuple[str, ...] = RUNNERS) -> EndpointResult:
    """The served configuration (best.json under ``cfg``'s explicit settings) over HTTP and
    in process, text by text, then the soak."""
    served = resolve(cfg)  # the configuration the endpoint ships, for every runner alike
    scfg = served.cfg
    splitting.ensure_for(scfg)  # the split parts it runs on (sentence prosody), built once
    text_by_name = capped(texts, scfg.serve.max_input_chars)
    results: dict[str, dict] = {}
    comparisons: dict[str, dict] = {}
    with ServerProcess(scfg, log_path=st.path("server.log")) as server, \
            httpx.Client(timeout=600.0) as client:
        fns = runners(scfg, server, client, tuple(runner_names))
        for name in progress.steps(list(text_by_name), "texts"):
            text = text_by_name[name]
            fns.get("http repeat", lambda t: None)(text)  # fills the cache it is about
            cmp = compare({r: (lambda fn=fn: fn(text)) for r, fn in fns.items()}, BASELINE,
                          rounds=rounds, max_rounds=max_rounds, measure=lambda r: r.ttfa_s,
                          keep=lambda r: r, criterion="ttfa_s")
            results[name] = {}
            for r in fns:
                row = summarize_runs(cmp.kept[r], buffer_s)
                row.update(ttfa_ratio=cmp.ratio(r), ttfa_ci95=list(cmp.ci95(r)))
                results[name][r] = row
            cmp.kept = {}
            comparisons[f"time to first audio, {name} (vs the in-process pipeline)"] = cmp.to_dict()
        health = client.get(server.url + "/health").json()
        soak_result = soak(server, text_by_name, soak_requests, scfg.voice, scfg.serve.api_key) \
            if soak_requests else None
        metrics_text = client.get(server.url + "/metrics").text[-6000:]
    return EndpointResult(served=served.header, variant=scfg.variant, voice=scfg.voice,
                          buffer_s=buffer_s, results=results, comparisons=comparisons,
                          soak=soak_result, server_health=health, server_metrics=metrics_text)


#: the stage's targets: name -> (text, runner, how its TTFA ratio to the pipeline must stand)
def targets(results: dict[str, dict]) -> dict[str, Any]:
    """Each target judged on an interval: HTTP first audio within 1.3x of the in-process
    pipeline's (the interval of pipeline/http wholly above 1/1.3); a repeat from the cache
    >= 10x sooner than the first request: http / http repeat is (pipeline / http repeat) /
    (pipeline / http), and it is at least 10 where the low end of the repeat's interval
    over the high end of the first request's is."""
    out: dict[str, Any] = {}
    para = results.get("paragraph") or next(iter(results.values()), {})
    if "http" in para:
        out["http_within_1.3x_of_pipeline"] = para["http"]["ttfa_ci95"][0] > 1 / 1.3
    if "http repeat" in para and "http" in para:
        out["repeat_10x_sooner"] = (para["http repeat"]["ttfa_ci95"][0]
                                    / max(para["http"]["ttfa_ci95"][1], 1e-9)) >= 10
    return out


def headline(result: dict[str, Any]) -> dict[str, Any]:
    head: dict[str, Any] = {"served": result["served"]}
    for name, by in result["results"].items():
        for r, row in by.items():
            head[f"{name} TTFA {r} (s)"] = round(row["ttfa_s"], 3)
            if r != BASELINE:
                head[f"{name} TTFA pipeline / {r} (x)"] = {
                    "value": round(row["ttfa_ratio"], 3), "ci95": [round(x, 3) for x in row["ttfa_ci95"]]}
    soak_result = result["soak"]
    if soak_result:
        head["soak requests"] = soak_result["requests"]
        head["soak errors"] = soak_result["errors"]
        if soak_result["rss_growth_pct"] is not None:
            head["soak RSS growth after 20 (%)"] = round(soak_result["rss_growth_pct"], 1)
    for k, ok in targets(result["results"]).items():
        head[f"target {k}"] = "met" if ok else "NOT met"
    return head


def record(st, result: EndpointResult) -> None:
    st.note(f"served configuration: {result['served']}")
    for key in ("results", "comparisons", "soak", "server_health", "server_metrics"):
        st.metrics[key] = result[key]
    st.metrics["table_md"] = table(result["results"])
    st.metrics["targets_met"] = targets(result["results"])
    st.metrics["headline"] = headline(result)
    st.path("bench.md").write_text(
        f"# bench ({st.run_id})\n\nserved configuration: {result['served']}; variant "
        f"{result['variant']}, voice {result['voice']}; start-up buffer {result['buffer_s']} s\n\n"
        f"{st.metrics['table_md']}\n\nsoak: {result['soak']}\n")


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| text | runner | TTFA median s | pipeline / runner (x) | 95 % interval | total s | audio s | "
             "RTF | underruns (max) | chunks |", "|---|---|---|---|---|---|---|---|---|---|"]
    for text, by_runner in results.items():
        for runner, s in by_runner.items():
            lines.append(
                f"| {text} | {runner} | {s['ttfa_s']:.3f} | {s['ttfa_ratio']:.3f} | "
                f"{interval(s['ttfa_ci95'], 3)} | {s['total_s']:.2f} | "
                f"{s['audio_s']:.2f} | {s['rtf']:.3f} | {s['underruns_max']} | {s['chunks']} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], plt):
    """Time to first audio per text and runner (median, log scale): how much HTTP adds to
    the in-process pipeline, and what the cache saves on a repeat."""
    results = result["results"]
    runners_ = list(dict.fromkeys(r for by in results.values() for r in by))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / max(1, len(runners_))
    for i, r in enumerate(runners_):
        xs = [j + i * width for j, by in enumerate(results.values()) if r in by]
        ax.bar(xs, [by[r]["ttfa_s"] for by in results.values() if r in by], width, label=r)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))], list(results))
    ax.set_yscale("log")
    ax.set_ylabel("first audio, median s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plan(costs: Costs, texts: list[str], soak_requests: int, max_input_chars: int,
         runner_names: tuple[str, ...] = RUNNERS, rounds: int | None = None) -> dict[str, Any]:
    """What :func:`run` will do and about how long it takes, counted from its parameters
    and priced by ``costs`` (labkit.lab.costs): per text, a warm-up and ``rounds`` rounds
    of every runner plus the A/A control, each synthesizing the whole text except the
    cached repeat; then the soak's requests; plus building the server, the pipeline and
    kokoro-onnx. ``max_minutes``: if the machine is noisy and compare adds rounds (up to
    three times as many)."""
    names = list(dict.fromkeys([*runner_names, BASELINE]))
    entries = len(names) + 1  # the A/A control
    k = rounds or default_rounds(entries)
    synthesizing = entries - ("http repeat" in names)
    rows = []
    by_name = capped(texts, max_input_chars)
    for name, text in by_name.items():
        per_call = costs.synth_s(text)
        rows.append({"text": name, "words": len(text.split()), "audio_s": costs.audio_s(text),
                     "rounds": k, "calls": (1 + k) * entries,
                     "seconds": ((1 + k) * synthesizing + 1) * per_call,
                     "max_seconds": ((1 + 3 * k) * synthesizing + 1) * per_call})
    soak_texts = {soak_text(by_name, i) for i in range(soak_requests)} if by_name else set()
    soak_s = sum(costs.synth_s(t) for t in soak_texts)  # a repeated text comes from the cache
    start_s = 3 * costs.session_s  # the server's engine, the pipeline's and kokoro-onnx's
    total = start_s + soak_s + sum(r["seconds"] for r in rows)
    worst = start_s + soak_s + sum(r["max_seconds"] for r in rows)
    return {"texts": rows, "runners": names, "entries": entries, "soak_requests": soak_requests,
            "soak_seconds": soak_s, "start_seconds": start_s, "minutes": total / 60,
            "max_minutes": worst / 60}


def plan_lines(p: dict[str, Any], source: str) -> list[str]:
    """The plan as a person reads it before the bench starts."""
    lines = [f"labkit bench: {len(p['texts'])} text(s) x {p['entries']} entries "
             f"({', '.join(p['runners'])} + the A/A control), a warm-up and "
             f"{p['texts'][0]['rounds'] if p['texts'] else 0} rounds each"
             + (f", then a {p['soak_requests']}-request soak" if p["soak_requests"] else "")]
    for r in p["texts"]:
        lines.append(f"  {r['text']:<10} {r['words']:>5} words, ~{r['audio_s']:.0f} s of audio: "
                     f"{r['calls']} calls, ~{progress.fmt_seconds(r['seconds'])}")
    if p["soak_requests"]:
        lines.append(f"  soak       {p['soak_requests']} requests, ~{progress.fmt_seconds(p['soak_seconds'])}")
    lines.append(f"  estimated ~{progress.fmt_seconds(p['minutes'] * 60)} in all (up to "
                 f"~{progress.fmt_seconds(p['max_minutes'] * 60)} if rounds are added on a noisy "
                 f"machine); costs {source}")
    lines.append("  shorter: labkit bench --texts phrase --soak 10")
    return lines


def bench(cfg: LabConfig, run_id: str | None = None, stage_name: str = "bench", **params) -> Path:
    """``make bench`` / ``labkit bench``: this stage under its own name, into ``run_id``."""
    with Stage(stage_name, resolve(cfg).cfg, run_id, params) as st:
        record(st, run(cfg, st, **params))
    return st.record_path
