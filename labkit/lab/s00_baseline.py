"""Stage 00: the stock path a user starts from, measured.

kokoro-onnx 0.6.1's ``Kokoro.create`` (all audio at once) and ``Kokoro.create_stream`` on
the shipped int8 model, and labkit's own streaming synthesis, on the same session settings
and texts. Per text the three are timed by the one instrument (labkit.measure.compare:
interleaved rounds, an A/A control, paired ratios with bootstrap intervals) on time to
first audio, the stock ``create`` as the baseline; total time and RTF come from the same
runs. Session load time in process, beside it.
"""
from __future__ import annotations

from typing import Any, TypedDict

import numpy as np

from labkit import progress
from labkit.config import LabConfig
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.measure.baseline import KokoroBaseline, load_time
from labkit.measure.compare import compare
from labkit.measure.streaming import run_stream, summarize_runs
from labkit.measure.texts import named, word_count
from labkit.tables import interval

NAME = "00_baseline"
METHODS = ("create", "create_stream", "labkit")
BASELINE = "create"


def runners(cfg: LabConfig) -> dict[str, Any]:
    """method -> a function of (text, keep_audio) returning a Run, all on one model."""
    engine = Engine(cfg)
    engine.warm_up()
    synth = StreamingSynthesizer(engine)
    base = KokoroBaseline(cfg)
    base.warm_up()
    return {"create": lambda t, keep: base.run_create(t, keep_audio=keep),
            "create_stream": lambda t, keep: base.run_create_stream(t, keep_audio=keep),
            "labkit": lambda t, keep: run_stream(synth, t, keep_audio=keep, name="labkit")}


class BaselineResult(TypedDict):
    """What :func:`run` returns: the notebook's cells read it, :func:`record` writes it."""

    #: in-process session load time (median, p90, n, ...)
    load: dict[str, Any]
    #: text -> {"words": n, method -> its runs summarized, with its ratio to create}
    results: dict[str, dict[str, Any]]
    #: title -> Comparison.to_dict()
    comparisons: dict[str, dict[str, Any]]
    #: text -> method -> the last timed take's audio (not recorded)
    _audio: dict[str, dict[str, np.ndarray]]


def run(cfg: LabConfig, st, *, texts: list[str], rounds: int | None = None,
        max_rounds: int | None = None, load_repeats: int = 3) -> BaselineResult:
    load = load_time(cfg, repeats=load_repeats)
    fns = runners(cfg)
    results: dict[str, dict] = {}
    comparisons: dict[str, dict] = {}
    audio: dict[str, dict[str, np.ndarray]] = {}
    for name in progress.steps(texts, "texts"):
        text = named(name)
        # every timed run keeps its audio (a few MB): the last one is the take to listen to,
        # so no untimed extra synthesis is paid for it
        cmp = compare({m: (lambda fn=fn: fn(text, True)) for m, fn in fns.items()}, BASELINE,
                      warmup=0, rounds=rounds, max_rounds=max_rounds,
                      measure=lambda r: r.ttfa_s, keep=lambda r: r, criterion="ttfa_s")
        audio[name] = {m: cmp.kept[m][-1].audio for m in fns}
        results[name] = {"words": word_count(text)}
        for m in fns:
            s = summarize_runs(cmp.kept[m])
            s.update(ttfa_ratio=cmp.ratio(m), ttfa_ci95=list(cmp.ci95(m)))
            results[name][m] = s
        cmp.kept = {}
        comparisons[f"time to first audio, {name} (vs create)"] = cmp.to_dict()
    return BaselineResult(load=load, results=results, comparisons=comparisons, _audio=audio)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"session_load_s": round(result["load"]["median"], 3)}
    for name, by in result["results"].items():
        for m in METHODS:
            s = by[m]
            out[f"{name}: {m} ttfa_s"] = round(s["ttfa_s"], 3)
            out[f"{name}: {m} rtf"] = round(s["rtf"], 3)
        for m in ("create_stream", "labkit"):
            out[f"{name}: {m} first audio vs create (x)"] = {
                "value": round(by[m]["ttfa_ratio"], 2), "ci95": [round(x, 2) for x in by[m]["ttfa_ci95"]]}
    return out


def record(st, result: BaselineResult) -> None:
    st.metrics["session_load"] = result["load"]
    st.metrics["results"] = result["results"]
    st.metrics["comparisons"] = result["comparisons"]
    st.metrics["headline"] = headline(result)


def table(result: dict[str, Any]) -> str:
    rows = ["| text | words | method | TTFA median s | vs create (x) | 95 % interval | total s | RTF | chunks |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, by in result["results"].items():
        for m in METHODS:
            s = by[m]
            rows.append(f"| {name} | {by['words']} | {m} | {s['ttfa_s']:.3f} | {s['ttfa_ratio']:.2f} | "
                        f"{interval(s['ttfa_ci95'], 2)} | {s['total_s']:.3f} | "
                        f"{s['rtf']:.3f} | {s['chunks']} |")
    return "\n".join(rows)


def plot(result: dict[str, Any], plt):
    res = result["results"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.27
    for i, m in enumerate(METHODS):
        ax.bar([k + (i - 1) * width for k in range(len(res))], [res[n][m]["ttfa_s"] for n in res],
               width, label=m)
    ax.set_xticks(range(len(res)), list(res))
    ax.set_ylabel("time to first audio (s, median)")
    ax.set_title("Baseline: time to first audio by text")
    ax.legend()
    fig.tight_layout()
    return fig
