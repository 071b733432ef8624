"""The half-precision recipe: :func:`build_fp16`, onnxconverter-common's float16
conversion with the block lists that make it work on Kokoro (the reasons are in
labkit.optimize.quantize's docstring, which lists every recipe): the generator's harmonic
source, STFT and iSTFT stay fp32 (:func:`fp16_block_list`), Cast round trips between
blocked nodes are removed (:func:`drop_roundtrip_casts`), constants shared by fp32 and
fp16 consumers are copied (:func:`unshare_initializers`) and the graph's outputs stay
fp32 (:func:`restore_float_outputs`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import onnx

from labkit.optimize.families import family_of

#: op types kept fp32 everywhere (tried: blocking the decomposed norm statistics
#: ReduceMean/Pow/Sqrt/Div/Sub makes the converter miss casts at an LSTM Add, so empty)
FP16_STATS_OPS: tuple[str, ...] = ()


#: data-movement ops: kept fp32 when they sit on the source/STFT/iSTFT path
LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Slice", "Gather",
              "Concat", "Expand", "Pad", "Split", "Flatten")


def _fed_by_source(node, prod, depth: int = 8) -> bool:
    """Whether ``node``'s first input comes, through layout ops only, from the source path."""
    x = node.input[0] if node.input else ""
    for _ in range(depth):
        p = prod.get(x)
        if p is None:
            return False
        if family_of(p.name) == "gen_source_istft":
            return True
        if p.op_type not in LAYOUT_OPS or not p.input:
            return False
        x = p.input[0]
    return False


def fp16_block_list(model: onnx.ModelProto, keep_float: Iterable[str] = (),
                    scope: str = "all") -> list[str]:
    """Node names that must stay fp32: the source/STFT/iSTFT path, every Cast(to=float),
    the nodes of ``keep_float`` families and, with ``scope="decoder"``, every node outside
    ``/decoder/`` (blocking only the encoder's families leaves glue such as /encoder/Clip
    half-converted: the converter then fails to type it)."""
    keep = set(keep_float) | {"gen_source_istft"}
    outside = [n.name for n in model.graph.node
               if scope == "decoder" and not n.name.startswith("/decoder/")]
    block = []
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    prod = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if family_of(n.name) in keep or n.op_type in FP16_STATS_OPS:
            block.append(n.name)
        elif n.op_type in LAYOUT_OPS and _fed_by_source(n, prod):
            # layout nodes the optimizer renamed (e.g. "Transpose_token_36" inside
            # m_source, carrying the 65,440-rad phase): converted, they overflow fp16
            block.append(n.name)
        elif n.op_type == "Cast" and any(
                a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute):
            block.append(n.name)
            # the attention scale 1/sqrt(d) computed from a Cast: scalar, keep it fp32 too
            # (converted, its constant and the Cast's output disagree in type)
            frontier = [c for o in n.output for c in consumers.get(o, [])]
            while frontier:
                c = frontier.pop()
                if c.op_type in ("Sqrt", "Div", "Reciprocal") and c.name not in block:
                    block.append(c.name)
                    frontier += [d for o in c.output for d in consumers.get(o, [])]
    seen = set(block)
    return block + [n for n in outside if n not in seen]


def build_fp16(reference: Path, out: Path, keep_float: Iterable[str] = (),
               scope: str = "all") -> Path:
    from onnxconverter_common import float16

    model = onnx.load(str(reference))
    block = fp16_block_list(model, keep_float, scope)
    unshare_initializers(model, set(block))
    import warnings

    with warnings.catch_warnings():  # one "truncated to 1e-07" warning per tiny weight
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, node_block_list=block,
            max_finite_val=65504.0, min_positive_val=1e-7, disable_shape_infer=False)
    drop_roundtrip_casts(converted)
    restore_float_outputs(converted, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(out))
    return out


