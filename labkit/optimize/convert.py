"""Offline graph optimization, ORT-format conversion, and a cache of both.

ONNX Runtime optimizes a graph every time a session is created (constant folding,
fusions, and at level ``all`` a CPU-specific NCHWc layout). That work can be done once,
offline, and saved:

* as an **optimized .onnx** (``SessionOptions.optimized_model_filepath``), one per
  ``GraphOptimizationLevel``;
* as an **ORT-format** model (a flatbuffer, ``session.save_model_format=ORT``): the
  same thing ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does, through
  its API, so we choose the level and providers.

A saved graph is only valid for the model it came from, the ONNX Runtime that wrote it
and the settings it was optimized with (level, providers, CPU architecture), so the
cache key is exactly that: ``sha256(model) + ORT version + settings``. A cached graph
is loaded with the session's own optimizer switched off (the work is already done):
that is where the start-up time goes.

Entry points: :func:`cached_model_for` (the path to load for a SessionConfig),
:func:`make_cached_session`, :func:`optimize`, :func:`to_ort_format`, and
``python -m labkit.optimize.convert cold ...`` (one cold start in this fresh process, as JSON).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from labkit.config import OPT_LEVELS, ConfigError, SessionConfig

#: settings that change the saved graph (threads, arena etc. do not)
GRAPH_SETTINGS = ("graph_optimization_level", "providers")
FORMATS = ("onnx", "ort")
_HASH_MEMO = "sha256-memo.json"


# -- model identity -----------------------------------------------------------------
def model_sha256(path: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a model file. With ``memo_dir``, remembered by (path, size, mtime) so a
    cold start does not pay to hash 90-330 MB again; any change of size or mtime rehashes."""
    path = Path(path)
    st = path.stat()
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = Path(memo_dir) / _HASH_MEMO if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_path is not None and memo_path.exists():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        if stamp in memo:
            return memo[stamp]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    if memo_path is not None:
        memo = {k: v for k, v in memo.items() if not k.startswith(f"{path.resolve()}|")}
        memo[stamp] = digest
        _atomic_text(memo_path, json.dumps(memo, indent=1, sort_keys=True))
    return digest


def cache_key(model_hash: str, session_cfg: SessionConfig, fmt: str,
              ort_version: str | None = None, machine: str | None = None) -> str:
    """Key of a saved graph: model hash, ORT version, CPU architecture, and the settings
    that shape the graph. ``ort_version``/``machine`` default to this process's; tests
    pass them to check that a new ONNX Runtime invalidates the cache."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: allowed are {', '.join(FORMATS)}")
    parts = {
        "model": model_hash,
        "ort": ort_version or ort.__version__,
        "machine": machine or platform.machine(),
        "format": fmt,
        **{name: getattr(session_cfg, name) for name in GRAPH_SETTINGS},
    }
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# -- offline optimization -----------------------------------------------------------
def _save_options(session_cfg: SessionConfig, dest: Path, fmt: str) -> ort.SessionOptions:
    from labkit.engine.runtime import session_options

    so = session_options(session_cfg, optimized_model_path=str(dest))
    if fmt == "ort":
        so.add_session_config_entry("session.save_model_format", "ORT")
    else:
        # keep big initializers inline: one self-contained file per cache entry
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", str(1 << 62))
    return so


def save_optimized(model_path: str | os.PathLike, dest: str | os.PathLike,
                   session_cfg: SessionConfig, fmt: str = "onnx") -> Path:
    """Optimize ``model_path`` at ``session_cfg.graph_optimization_level`` for its providers
    and save the result to ``dest`` (atomically) as .onnx or ORT format."""
    from labkit.engine.runtime import providers_for

    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: allowed are {', '.join(FORMATS)}")
    session_cfg.validate()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".ort" if fmt == "ort" else ".onnx"
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    try:
        so = _save_options(session_cfg, Path(tmp), fmt)
        ort.InferenceSession(str(model_path), sess_options=so,
                             providers=providers_for(session_cfg))
        if Path(tmp).stat().st_size == 0:
            raise RuntimeError(f"ONNX Runtime wrote nothing to {tmp}")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


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


# -- the cache --------------------------------------------------------------------
def cache_format(session_cfg: SessionConfig) -> str | None:
    """"ort", "onnx", or None when the config asks for no cached graph (rewrites alone
    imply an optimized .onnx cache: a rewritten graph lives in the cache)."""
    if session_cfg.use_ort_format:
        return "ort"
    if session_cfg.use_optimized_cache or session_cfg.rewrites:
        return "onnx"
    return None


def probe_feeds(n_tokens: int = 24, seed: int = 0) -> dict:
    """Deterministic model inputs for shape probes and rewrite checks when no real
    ones are given (token ids from the phoneme vocabulary, a plausible style row)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = [16, 43, 156, 102, 4, 62, 61, 16, 83, 56, 156, 51, 158, 46, 16, 48, 156, 86,
           123, 4, 57, 135, 156, 69]
    toks = [ids[i % len(ids)] for i in range(n_tokens)]
    return {"tokens": np.array([[0, *toks, 0]], dtype=np.int64),
            "style": rng.normal(0.0, 0.15, size=(1, 256)).astype(np.float32),
            "speed": np.array([1.0], dtype=np.float32)}


