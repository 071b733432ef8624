"""ONNX Runtime's profiler: where the time of one inference goes.

``SessionOptions.enable_profiling`` makes ORT write a Chrome-trace JSON with one
``"cat": "Node"`` event per kernel run (``dur`` in microseconds, ``args.op_name``).
We summarize it two ways: by operator type (Conv, Sin, Mul, ...) and by node-name
prefix (``/decoder/decoder/generator`` is the vocoder, ``/decoder`` the whole decoder,
``/encoder``, ``/text_encoder``, ``/predictor`` the rest).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Callable

#: node-name prefixes reported as shares of total kernel time
DEFAULT_PREFIXES = {
    "vocoder": "/decoder/decoder/generator",
    "decoder": "/decoder",
    "predictor": "/predictor",
    "text_encoder": "/text_encoder",
    "bert": "/encoder",
}


def read_trace(path: str | os.PathLike, last_runs: int | None = None) -> list[dict]:
    """Kernel events (``cat == "Node"``, ``*_kernel_time``) of an ORT profile JSON.

    With ``last_runs``, only those inside the last ``last_runs`` ``model_run`` spans
    (warm-up runs are in the same trace)."""
    data = json.loads(Path(path).read_text())
    events = data if isinstance(data, list) else data.get("traceEvents", [])
    kernels = [e for e in events if e.get("cat") == "Node" and "dur" in e
               and e.get("name", "").endswith("_kernel_time")]
    if last_runs:
        spans = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
                       if e.get("cat") == "Session" and e.get("name") == "model_run")
        spans = spans[-last_runs:]
        if spans:
            kernels = [e for e in kernels
                       if any(a <= float(e.get("ts", -1)) <= b for a, b in spans)]
    return kernels


def _node_name(event: dict) -> str:
    name = event.get("name", "")
    return name[: -len("_kernel_time")] if name.endswith("_kernel_time") else name


def summarize(events: list[dict], prefixes: dict[str, str] | None = None,
              top: int = 12, runs: int = 1) -> dict:
    """Top operator types by time, and the share of time under each name prefix.

    ``runs`` divides totals so that a profile of several runs reads per inference."""
    prefixes = DEFAULT_PREFIXES if prefixes is None else prefixes
    by_op: dict[str, float] = defaultdict(float)
    by_prefix: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    total = 0.0
    for e in events:
        dur = float(e["dur"]) / 1e6
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] += dur
        count[op] += 1
        total += dur
        node = _node_name(e)
        for label, prefix in prefixes.items():
            if node.startswith(prefix):
                by_prefix[label] += dur
    total = max(total, 1e-12)
    ranked = sorted(by_op.items(), key=lambda kv: kv[1], reverse=True)
    return {
        "kernel_seconds": total / runs,
        "top_ops": [{"op": op, "seconds": s / runs, "share": s / total,
                     "calls": count[op] // max(runs, 1)} for op, s in ranked[:top]],
        "share": {label: by_prefix.get(label, 0.0) / total for label in prefixes},
    }


def profile_session(make_session: Callable[[object], object], feeds: dict,
                    runs: int = 1, warmup: int = 1, out_dir: str | os.PathLike | None = None,
                    prefixes: dict[str, str] | None = None, top: int = 12) -> dict:
    """Profile ``runs`` inferences of a session made by ``make_session(sess_options_hook)``.

    ``make_session`` receives a function that turns profiling on for a SessionOptions; it
    must apply it before the session is created. Warm-up runs are excluded from the
    summary (only events after them are counted)."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="ortprof-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    def enable(so):
        so.enable_profiling = True
        so.profile_file_prefix = str(out_dir / "ort-profile")
        return so

    sess = make_session(enable)
    for _ in range(warmup):
        sess.run(None, feeds)
    for _ in range(runs):
        sess.run(None, feeds)
    path = Path(sess.end_profiling())
    events = read_trace(path, last_runs=runs)
    out = summarize(events, prefixes, top=top, runs=runs)
    out["trace"] = str(path)
    return out


def profile_engine_session(model_path: str | os.PathLike, session_cfg, feeds: dict,
                           runs: int = 1, warmup: int = 1,
                           out_dir: str | os.PathLike | None = None) -> dict:
    """Profile a session of ``model_path`` with the LabConfig session settings."""
    import onnxruntime as ort

    from labkit.engine.runtime import providers_for, session_options

    def make(enable):
        so = enable(session_options(session_cfg))
        return ort.InferenceSession(str(model_path), sess_options=so,
                                    providers=providers_for(session_cfg))

    return profile_session(make, feeds, runs=runs, warmup=warmup, out_dir=out_dir)


def as_rows(summary: dict) -> list[dict]:
    return [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r
            for r in summary.get("top_ops", [])]
