"""Kokoro's module families: its blocks named by node-name prefix (the exporter's module
paths survive in the node names), coarse (:data:`FAMILIES`) and fine
(:data:`FINE_FAMILIES`, for per-block sensitivity), the generator's convolutions one by
one (:data:`LAYERS`, for per-layer sensitivity), and the node -> family map every
recipe of labkit.optimize.quantize and labkit.optimize.fp16 reads (quantize these, keep
those float) and the ORT profile groups its kernel time by (labkit.measure.profile).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import onnx

#: module family -> node-name prefixes (the exporter's module paths survive in the names).
FAMILIES: dict[str, tuple[str, ...]] = {
    "bert": ("/encoder/bert/", "/encoder/bert_encoder/", "FastGelu", "SkipLayerNormalization",
             "Gather_token_", "Transpose_token_"),
    "text_encoder": ("/encoder/text_encoder/",),
    "prosody_lstm": ("/encoder/predictor/", "/encoder/shared/"),
    "prosody_f0n": ("/encoder/F0.", "/encoder/N.", "/encoder/F0_proj", "/encoder/N_proj"),
    "decoder": ("/decoder/decoder/encode/", "/decoder/decoder/decode.",
                "/decoder/decoder/asr_res", "/decoder/decoder/F0_conv", "/decoder/decoder/N_conv"),
    "gen_resblocks": ("/decoder/decoder/generator/resblocks.",
                      "/decoder/decoder/generator/noise_res."),
    "gen_upsample": ("/decoder/decoder/generator/ups.", "/decoder/decoder/generator/noise_convs.",
                     "/decoder/decoder/generator/conv_post"),
}


_GEN = "/decoder/decoder/generator/"


_DEC = "/decoder/decoder/"


#: finer families for per-block sensitivity (each inside one family above): the six
#: generator resblocks (3 kernel sizes x 2 upsampling stages), the two noise resblocks,
#: the upsamplers, the decoder's blocks.
FINE_FAMILIES: dict[str, tuple[str, ...]] = {
    **{f"gen_resblocks.{i}": (f"{_GEN}resblocks.{i}/",) for i in range(6)},
    **{f"gen_noise_res.{i}": (f"{_GEN}noise_res.{i}/",) for i in range(2)},
    "gen_ups": (f"{_GEN}ups.",),
    "gen_noise_convs": (f"{_GEN}noise_convs.",),
    "gen_conv_post": (f"{_GEN}conv_post",),
    "decoder_encode": (f"{_DEC}encode/",),
    **{f"decoder_decode.{i}": (f"{_DEC}decode.{i}/",) for i in range(4)},
    "decoder_asr_f0n": (f"{_DEC}asr_res", f"{_DEC}F0_conv", f"{_DEC}N_conv"),
}


#: the generator's resblocks at layer grain (issue #33): each residual unit's two
#: convolutions (``convs1.k``, dilated, and ``convs2.k``), three units per block --
#: ``gen_resblocks.3.convs2.2`` is resblock 3's last convolution. One Conv node each.
_BLOCKS = {**{f"gen_resblocks.{i}": f"{_GEN}resblocks.{i}/" for i in range(6)},
           **{f"gen_noise_res.{i}": f"{_GEN}noise_res.{i}/" for i in range(2)}}
LAYERS: dict[str, tuple[str, ...]] = {
    f"{block}.convs{j}.{k}": (f"{prefix}convs{j}.{k}/",)
    for block, prefix in _BLOCKS.items() for k in range(3) for j in (1, 2)}


#: never quantized, and kept fp32 in fp16 variants: harmonic source, STFT, iSTFT.
SOURCE_PREFIX = "/decoder/decoder/generator/"


#: families upstream of the duration predictor's Round: changing them can change lengths
DURATION_FAMILIES = ("bert", "text_encoder", "prosody_lstm")


class QuantizeError(ValueError):
    """A variant that cannot be built as asked (an unknown preset, recipe, family or type);
    the message says which values are allowed."""


def family_of(node_name: str) -> str:
    """The module family a node belongs to ("gen_source_istft" for the generator's
    source/STFT/iSTFT path, "other" for glue)."""
    for fam, prefixes in FAMILIES.items():
        if node_name.startswith(prefixes):
            return fam
    if node_name.startswith(SOURCE_PREFIX):
        return "gen_source_istft"
    return "other"


def _named_in(table: dict[str, tuple[str, ...]], node_name: str) -> str | None:
    """The first name in ``table`` one of whose prefixes starts ``node_name``."""
    return next((name for name, prefixes in table.items() if node_name.startswith(prefixes)), None)


def fine_family_of(node_name: str) -> str:
    """The finer family (:data:`FINE_FAMILIES`) a node belongs to, else its family
    (:func:`family_of`): what the per-block sensitivity sweep weighs time by."""
    return _named_in(FINE_FAMILIES, node_name) or family_of(node_name)


def layer_of(node_name: str) -> str:
    """The layer (:data:`LAYERS`) a node belongs to, else its finer family
    (:func:`fine_family_of`): what the per-layer sensitivity sweep weighs time by."""
    return _named_in(LAYERS, node_name) or fine_family_of(node_name)


def layers_in(families: Iterable[str]) -> list[str]:
    """The layers (:data:`LAYERS`) inside ``families`` (coarse, fine or layers
    themselves), in :data:`LAYERS`' order, each once: ``["gen_resblocks.3"]`` gives its six."""
    prefixes = prefixes_of(list(families))
    return [layer for layer, (prefix,) in LAYERS.items() if prefix.startswith(prefixes)]


def nodes_by_family(model: onnx.ModelProto | str | Path) -> dict[str, list[str]]:
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    out: dict[str, list[str]] = {}
    for n in model.graph.node:
        out.setdefault(family_of(n.name), []).append(n.name)
    return out


def check_families(families: Iterable[str] | None) -> list[str] | None:
    if families is None:
        return None
    families = list(families)
    bad = [f for f in families if f not in FAMILIES and f not in FINE_FAMILIES and f not in LAYERS]
    if bad:
        raise QuantizeError(f"unknown module family {bad}; quantizable families are "
                            f"{list(FAMILIES)}, the finer {list(FINE_FAMILIES)} and the "
                            "generator's layers (LAYERS: gen_resblocks.0.convs1.0 ... "
                            "gen_noise_res.1.convs2.2; the source/STFT/iSTFT path always stays float)")
    return families


def prefixes_of(families: Iterable[str]) -> tuple[str, ...]:
    """Node-name prefixes of coarse (FAMILIES), fine (FINE_FAMILIES) families or layers
    (LAYERS)."""
    out: list[str] = []
    for f in check_families(families) or []:
        out += FAMILIES.get(f) or FINE_FAMILIES.get(f) or LAYERS[f]
    return tuple(out)
