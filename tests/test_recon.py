"""fp32-recon: no quantized op left, loads in ONNX Runtime, same length as int8."""
import collections

import numpy as np
import onnx
import pytest

from labkit.engine import assets
from labkit.engine.runtime import Engine


@pytest.fixture(scope="module")
def recon_path(cfg):
    return assets.require(assets.model_path(cfg, "fp32-recon"), "fp32-recon")


@pytest.mark.model
def test_graph_is_float_only(recon_path):
    model = onnx.load(str(recon_path), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    for quantized in ("MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
                      "DynamicQuantizeLSTM", "DequantizeLinear"):
        assert ops[quantized] == 0, quantized
    assert ops["LSTM"] == 6
    assert len(model.graph.node) == 2366  # FINDINGS.md: 2,366 nodes
    names = [i.name for i in model.graph.initializer]
    assert len(names) == len(set(names))
    assert not any(i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
                   for i in model.graph.initializer if len(i.dims) > 1)


def test_manifest_records_the_rebuild(cfg):
    entry = assets.read_manifest(cfg)["files"][assets.FP32_RECON_NAME]
    assert entry["stats"]["replaced"] == {"MatMulInteger": 148, "ConvInteger": 87,
                                          "DynamicQuantizeLSTM": 6, "DequantizeLinear": 4}


def test_speaks_like_the_int8_model(cfg, engine, g2p_us, recon_path):
    from labkit.quality import recognizer

    recon = Engine(cfg, variant="fp32-recon", voices=engine.voices)
    a = engine.synthesize_phonemes("həlˈO wˈɜɹld.").audio
    b = recon.synthesize_phonemes("həlˈO wˈɜɹld.").audio
    assert len(a) == len(b)  # same durations for this input
    assert np.isfinite(b).all() and np.abs(b).max() > 0.05
    # the same words, as an independent recognizer (pocketsphinx) hears them, and the
    # sentence's timing within 5 % (int8 rounding moves a duration here and there)
    text = "The ferry leaves at seven every morning, whatever the weather."
    phonemes = g2p_us(text).phonemes
    a, b = engine.synthesize_phonemes(phonemes).audio, recon.synthesize_phonemes(phonemes).audio
    assert abs(len(a) - len(b)) <= 0.05 * len(a)
    heard = recognizer.word_error_rate(b, text)
    assert heard["heard"] == recognizer.transcribe(a) and heard["wer"] <= 0.2, heard
