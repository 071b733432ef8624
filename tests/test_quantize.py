"""Quantization recipes: each builds a model that loads and speaks held-out sentences
within its recorded bound (no NaN, no silence, no length change). Speed is not tested
here (it belongs in notebooks/03_quantization.ipynb)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from labkit import assets, corpora, qbench, quality, quantize
from labkit.quantize import QuantizeError, VariantSpec

#: LSD (dB) to the reference on the short held-out sentences, measured with these tests'
#: settings (1 calibration utterance) and given headroom; a recipe that gets worse fails.
BOUNDS_DB = {"fp16": 4.0, "dynamic-decoder": 5.0, "static-decoder": 4.0}
HELD = ["ho-01", "ho-03"]


def test_spec_presets_and_errors():
    assert VariantSpec.parse("qdq-entropy").calibration == "entropy"
    assert VariantSpec.parse("dyn-pc").per_channel
    with pytest.raises(QuantizeError, match="unknown preset"):
        VariantSpec.parse("int4")
    with pytest.raises(QuantizeError, match="unknown module family"):
        VariantSpec.parse({"name": "x", "recipe": "static", "families": ["istft"]})
    with pytest.raises(QuantizeError, match="calibration"):
        VariantSpec.parse({"name": "x", "recipe": "static", "calibration": "kl"})


def test_family_of():
    assert quantize.family_of("/decoder/decoder/generator/resblocks.3/convs1.0/Conv") == "gen_resblocks"
    assert quantize.family_of("/decoder/decoder/generator/m_source/l_linear/MatMul") == "gen_source_istft"
    assert quantize.family_of("/encoder/bert/encoder/albert_layer_groups.0/x") == "bert"


def test_pareto_and_selection_never_pick_failed():
    pts = {"a": (2.0, 3.0), "b": (1.2, 0.8), "c": (1.0, 1.0), "d": (0.9, 0.5)}
    assert qbench.pareto_front(pts) == ["a", "b", "d"]
    rows = {"int8": {"ok": True, "speedup": 0.8, "lsd_db": 3.0, "pesq_wb": 3.0, "dnsmos_ovrl": 3.0},
            "bad": {"ok": False, "speedup": 3.0, "lsd_db": 0.1},
            "good": {"ok": True, "speedup": 1.6, "lsd_db": 1.5, "pesq_wb": 3.5, "dnsmos_ovrl": 3.1},
            "close": {"ok": True, "speedup": 1.1, "lsd_db": 0.9}}
    sel = qbench.select(rows, "int8")
    assert sel["failed"] == ["bad"]
    assert sel["fast"]["variant"] == "good" and sel["fast"]["meets_speed_target"]
    assert sel["fast"]["no_worse_than_baseline"] is True
    assert sel["near_lossless"]["variant"] == "close"
    plan = qbench.choose_families({"x": {"ok": True, "lsd_db": 0.4}, "y": {"ok": True, "lsd_db": 0.5},
                                   "z": {"ok": False, "lsd_db": 0.1}}, budget_db=0.6)
    assert plan["quantize"] == ["x"] and plan["keep_float"] == ["y", "z"]


# -- on the real reference graph -------------------------------------------------------------
@pytest.fixture(scope="module")
def ref(cfg):
    r = assets.reference(cfg)
    if not r.path.exists():
        pytest.skip(f"reference {r.path} not provisioned (labkit assets)")
    return r


@pytest.fixture(scope="module")
def voices(cfg):
    from labkit.runtime import VoiceBank

    return VoiceBank.load(assets.voices_path(cfg))


@pytest.fixture(scope="module")
def held():
    return corpora.prepare(corpora.load("heldout").select(ids=HELD))


@pytest.fixture(scope="module")
def builder(ref, voices, tmp_path_factory):
    cal = corpora.prepare(corpora.load("calibration").select(ids=["cal-14"]))
    return quantize.Builder(ref.path, tmp_path_factory.mktemp("variants"), calibration=cal,
                            voices=voices)


@pytest.fixture(scope="module")
def ref_audio(ref, cfg, voices, held):
    from labkit.runtime import make_session

    return qbench.reference_audio(make_session(ref.path, cfg.session), held, voices)


@pytest.mark.model
def test_families_cover_the_heavy_ops(ref):
    model = onnx.load(str(ref.path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    # every op with weights belongs to a family (the alignment MatMuls have none)
    loose = [n.name for n in model.graph.node
             if n.op_type in ("Conv", "MatMul", "LSTM", "ConvTranspose")
             and quantize.family_of(n.name) == "other" and weights & set(n.input)]
    assert loose == []
    block = set(quantize.fp16_block_list(model))
    casts = [n.name for n in model.graph.node if n.op_type == "Cast"
             and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    assert casts and set(casts) <= block
    assert any("STFT" in b for b in block) and any("m_source" in b for b in block)


def _speaks(built, cfg, voices, held, ref_audio, bound):
    from labkit.runtime import make_session

    ev = qbench.evaluate(make_session(built.path, cfg.session), held, voices, ref_audio,
                         with_dnsmos=False)
    for uid, rec in ev["per_utterance"].items():
        assert rec["ok"], (built.spec.name, uid, rec["problems"])
        assert quality.check_audio(ev["_audio"][uid]) == []
        assert rec["lsd_db"] <= bound, (built.spec.name, uid, rec["lsd_db"])
    return ev["summary"]


@pytest.mark.model
@pytest.mark.xfail(strict=False, reason="fp16 loads (source/STFT/iSTFT and Cast(to=float) "
                   "blocked, max_finite_val raised) but still outputs NaN on the recon graph; "
                   "open: find the overflowing node (issue 5)")
def test_fp16_recipe(builder, cfg, voices, held, ref_audio):
    built = builder.build("fp16")
    types = {i.type.tensor_type.elem_type for i in onnx.load(str(built.path),
                                                               load_external_data=False).graph.input}
    assert onnx.TensorProto.FLOAT16 not in types  # fp32 I/O
    _speaks(built, cfg, voices, held, ref_audio, BOUNDS_DB["fp16"])


@pytest.mark.model
def test_dynamic_recipe(builder, cfg, voices, held, ref_audio):
    built = builder.build({"name": "dyn-dec", "recipe": "dynamic", "weight_type": "quint8",
                           "families": ["decoder"]})
    assert built.nodes_quantized > 0
    assert "ConvInteger" in quantize.op_histogram(built.path)
    _speaks(built, cfg, voices, held, ref_audio, BOUNDS_DB["dynamic-decoder"])


@pytest.mark.model
def test_static_recipe(builder, cfg, voices, held, ref_audio):
    built = builder.build({"name": "qdq-dec", "recipe": "static", "calibration": "minmax",
                           "families": ["decoder"]})
    hist = quantize.op_histogram(built.path)
    assert hist.get("QuantizeLinear", 0) > 0 and hist.get("DequantizeLinear", 0) > 0
    _speaks(built, cfg, voices, held, ref_audio, BOUNDS_DB["static-decoder"])
