"""Offline graph optimization and ORT-format conversion, and one timed cold start.

* an **optimized .onnx** per ``GraphOptimizationLevel`` (:func:`optimize`);
* an **ORT-format** model (a flatbuffer): the same thing
  ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does, through its API, so
  we choose the level and providers (:func:`to_ort_format`);
* ``python -m labkit.optimize.convert cold ...``: one cold start (session creation + first
  inference) in this fresh process, printed as JSON (the cold-start protocol the timing
  instrument runs in fresh processes).

The cache the Engine loads through lives in :mod:`labkit.engine.graph_cache`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from labkit.config import OPT_LEVELS, ConfigError, SessionConfig
from labkit.engine import assets
from labkit.engine.graph_cache import make_cached_session, save_optimized
from labkit.engine.sessions import kokoro_feeds, style_row


# -- offline optimization -----------------------------------------------------------
def optimize(model_path: str | os.PathLike, out_dir: str | os.PathLike,
             levels: tuple[str, ...] = OPT_LEVELS,
             session_cfg: SessionConfig | None = None) -> dict[str, Path]:
    """One optimized .onnx per level: ``<stem>.opt-<level>.onnx`` in ``out_dir``."""
    base = session_cfg or SessionConfig()
    out = {}
    for level in levels:
        if level not in OPT_LEVELS:
            raise ConfigError(f"optimization level {level!r}: allowed are {', '.join(OPT_LEVELS)}")
        cfg = dataclasses.replace(base, graph_optimization_level=level)
        dest = Path(out_dir) / f"{Path(model_path).stem}.opt-{level}.onnx"
        out[level] = save_optimized(model_path, dest, cfg, fmt="onnx")
    return out


def to_ort_format(model_path: str | os.PathLike, dest: str | os.PathLike,
                  session_cfg: SessionConfig | None = None) -> Path:
    """Convert to ORT format at the config's optimization level (what
    ``onnxruntime.tools.convert_onnx_models_to_ort`` does, level and providers ours)."""
    return save_optimized(model_path, dest, session_cfg or SessionConfig(), fmt="ort")


# -- one cold start, in this (fresh) process --------------------------------------
def cold_start(model_path: str, session_cfg: SessionConfig, cache_dir: str,
               tokens: list[int], voices_path: str, voice: str = "af_heart") -> dict:
    """Session creation + first inference, timed inside a fresh process.

    ``first_audio_s`` = create + first run: the earliest the first audio can exist."""
    t0 = time.perf_counter()
    sess = make_cached_session(model_path, session_cfg, cache_dir)
    t1 = time.perf_counter()
    style = style_row(assets.load_voices(voices_path)[voice], len(tokens))
    feeds = kokoro_feeds(tokens, style, names=sess)
    t2 = time.perf_counter()
    audio = sess.run(None, feeds)[0]
    t3 = time.perf_counter()
    audio2 = sess.run(None, feeds)[0]
    t4 = time.perf_counter()
    return {"create_s": t1 - t0, "first_run_s": t3 - t2, "second_run_s": t4 - t3,
            "first_audio_s": (t1 - t0) + (t3 - t2), "samples": int(np.asarray(audio).size),
            "same_length_second_run": int(np.asarray(audio2).size) == int(np.asarray(audio).size)}


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.optimize.convert")
    sub = parser.add_subparsers(dest="cmd", required=True)
    cold = sub.add_parser("cold", help="time one cold start in this process; prints JSON")
    cold.add_argument("--model", required=True)
    cold.add_argument("--session", default="{}", help="SessionConfig fields as JSON")
    cold.add_argument("--cache-dir", required=True)
    cold.add_argument("--tokens", required=True, help="token ids, comma-separated")
    cold.add_argument("--voices", required=True)
    cold.add_argument("--voice", default="af_heart")
    args = parser.parse_args(argv)
    fields = json.loads(args.session)
    try:
        session_cfg = SessionConfig(**fields)
    except TypeError as exc:
        raise ConfigError(f"--session: {exc}") from exc
    tokens = [int(t) for t in args.tokens.split(",") if t]
    out = cold_start(args.model, session_cfg, args.cache_dir, tokens, args.voices, args.voice)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