def unshare_initializers(model: onnx.ModelProto, block: set[str]) -> int:
    """Give blocked (fp32) nodes their own copy of every float initializer they share with
    converted nodes. The fp32 rebuild de-duplicated constants across the graph (e.g. one
    ``1.0`` for the encoder and the generator's AdaIN); the converter turns a shared one to
    fp16 for some consumers and not others, and ORT then rejects the mixed-type node."""
    g = model.graph
    inits = {i.name: i for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT}
    users: dict[str, list] = {}
    for n in g.node:
        for k, x in enumerate(n.input):
            if x in inits:
                users.setdefault(x, []).append((n, k))
    copied = 0
    for name, uses in users.items():
        kept = [(n, k) for n, k in uses if n.name in block]
        if not kept or len(kept) == len(uses):
            continue
        twin = onnx.TensorProto()
        twin.CopyFrom(inits[name])
        twin.name = f"{name}__fp32"
        g.initializer.append(twin)
        for n, k in kept:
            n.input[k] = twin.name
        copied += 1
    return copied


def restore_float_outputs(converted: onnx.ModelProto, original: onnx.ModelProto) -> list[str]:
    """Give every graph output the converter turned fp16 its original fp32 type back:
    ``keep_io_types`` leaves an output fp16 when a blocked (fp32) node feeds it through a
    ``Cast(to=float16)`` (Kokoro's ``audio``, fed by the iSTFT's last Gather), so the audio
    would be rounded to fp16 on its way out. That Cast becomes ``Cast(to=float)``, or a
    Cast to float is appended. Returns the outputs changed."""
    was_float = {o.name for o in original.graph.output
                 if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    g = converted.graph
    prod = {o: n for n in g.node for o in n.output}
    changed = []
    for out in g.output:
        if out.name not in was_float or out.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        node = prod.get(out.name)
        consumed = any(out.name in n.input for n in g.node)  # fp16 nodes may read it too
        if node is not None and node.op_type == "Cast" and not consumed:
            for a in node.attribute:
                if a.name == "to":
                    a.i = onnx.TensorProto.FLOAT
        else:  # rename the fp16 value and cast it under the output's name
            inner = f"{out.name}_fp16"
            for n in g.node:
                n.output[:] = [inner if o == out.name else o for o in n.output]
                n.input[:] = [inner if i == out.name else i for i in n.input]
            g.node.append(onnx.helper.make_node("Cast", [inner], [out.name],
                                                to=onnx.TensorProto.FLOAT,
                                                name=f"{out.name}_to_float"))
        out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        changed.append(out.name)
    return changed


def drop_roundtrip_casts(model: onnx.ModelProto) -> int:
    """Remove the fp32 -> fp16 -> fp32 round trips the converter leaves *between two
    blocked nodes*: it casts every blocked node's float output to fp16 and back to fp32
    for the next blocked node, so the "fp32" STFT path still rounds through fp16 (tiny
    real/imag parts become 0, atan2's Div gives 0/0 = NaN, measured on dev-01, then named ho-01).
    Each ``Cast(to=float)`` fed by a ``Cast(to=float16)`` is fed the fp16 Cast's fp32
    input instead (a float->float Cast is an identity); fp16 Casts left without a
    consumer are removed. Returns the number of round trips removed."""
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}

    def cast_to(n) -> int | None:
        if n.op_type != "Cast":
            return None
        return next((a.i for a in n.attribute if a.name == "to"), None)

    removed = 0
    for n in g.node:
        if cast_to(n) != onnx.TensorProto.FLOAT:
            continue
        src = prod.get(n.input[0])
        if src is not None and cast_to(src) == onnx.TensorProto.FLOAT16:
            n.input[0] = src.input[0]
            removed += 1
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    dead = [n for n in g.node if cast_to(n) == onnx.TensorProto.FLOAT16
            and not any(o in used for o in n.output)]
    for n in dead:
        g.node.remove(n)
    return removed