def rewritten_model(model_path: str | os.PathLike, names: list[str],
                    cache_dir: str | os.PathLike, feeds: list[dict] | None = None,
                    site_rtol: float = 1e-4) -> tuple[Path, dict]:
    """``model_path`` with our rewrites applied, checked against the original on
    ``feeds`` (first rewritten site within ``site_rtol``, same output length) and cached
    by model hash + rewrite list. Raises if the check fails: a rewrite that changes the
    computation is never used."""
    from labkit.engine import rewrites as rw

    names = list(names)
    cache_dir = Path(cache_dir)
    digest = model_sha256(model_path, memo_dir=cache_dir)
    import onnx

    key = hashlib.sha256(json.dumps({"model": digest, "rewrites": names,
                                     "onnx": onnx.__version__}).encode()).hexdigest()[:20]
    dest = cache_dir / f"{Path(model_path).stem}.rw-{key}.onnx"
    meta_path = dest.with_name(dest.name + ".json")
    if dest.exists() and meta_path.exists():
        return dest, json.loads(meta_path.read_text())
    feeds = feeds or [probe_feeds()]
    model = onnx.load(str(model_path))
    out, sites = rw.apply(model, names, feeds=feeds[0])
    flat = [t for v in sites.values() for t in v]
    result = rw.check(model, out, feeds, sites=flat, site_rtol=site_rtol)
    if not result.passed:
        raise rw.RewriteError(f"rewrites {names} on {model_path} failed their check: "
                              f"{result.reason}; not used")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".onnx", dir=cache_dir)
    os.close(fd)
    try:
        onnx.save(out, tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    meta = {"source": str(Path(model_path).resolve()), "rewrites": names,
            "sites": {k: len(v) for k, v in sites.items()}, "check": result.to_dict()}
    _atomic_text(meta_path, json.dumps(meta, indent=1))
    return dest, meta


def cache_entry(model_path: str | os.PathLike, session_cfg: SessionConfig,
                cache_dir: str | os.PathLike, ort_version: str | None = None) -> Path:
    """Where the cached graph for these settings lives (whether or not it exists yet)."""
    fmt = cache_format(session_cfg) or "onnx"
    cache_dir = Path(cache_dir)
    digest = model_sha256(model_path, memo_dir=cache_dir)
    key = cache_key(digest, session_cfg, fmt, ort_version=ort_version)
    return cache_dir / f"{Path(model_path).stem}.{key}.{fmt}"


def cached_model_for(model_path: str | os.PathLike, session_cfg: SessionConfig,
                     cache_dir: str | os.PathLike, ort_version: str | None = None) -> Path:
    """The model path to load for ``session_cfg``.

    With neither ``use_ort_format`` nor ``use_optimized_cache`` set: ``model_path`` itself.
    Otherwise the cached optimized graph (ORT format wins when both are set), built on
    first use; with ``session_cfg.rewrites``, of the rewritten (and checked) model. Load the result with :func:`load_options` (optimizer off for cached graphs).
    """
    fmt = cache_format(session_cfg)
    if fmt is None:
        return Path(model_path)
    if session_cfg.rewrites:
        model_path, _ = rewritten_model(model_path, session_cfg.rewrites, cache_dir)
    entry = cache_entry(model_path, session_cfg, cache_dir, ort_version=ort_version)
    if not entry.exists():
        save_optimized(model_path, entry, session_cfg, fmt=fmt)
        meta = {"source": str(Path(model_path).resolve()),
                "ort": ort_version or ort.__version__, "machine": platform.machine(),
                "format": fmt, **{n: getattr(session_cfg, n) for n in GRAPH_SETTINGS}}
        _atomic_text(entry.with_name(entry.name + ".json"), json.dumps(meta, indent=1))
    return entry


def is_cached_graph(path: str | os.PathLike, cache_dir: str | os.PathLike) -> bool:
    p = Path(path).resolve()
    return Path(cache_dir).resolve() in p.parents


def load_config(session_cfg: SessionConfig, cached: bool) -> SessionConfig:
    """The settings to load with: a cached graph is already optimized, so its session
    runs no optimizer (``disable``); everything else as configured."""
    if cached:
        return dataclasses.replace(session_cfg, graph_optimization_level="disable")
    return session_cfg


def make_cached_session(model_path: str | os.PathLike, session_cfg: SessionConfig,
                        cache_dir: str | os.PathLike) -> ort.InferenceSession:
    """An InferenceSession for ``session_cfg``, through the cache where it asks for one."""
    from labkit.engine.runtime import providers_for, session_options

    session_cfg.validate()
    path = cached_model_for(model_path, session_cfg, cache_dir)
    cached = path != Path(model_path)
    so = session_options(load_config(session_cfg, cached))
    if path.suffix == ".ort":
        so.add_session_config_entry("session.load_model_format", "ORT")
    return ort.InferenceSession(str(path), sess_options=so, providers=providers_for(session_cfg))


def clear_cache(cache_dir: str | os.PathLike) -> int:
    n = 0
    for p in Path(cache_dir).glob("*"):
        if p.is_file():
            p.unlink()
            n += 1
    return n


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# -- one cold start, in this (fresh) process --------------------------------------
def cold_start(model_path: str, session_cfg: SessionConfig, cache_dir: str,
               tokens: list[int], voices_path: str, voice: str = "af_heart") -> dict:
    """Session creation + first inference, timed inside a fresh process.

    ``first_audio_s`` = create + first run: the earliest the first audio can exist."""
    import numpy as np

    t0 = time.perf_counter()
    sess = make_cached_session(model_path, session_cfg, cache_dir)
    t1 = time.perf_counter()
    with np.load(voices_path) as data:
        style = np.asarray(data[voice], dtype=np.float32)[len(tokens) - 1].reshape(1, -1)
    feeds = {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": style,
             "speed": np.array([1.0], dtype=np.float32)}
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
