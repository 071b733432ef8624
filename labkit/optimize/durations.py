"""Word timings from the model itself: the duration predictor's output as a graph output.

Kokoro predicts how many frames each token lasts, ``round(sum(sigmoid(duration_proj)) /
speed)`` clipped to at least 1, and expands the encoder's output by those counts (a
CumSum builds the alignment). The per-token counts never leave the graph; this module
adds them as a second output, ``durations`` (int64 [n + 2]: the leading pad, one count
per token, the trailing pad), without changing anything else.

The tensor is found by structure, not by name: the input of a CumSum that is reached
from a Round through Clip / Cast / Gather (the rounding of the predicted durations).
The edit is checked before it is used (:func:`check`): the ``audio`` output must stay
bit-identical to the original's and ``sum(durations) * SAMPLES_PER_FRAME`` must equal the
audio's length (Kokoro's frames are 600 samples at 24 kHz; the speed is already in the
counts). :func:`ensure` builds the edited model once into a cache folder and checks it.

The original model stays usable: labkit.engine.runtime.Engine reads ``durations`` only
when the session has that output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from labkit.engine.sessions import new_session, probe_config, probe_feeds
from labkit.engine.words import timed_model_path
from labkit.kokoro import SAMPLES_PER_FRAME

#: the added output's name
OUTPUT = "durations"
#: audio samples per predicted frame (24 kHz)
#: ops allowed between the Round and the CumSum
_PASS_THROUGH = ("Clip", "Cast", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Identity")


class DurationsError(RuntimeError):
    """The graph has no recognisable duration tensor, or the edit changed the audio."""


def find_durations_tensor(model: onnx.ModelProto) -> str:
    """The name of the per-token duration tensor: the CumSum input reached from a Round."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for node in model.graph.node:
        if node.op_type != "CumSum":
            continue
        name, hops = node.input[0], 0
        while name in producer and hops < 8:
            p = producer[name]
            if p.op_type == "Round":
                found.append(node.input[0])
                break
            if p.op_type not in _PASS_THROUGH:
                break
            name, hops = p.input[0], hops + 1
    if len(found) != 1:
        raise DurationsError(
            f"expected one CumSum fed by the rounded durations (Round -> Clip -> Cast -> "
            f"CumSum), found {len(found)}: {found}; is this a Kokoro graph?")
    return found[0]


def has_durations(model: onnx.ModelProto) -> bool:
    return any(o.name == OUTPUT for o in model.graph.output)


def add_durations_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with the ``durations`` output added (unchanged when present)."""
    if has_durations(model):
        return model
    source = find_durations_tensor(model)
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    edited.graph.node.append(helper.make_node("Identity", [source], [OUTPUT],
                                              name="labkit_durations_output"))
    edited.graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.INT64,
                                                             ["n_tokens_plus_2"]))
    return edited


def check(original: str | Path, edited: str | Path, feeds: list[dict] | None = None) -> dict:
    """Run both graphs: ``audio`` bit-identical and sum(durations) x 600 == len(audio) on
    every feed, else DurationsError. Returns what was checked."""
    a = new_session(original, probe_config())
    b = new_session(edited, probe_config())
    names = [o.name for o in b.get_outputs()]
    if OUTPUT not in names:
        raise DurationsError(f"{edited}: no {OUTPUT!r} output (outputs: {names})")
    rows = []
    for f in feeds or [probe_feeds(40), {**probe_feeds(12, seed=1), "speed": np.array([1.3], np.float32)}]:
        ya = np.asarray(a.run(["audio"], f)[0]).ravel()
        out = dict(zip(names, b.run(None, f)))
        yb, d = np.asarray(out["audio"]).ravel(), np.asarray(out[OUTPUT]).ravel()
        n = int(f["tokens"].shape[1])
        if not np.array_equal(ya, yb):
            raise DurationsError(f"the edit changed the audio (max |diff| "
                                 f"{float(np.max(np.abs(ya - yb))) if ya.size == yb.size else 'length'})")
        if d.size != n:
            raise DurationsError(f"{d.size} durations for {n} input tokens")
        if int(d.sum()) * SAMPLES_PER_FRAME != yb.size:
            raise DurationsError(f"sum(durations) x {SAMPLES_PER_FRAME} = "
                                 f"{int(d.sum()) * SAMPLES_PER_FRAME} != {yb.size} audio samples")
        rows.append({"tokens": n, "frames": int(d.sum()), "samples": int(yb.size)})
    return {"audio_identical": True, "length_matches": True, "runs": rows}


def ensure(model: str | Path, cache_dir: str | Path) -> Path:
    """The model with the ``durations`` output: ``model`` itself when it has it, else an
    edited copy built once into ``cache_dir`` (labkit.engine.words.timed_model_path: keyed
    by the source's path, size and mtime) and checked against the original before it is kept."""
    src = Path(model)
    if not src.exists():
        raise FileNotFoundError(f"model file {src} does not exist")
    out = timed_model_path(src, cache_dir)
    if out.exists():  # only ever written for a source without the output, after its check
        return out
    m = onnx.load(str(src))
    if has_durations(m):
        return src
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    onnx.save(add_durations_output(m), str(tmp))
    try:
        check(src, tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return out


def discard(model: str | Path, cache_dir: str | Path) -> int:
    """Remove ``model``'s copy with the durations output from ``cache_dir`` (built by
    :func:`ensure`, which builds it again when asked); the bytes freed (0: there was none).
    Keyed by the source's path and mtime, a run's own variants' copies are never hit again:
    kept, each run of stage 03 would add its variants' copies to the cache (issue #31)."""
    out = timed_model_path(Path(model), cache_dir)
    if not out.exists():
        return 0
    size = out.stat().st_size
    out.unlink()
    return size