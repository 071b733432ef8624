"""The split's files and their check: Kokoro cut into part A (text encoder, duration
predictor, alignment) and part B (the vocoder) by labkit.optimize.split_cut, part B made to
run on pieces by labkit.optimize.part_b (bucketed to fixed frame lengths, windowed with the
harmonic source's phase continued), all written once per model under a cache folder
(:func:`split_files`, :func:`ensure_for`). Native CoreML ports of Kokoro cut it this way:
A stays off the Neural Engine, B runs there with fixed-length buckets.

:func:`check_split` measures the standard LSD of split and bucketed audio to the whole
graph; :func:`static_bucket_models` fixes every input shape of the bucketed part B for
CoreML's ``RequireStaticInputShapes``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from labkit import files, progress
from labkit.config import SessionConfig
from labkit.engine import assets, rewrites, split_runtime
from labkit.engine.sessions import n_tokens, new_session, probe_config, probe_feeds
from labkit.engine.split_runtime import (FRAMES, SplitMissing, SplitParts, bucket_for,
                                         pad_frames, split_paths)
from labkit.engine.words import timed_cache_dir
from labkit.optimize import durations
from labkit.optimize.part_b import bucket_model, phase_models
from labkit.optimize.split_cut import Parts, SplitError, split
from labkit.quality import lsd_db


# -- files, cached by input hash ---------------------------------------------------------
def samples_per_frame(parts: Parts, feeds_list: Sequence[dict[str, np.ndarray]],
                      shapes: dict[str, list[int]] | None = None) -> int:
    """Audio samples part B makes per frame, measured (never assumed): the same whole
    number on every input, or :class:`SplitError`. ``shapes`` gets each boundary tensor's
    shape with its last axis as a multiple of the frames (asr [1, 512, 1], F0 [1, 2])."""
    sa, sb = new_session(parts.a, probe_config()), new_session(parts.b, probe_config())
    seen = set()
    for feeds in feeds_list:
        bound = dict(zip(parts.boundary, sa.run(parts.boundary, feeds)))
        frames0 = bound[parts.boundary[0]].shape[-1]
        if shapes is not None:
            for name, v in bound.items():
                shapes[name] = list(v.shape[:-1]) + [v.shape[-1] // frames0]
        b_feeds = {n: bound[n] if n in bound else feeds[n] for n in parts.b_inputs}
        audio = sb.run(None, b_feeds)[0]
        frames = bound[parts.boundary[0]].shape[-1]
        if audio.size % frames:
            raise SplitError(f"{audio.size} samples for {frames} frames: not a whole number "
                             "per frame; part B cannot be trimmed exactly")
        seen.add(audio.size // frames)
    if len(seen) != 1:
        raise SplitError(f"samples per frame differ between inputs: {sorted(seen)}")
    return seen.pop()


def split_files(model_path: str | os.PathLike, cache_dir: str | os.PathLike,
                b_rewrites: Sequence[str] = ()) -> SplitParts:
    """Part A, part B and the bucketed part B of ``model_path``, written once under
    ``cache_dir`` (:func:`labkit.engine.split_runtime.split_paths`: keyed by the model's
    sha256, the edit version and ``b_rewrites``, graph rewrites for part B from
    :mod:`labkit.engine.rewrites` such as ``reflect_pad``, checked against the unrewritten
    part B before use)."""
    paths = split_paths(model_path, cache_dir, b_rewrites)
    try:
        return SplitParts.locate(model_path, cache_dir, b_rewrites)
    except SplitMissing:
        pass
    with progress.task(f"split build of {Path(model_path).name}", total=4) as bar:
        return _build_split(model_path, cache_dir, b_rewrites, paths, bar)


def remove_split(model_path: str | os.PathLike, cache_dir: str | os.PathLike,
                 b_rewrites: Sequence[str] = ()) -> int:
    """Remove the parts :func:`split_files` wrote for ``model_path`` (a candidate measured
    and not kept: issue #31); returns the bytes freed. A later :func:`split_files` builds
    them again."""
    freed = 0
    for path in split_paths(model_path, cache_dir, b_rewrites).values():
        if path.exists():
            freed += path.stat().st_size
            path.unlink()
    return freed


def _build_split(model_path, cache_dir, b_rewrites: Sequence[str], paths: dict[str, Path],
                 bar: progress.Task) -> SplitParts:
    model = onnx.load(str(model_path))
    parts = split(model)
    bar.advance("parts A and B cut")
    feeds = [probe_feeds(24), probe_feeds(60, seed=1)]
    shapes: dict[str, list[int]] = {}
    spf = samples_per_frame(parts, feeds, shapes)
    bar.advance("samples per frame probed")
    b = parts.b
    checks: dict[str, Any] = {}
    if b_rewrites:
        b, found = rewrites.apply(b, list(b_rewrites))
        sites = [t for v in found.values() for t in v]
        sa = new_session(parts.a, probe_config())
        b_feeds = []
        for f in feeds:
            bound = dict(zip(parts.boundary, sa.run(parts.boundary, f)))
            b_feeds.append({n: bound[n] if n in bound else f[n] for n in parts.b_inputs})
        res = rewrites.check(parts.b, b, b_feeds, sites=sites)
        if not res.passed:
            raise rewrites.RewriteError(f"part B rewrites {list(b_rewrites)} failed their check: "
                                        f"{res.reason}; not used")
        checks = {"sites": {k: len(v) for k, v in found.items()}, "check": res.to_dict()}
    bucketed, masked = bucket_model(b, parts.boundary[0])
    phased = phase_models(b, parts.boundary)
    b_phase, phase, phase_meta = phased or (None, None, {"phase_of": None})
    bar.advance("bucketed and phase models made")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    for k, m in (("a", parts.a), ("b", b), ("b_bucketed", bucketed), ("b_phase", b_phase),
                 ("phase", phase)):
        if m is None:
            continue
        with files.atomic_path(paths[k]) as tmp:
            onnx.save(m, str(tmp))
    meta = {"source": str(Path(model_path).resolve()), "boundary": parts.boundary,
            "b_inputs": parts.b_inputs, "a_outputs": [o.name for o in parts.a.graph.output],
            "samples_per_frame": spf, "boundary_shapes": shapes,
            "nodes": {"whole": len(model.graph.node), "a": len(parts.a.graph.node),
                      "b": len(b.graph.node), "b_bucketed": len(bucketed.graph.node)},
            "b_rewrites": checks, **masked, **phase_meta}
    files.write_json(paths["meta"], meta)
    bar.advance("saved")
    return SplitParts.locate(model_path, cache_dir, b_rewrites)


def ensure_for(cfg: Any) -> SplitParts | None:
    """The split parts a LabConfig runs on (``split.enabled`` or ``chunking.prosody:
    sentence``, e.g. from best.json), built once into its split cache when missing (a
    machine with the journal's best.json and a fresh cache); None when it runs whole.
    The model is split from its copy with the durations output, built here when missing
    (labkit.optimize.durations.ensure): without it part A gives no frame counts, so no
    piece can be cut from its sentence's part A and every window falls back to a whole
    run of its own (a fresh ``artifacts_dir`` once measured that path as sentence
    prosody: first audio ~0.2 s later)."""
    if not split_runtime.uses_split(cfg):
        return None
    model = assets.model_path(cfg, cfg.variant)
    try:
        model = durations.ensure(model, timed_cache_dir(cfg))
    except durations.DurationsError as exc:  # a graph whose durations are not found: split as it is
        progress.say(f"{model.name}: no durations output can be added ({exc}); "
                     "sentence prosody will synthesize each piece on its own")
    return split_files(model, split_runtime.split_dir(cfg), cfg.split.b_rewrites)


# -- the check: split and bucketed audio against the whole graph --------------------------
def check_split(whole: Any, parts: SplitParts, feeds_list: Sequence[dict[str, np.ndarray]],
                buckets: Sequence[int], session_cfg: SessionConfig | None = None,
                every_fitting: bool = False) -> dict[str, Any]:
    """Standard LSD (dB) of the split audio (A then B at the exact length) and of the
    bucketed audio at the bucket the engine would use (``every_fitting``: at every bucket
    that fits), to the whole graph's audio, per
    input (its token count and frames); ``max_lsd_db`` over all of them and
    ``max_lsd_db_by_bucket``. Lengths must match exactly (a trimmed bucket that does not
    is a failed check, reported as such)."""
    s = session_cfg or SessionConfig()
    whole_s = new_session(whole, s)
    sa, sb = new_session(parts.a, s), new_session(parts.b, s)
    sbb = new_session(parts.b_bucketed, s)
    boundary, b_inputs = parts.meta["boundary"], parts.meta["b_inputs"]
    spf = int(parts.meta["samples_per_frame"])
    rows: list[dict[str, Any]] = []
    by_bucket: dict[str, float] = {}
    failures: list[str] = []
    for feeds in feeds_list:
        ref = np.asarray(whole_s.run(None, feeds)[0], np.float32).ravel()
        bound = [np.asarray(v) for v in sa.run(boundary, feeds)]
        frames = int(bound[0].shape[-1])
        extra = {n: feeds[n] for n in b_inputs if n not in boundary}
        split_audio = np.asarray(sb.run(None, {**dict(zip(boundary, bound)), **extra})[0],
                                 np.float32).ravel()
        row: dict[str, Any] = {"tokens": n_tokens(feeds), "frames": frames,
                               "split_lsd_db": _lsd(ref, split_audio, failures, "split")}
        fits = sorted({bucket_for(frames, buckets)}
                      | ({b for b in buckets if b >= frames} if every_fitting else set()))
        row["buckets"] = {}
        for fb in fits:
            padded = pad_frames(bound, frames, fb)
            out = np.asarray(sbb.run(None, {**dict(zip(boundary, padded)), **extra,
                                            FRAMES: np.array([frames], np.float32)})[0],
                             np.float32).ravel()
            if out.size != fb * spf:
                failures.append(f"bucket {fb}: {out.size} samples, expected {fb * spf}")
                continue
            d = _lsd(ref, out[: frames * spf], failures, f"bucket {fb}")
            row["buckets"][str(fb)] = d
            if d is not None:
                by_bucket[str(fb)] = max(by_bucket.get(str(fb), 0.0), d)
        rows.append(row)
    all_d = [r["split_lsd_db"] for r in rows if r["split_lsd_db"] is not None] + list(by_bucket.values())
    return {"by_input": rows, "max_split_lsd_db": max((r["split_lsd_db"] or 0.0) for r in rows),
            "max_lsd_db_by_bucket": by_bucket, "max_lsd_db": max(all_d) if all_d else None,
            "failures": failures}


def _lsd(ref: np.ndarray, out: np.ndarray, failures: list[str], what: str) -> float | None:
    if ref.size != out.size:
        failures.append(f"{what}: {out.size} samples, the whole graph gave {ref.size}")
        return None
    return round(float(lsd_db(ref, out)), 4)


def static_bucket_models(parts: SplitParts, buckets: Sequence[int], out_dir: str | os.PathLike,
                         budget: Any = None) -> dict[int, Path]:
    """For each bucket, a copy of the bucketed part B with every input shape fixed (frames
    axis = the bucket), for CoreML's ``RequireStaticInputShapes``; with ``budget`` (a
    :class:`labkit.optimize.coreml.StaticBudget`) only within it. Written once per bucket."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes

    out: dict[int, Path] = {}
    model = None
    for fb in sorted(int(b) for b in buckets):
        dest = Path(out_dir) / f"{parts.b_bucketed.stem}.static{fb}.onnx"
        out[fb] = dest
        if dest.exists():
            if budget is not None and dest not in budget.written:
                budget.track(dest, 0)
            continue
        reserved = parts.b_bucketed.stat().st_size
        if budget is not None:
            budget.reserve(reserved, dest.name)
        model = model or onnx.load(str(parts.b_bucketed))
        m = copy.deepcopy(model)
        for inp in m.graph.input:
            tt = inp.type.tensor_type
            tt.ClearField("shape")  # the cut left boundary inputs without a shape
            for d in static_shape(inp.name, parts.meta, fb):
                tt.shape.dim.add().dim_value = d
        fix_output_shapes(m)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_path(dest) as tmp:
            onnx.save(m, str(tmp))
        if budget is not None:
            budget.track(dest, reserved)
    return out


def static_shape(name: str, meta: dict[str, Any], bucket: int) -> list[int]:
    """The fixed shape of part B's input ``name`` at ``bucket`` frames, from the shapes the
    split recorded (``boundary_shapes``: per boundary tensor, its dims with the frame axis
    as a multiple of frames)."""
    if name == FRAMES:
        return [1]
    if name == "style":
        return [1, 256]
    spec = meta.get("boundary_shapes", {}).get(name)
    if spec is None:
        raise SplitError(f"static part B: no recorded shape for input {name!r}")
    return [int(d) for d in spec[:-1]] + [int(spec[-1]) * int(bucket)]
