"""Stage 00: the stock path a user starts from, measured.

kokoro-onnx 0.6.1's ``Kokoro.create`` (all audio at once) and ``Kokoro.create_stream``
on the shipped int8 model, and labkit's own streaming synthesis, on the same session
settings and texts: time to first audio, total time and RTF (median and p90 over
repeats after warm-up), and session load time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labkit.config import LabConfig
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.measure.texts import named, word_count
from labkit.measure.baseline import KokoroBaseline
from labkit.measure.streaming import run_stream, summarize_runs

NAME = "00_baseline"
METHODS = ("create", "create_stream", "labkit")


def measure_texts(cfg: LabConfig, texts: list[str], repeats: int = 5
                  ) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, np.ndarray]]]:
    """{text name: {method: summary}} and one take of audio per text and method."""
    engine = Engine(cfg)
    engine.warm_up()
    synth = StreamingSynthesizer(engine)
    baseline = KokoroBaseline(cfg)
    baseline.warm_up()
    runners = {
        "create": lambda t, keep: baseline.run_create(t, keep_audio=keep),
        "create_stream": lambda t, keep: baseline.run_create_stream(t, keep_audio=keep),
        "labkit": lambda t, keep: run_stream(synth, t, keep_audio=keep, name="labkit"),
    }
    results: dict[str, dict[str, dict]] = {}
    audio: dict[str, dict[str, np.ndarray]] = {}
    for name in texts:
        text = named(name)
        results[name] = {"words": word_count(text)}
        audio[name] = {}
        for method, run in runners.items():
            first = run(text, True)  # warm-up take, kept for listening
            audio[name][method] = first.audio
            runs = [run(text, False) for _ in range(max(1, repeats))]
            results[name][method] = summarize_runs(runs)
    return results, audio


def headline(results: dict[str, dict[str, dict]], load: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"session_load_s": load["median"]}
    for name, by_method in results.items():
        for method in METHODS:
            s = by_method[method]
            out[f"{name}: {method} ttfa_s"] = s["ttfa_s"]
            out[f"{name}: {method} rtf"] = s["rtf"]
    return out
