"""The cache of optimized and ORT-format graphs the Engine loads through.

ONNX Runtime optimizes a graph every time a session is created (constant folding,
fusions, and at level ``all`` a CPU-specific NCHWc layout). That work can be done once
and saved: as an **optimized .onnx** (``SessionOptions.optimized_model_filepath``) or as
an **ORT-format** model (a flatbuffer, ``session.save_model_format=ORT``). A saved graph
is only valid for the model it came from, the ONNX Runtime that wrote it and the
settings it was optimized with (level, providers, CPU architecture), so the cache key is
exactly that: ``sha256(model) + ORT version + settings``. A cached graph is loaded with
the session's own optimizer switched off (the work is already done).

Entry points: :func:`make_session` (what the Engine calls), :func:`cached_model_for`
(the path to load for a SessionConfig), :func:`save_optimized`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from pathlib import Path

import onnx
import onnxruntime as ort

from labkit import files
from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.engine import assets, rewrites
from labkit.engine.sessions import new_session, probe_feeds

#: settings that change the saved graph (threads, arena etc. do not)
GRAPH_SETTINGS = ("graph_optimization_level", "providers")
FORMATS = ("onnx", "ort")
_HASH_MEMO = "sha256-memo.json"


def ort_cache_dir(cfg: LabConfig) -> Path:
    """Where optimized / ORT-format graphs are cached."""
    return cfg.resolve(cfg.artifacts_dir) / "cache" / "ort"


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
        files.write_json(memo_path, memo, sort_keys=True)
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


# -- saving an optimized graph ------------------------------------------------------
def _save_to(so: ort.SessionOptions, dest: Path, fmt: str) -> None:
    so.optimized_model_filepath = str(dest)
    if fmt == "ort":
        so.add_session_config_entry("session.save_model_format", "ORT")
    else:
        # keep big initializers inline: one self-contained file per cache entry
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", str(1 << 62))


def save_optimized(model_path: str | os.PathLike, dest: str | os.PathLike,
                   session_cfg: SessionConfig, fmt: str = "onnx") -> Path:
    """Optimize ``model_path`` at ``session_cfg.graph_optimization_level`` for its providers
    and save the result to ``dest`` (atomically) as .onnx or ORT format."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: allowed are {', '.join(FORMATS)}")
    session_cfg.validate()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(dest, suffix=".ort" if fmt == "ort" else ".onnx") as tmp:
        new_session(model_path, session_cfg, configure=lambda so: _save_to(so, tmp, fmt))
        if tmp.stat().st_size == 0:
            raise RuntimeError(f"ONNX Runtime wrote nothing to {tmp}")
    return dest


# -- the cache --------------------------------------------------------------------
def cache_format(session_cfg: SessionConfig) -> str | None:
    """"ort", "onnx", or None when the config asks for no cached graph (rewrites alone
    imply an optimized .onnx cache: a rewritten graph lives in the cache)."""
    if session_cfg.use_ort_format:
        return "ort"
    if session_cfg.use_optimized_cache or session_cfg.rewrites:
        return "onnx"
    return None


def rewritten_model(model_path: str | os.PathLike, names: list[str],
                    cache_dir: str | os.PathLike, feeds: list[dict] | None = None,
                    site_rtol: float = 1e-4) -> tuple[Path, dict]:
    """``model_path`` with our rewrites applied, checked against the original on
    ``feeds`` (first rewritten site within ``site_rtol``, same output length) and cached
    by model hash + rewrite list. Raises if the check fails: a rewrite that changes the
    computation is never used."""
    rw = rewrites
    names = list(names)
    cache_dir = Path(cache_dir)
    digest = model_sha256(model_path, memo_dir=cache_dir)
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
    with files.atomic_path(dest) as tmp:
        onnx.save(out, str(tmp))
    meta = {"source": str(Path(model_path).resolve()), "rewrites": names,
            "sites": {k: len(v) for k, v in sites.items()}, "check": result.to_dict()}
    files.write_json(meta_path, meta)
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
        files.write_json(entry.with_name(entry.name + ".json"), meta)
    return entry


def onnx_graph_of(path: str | os.PathLike) -> Path:
    """The ONNX graph a model file stands for: ``path`` itself, or for a cached ORT-format
    graph (a flatbuffer onnx cannot read) the ONNX graph it was optimized from (its
    record's ``source``: the rewritten model where there were rewrites)."""
    p = Path(path)
    if p.suffix != ".ort":
        return p
    meta = p.with_name(p.name + ".json")
    if not meta.exists():
        raise FileNotFoundError(f"{p} is an ORT-format graph without its record {meta.name}: "
                                "the ONNX graph it came from is unknown")
    return Path(json.loads(meta.read_text())["source"])


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
    session_cfg.validate()
    path = cached_model_for(model_path, session_cfg, cache_dir)
    cached = path != Path(model_path)

    def load_format(so: ort.SessionOptions) -> None:
        if path.suffix == ".ort":
            so.add_session_config_entry("session.load_model_format", "ORT")

    return new_session(path, load_config(session_cfg, cached), configure=load_format)


def clear_cache(cache_dir: str | os.PathLike) -> int:
    n = 0
    for p in Path(cache_dir).glob("*"):
        if p.is_file():
            p.unlink()
            n += 1
    return n




def make_session(model: str | os.PathLike, s: SessionConfig,
                 cache_dir: str | os.PathLike | None = None) -> ort.InferenceSession:
    """A session for ``model`` (checked to exist); with ``use_optimized_cache`` /
    ``use_ort_format`` / ``rewrites`` set and a ``cache_dir``, through the cache."""
    path = assets.require(Path(model), "model file")
    if cache_dir is not None and cache_format(s) is not None:
        return make_cached_session(path, s, cache_dir)
    return new_session(path, s)
