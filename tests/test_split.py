"""The graph split (part A / part B), fixed-length buckets, and the split engine.

A toy graph shaped like Kokoro's (an ``/encoder/`` side making per-frame features, a
``/decoder/`` side with an instance norm over time and convolutions, ``style`` read by both
through a ``/decoder/Slice``) makes every check exact and fast; the real int8 model's
boundary is checked too."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labkit.config import ConfigError, LabConfig
from labkit.engine import assets, rewrites
from labkit.engine.registries import check_config
from labkit.engine import split_runtime as sr
from labkit.engine.sessions import kokoro_feeds, new_session, probe_config
from labkit.engine.pipeline import StreamingSynthesizer, build_engines
from labkit.engine.voices import VoiceBank
from labkit.engine.piece_cache import PieceCache, piece_key
from labkit.optimize import part_b, split_cut
from labkit.optimize import split as sp

C = 8          # channels
SPF = 4        # audio samples per frame of the toy vocoder
RNG = np.random.default_rng(3)


def _init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def toy_kokoro(decoder_reads_tokens: bool = False) -> onnx.ModelProto:
    """tokens [1, n+2] -> frames = n + 2 -> features [1, C, F] and F0 [1, 2F] -> decoder:
    instance norm over time, a Conv, style added, a Conv to SPF channels -> audio [SPF * F]."""
    v = lambda n, t=TensorProto.FLOAT, s=None: helper.make_tensor_value_info(n, t, s)
    enc = [
        helper.make_node("Cast", ["tokens"], ["/encoder/tf"], name="/encoder/Cast", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["/encoder/tf", "ax1"], ["/encoder/tu"], name="/encoder/Unsqueeze"),
        helper.make_node("Mul", ["/encoder/tu", "feat_w"], ["/encoder/asr"], name="/encoder/MatMul_1"),
        helper.make_node("Mul", ["/encoder/tf", "two"], ["/encoder/f0h"], name="/encoder/Mul_f0"),
        helper.make_node("Concat", ["/encoder/f0h", "/encoder/tf"], ["/encoder/f0"], name="/encoder/Reshape", axis=-1),
    ]
    dec = [
        helper.make_node("Slice", ["style", "s0", "sC", "ax1"], ["/decoder/s"], name="/decoder/Slice"),
        helper.make_node("Unsqueeze", ["/decoder/s", "ax2"], ["/decoder/su"], name="/decoder/Unsq"),
        helper.make_node("ReduceMean", ["/encoder/asr", "axm1"], ["/decoder/m"], name="/decoder/rm1", keepdims=1),
        helper.make_node("Sub", ["/encoder/asr", "/decoder/m"], ["/decoder/d"], name="/decoder/sub"),
        helper.make_node("Mul", ["/decoder/d", "/decoder/d"], ["/decoder/d2"], name="/decoder/sq"),
        helper.make_node("ReduceMean", ["/decoder/d2", "axm1"], ["/decoder/v"], name="/decoder/rm2", keepdims=1),
        helper.make_node("Add", ["/decoder/v", "eps"], ["/decoder/ve"], name="/decoder/add"),
        helper.make_node("Sqrt", ["/decoder/ve"], ["/decoder/sd"], name="/decoder/sqrt"),
        helper.make_node("Div", ["/decoder/d", "/decoder/sd"], ["/decoder/n"], name="/decoder/div"),
        helper.make_node("Add", ["/decoder/n", "/decoder/su"], ["/decoder/ns"], name="/decoder/style_add"),
        helper.make_node("Conv", ["/decoder/ns", "w1", "b1"], ["/decoder/c1"], name="/decoder/conv1",
                         pads=[1, 1], kernel_shape=[3]),
        # F0 at twice the frame rate, folded to frames by a stride-2 conv
        helper.make_node("Unsqueeze", ["/encoder/f0", "ax1"], ["/decoder/f0u"], name="/decoder/f0u"),
        helper.make_node("Conv", ["/decoder/f0u", "wf", "bf"], ["/decoder/f0c"], name="/decoder/f0conv",
                         strides=[2], kernel_shape=[2]),
        helper.make_node("Add", ["/decoder/c1", "/decoder/f0c"], ["/decoder/h"], name="/decoder/h"),
        helper.make_node("Conv", ["/decoder/h", "w2", "b2"], ["/decoder/c2"], name="/decoder/conv2",
                         pads=[1, 1], kernel_shape=[3]),
        helper.make_node("Transpose", ["/decoder/c2"], ["/decoder/t"], name="/decoder/T", perm=[0, 2, 1]),
        helper.make_node("Reshape", ["/decoder/t", "flat"], ["audio"], name="/decoder/flat"),
    ]
    if decoder_reads_tokens:  # the known-bad graph: the decoder reads the tokens itself
        t = next(i for i, n in enumerate(dec) if n.op_type == "Transpose")
        dec[t].input[0] = "/decoder/c2b"
        dec[t:t] = [
            helper.make_node("Cast", ["tokens"], ["/decoder/bad"], name="/decoder/bad", to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["/decoder/bad"], ["/decoder/bs"], name="/decoder/bs", keepdims=0),
            helper.make_node("Add", ["/decoder/c2", "/decoder/bs"], ["/decoder/c2b"], name="/decoder/c2b")]
    inits = [_init("ax1", np.array([1], np.int64)), _init("ax2", np.array([2], np.int64)),
             _init("axm1", np.array([-1], np.int64)), _init("two", np.array(2.0, np.float32)),
             _init("feat_w", RNG.normal(size=(1, C, 1)).astype(np.float32)),
             _init("s0", np.array([0], np.int64)), _init("sC", np.array([C], np.int64)),
             _init("eps", np.array(1e-5, np.float32)),
             _init("w1", RNG.normal(size=(C, C, 3)).astype(np.float32) * 0.3),
             _init("b1", RNG.normal(size=(C,)).astype(np.float32)),
             _init("wf", RNG.normal(size=(C, 1, 2)).astype(np.float32) * 0.01),
             _init("bf", np.zeros(C, np.float32)),
             _init("w2", RNG.normal(size=(SPF, C, 3)).astype(np.float32) * 0.3),
             _init("b2", RNG.normal(size=(SPF,)).astype(np.float32)),
             _init("flat", np.array([-1], np.int64))]
    graph = helper.make_graph(enc + dec, "toy",
                              [v("tokens", TensorProto.INT64, [1, "n"]), v("style", s=[1, 256]),
                               v("speed", s=[1])],
                              [v("audio", s=["samples"])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _feeds(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return kokoro_feeds(list(rng.integers(1, 150, size=n)), rng.normal(0, 0.2, size=(1, 256)))


def _run(model, feeds):
    return np.asarray(new_session(model, probe_config()).run(None, feeds)[0]).ravel()


@pytest.fixture(scope="module")
def toy_parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    path = d / "toy.onnx"
    onnx.save(toy_kokoro(), str(path))
    return path, sp.split_files(path, d / "split")


# -- the cut -----------------------------------------------------------------------------
def test_boundary_is_what_the_decoder_reads_from_the_encoder():
    assert split_cut.find_boundary(toy_kokoro()) == ["/encoder/asr", "/encoder/f0"]


def test_split_runs_to_the_same_audio():
    m = toy_kokoro()
    parts = split_cut.split(m)
    assert parts.b_inputs == ["/encoder/asr", "/encoder/f0", "style"]  # style read through /decoder/Slice
    f = _feeds(7)
    bound = new_session(parts.a, probe_config()).run(None, f)
    b_feeds = {**dict(zip(parts.boundary, bound)), "style": f["style"]}
    out = np.asarray(new_session(parts.b, probe_config()).run(None, b_feeds)[0]).ravel()
    np.testing.assert_array_equal(out, _run(m, f))


def test_split_refuses_a_decoder_that_reads_tokens():
    with pytest.raises(split_cut.SplitError, match="tokens"):
        split_cut.split(toy_kokoro(decoder_reads_tokens=True))


def test_a_graph_without_a_decoder_is_refused():
    m = toy_kokoro()
    for n in m.graph.node:
        n.name = n.name.replace("/decoder/", "/other/")
    with pytest.raises(split_cut.SplitError, match="no decoder nodes"):
        split_cut.find_boundary(m)


@pytest.mark.model
def test_real_int8_boundary(cfg):
    path = assets.model_path(cfg, "int8")
    if not path.exists():
        pytest.skip(f"{path} not provisioned")
    m = onnx.load(str(path), load_external_data=False)
    # the aligned features and the F0 / N curves; the int8 DynamicQuantizeLinear stays in B
    assert split_cut.find_boundary(m) == ["/encoder/MatMul_1_output_0", "/encoder/Reshape_output_0",
                                   "/encoder/Reshape_1_output_0"]


# -- buckets -------------------------------------------------------------------------------
def test_bucket_for():
    assert sr.bucket_for(61, [64, 128]) == 64
    assert sr.bucket_for(64, [128, 64]) == 64
    assert sr.bucket_for(129, [64, 128]) == 256  # past the largest: a multiple of it
    assert sr.bucket_for(61, []) == 61
    with pytest.raises(ValueError):
        sr.bucket_for(0, [64])


def test_pad_frames_repeats_edges_at_each_rate():
    asr = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    f0 = np.arange(6, dtype=np.float32).reshape(1, 6)
    a, f = sr.pad_frames([asr, f0], 3, 5)
    assert a.shape == (1, 2, 5) and f.shape == (1, 10)
    assert a[0, 1, -1] == asr[0, 1, -1] and f[0, -1] == 5
    with pytest.raises(ValueError, match="multiple"):
        sr.pad_frames([np.zeros((1, 7))], 3, 5)


def test_bucketed_part_b_is_exact_and_plain_padding_is_not(toy_parts):
    _bucketed_is_exact(*toy_parts)


@pytest.mark.parametrize("affine", [False, True])
def test_a_graph_whose_norms_were_rewritten_buckets_as_exactly(tmp_path, affine):
    """A variant whose elementwise tail was rewritten (labkit.optimize.quantize: the one
    file it ships) holds its AdaIN norms as InstanceNormalization ops, not the exported
    chain: the bucketed part B masks those too (the shipped qdq-layers-tail had failed
    stage 07 with "no instance-norm chain ... found in part B")."""
    model, sites = rewrites.apply(toy_kokoro(), ["instance_norm"], feeds=_feeds(9))
    assert len(sites["instance_norm"]) == 1
    if affine:  # an InstanceNormalization's own scale and bias (the rewrite writes 1 and 0)
        norm = next(n for n in model.graph.node if n.op_type == "InstanceNormalization")
        for name in norm.input[1:]:
            init = next(i for i in model.graph.initializer if i.name == name)
            init.CopyFrom(numpy_helper.from_array(
                RNG.normal(1.0, 0.3, size=numpy_helper.to_array(init).shape).astype(np.float32), name))
    path = tmp_path / "toy-in.onnx"
    onnx.save(model, str(path))
    parts = sp.split_files(path, tmp_path / "split")
    assert "InstanceNormalization" in {n.op_type for n in onnx.load(str(parts.b)).graph.node}
    assert "InstanceNormalization" not in {n.op_type for n in onnx.load(str(parts.b_bucketed)).graph.node}
    _bucketed_is_exact(path, parts)


def _bucketed_is_exact(path, parts):
    m = onnx.load(str(path))
    f = _feeds(9)
    ref = _run(m, f)
    bound = new_session(parts.a, probe_config()).run(None, f)
    frames = bound[0].shape[-1]
    assert parts.meta["samples_per_frame"] == SPF and ref.size == SPF * frames
    sb, sbb = new_session(parts.b, probe_config()), new_session(parts.b_bucketed, probe_config())
    for fb in (frames, frames + 5, 3 * frames):
        padded = sr.pad_frames(bound, frames, fb)
        feeds = {**dict(zip(parts.meta["boundary"], padded)), "style": f["style"]}
        out = np.asarray(sbb.run(None, {**feeds, sr.FRAMES: np.array([frames], np.float32)})[0]).ravel()
        assert out.size == fb * SPF
        np.testing.assert_allclose(out[: frames * SPF], ref, atol=1e-4, rtol=1e-4)
        if fb > frames:  # the known-bad case: padding without the masks moves the audio
            plain = np.asarray(sb.run(None, feeds)[0]).ravel()[: frames * SPF]
            assert np.abs(plain - ref).max() > 1e-3
    assert parts.meta["masked_norms"] == 1 and parts.meta["masked_convs"] >= 3


def test_bucketing_needs_an_instance_norm():
    parts = split_cut.split(toy_kokoro())
    b = parts.b
    keep = [n for n in b.graph.node if n.op_type != "ReduceMean"]
    del b.graph.node[:]
    b.graph.node.extend(keep)
    with pytest.raises(split_cut.SplitError, match="instance-norm"):
        part_b.bucket_model(b, parts.boundary[0])


def test_check_split_reports_lsd_per_bucket(toy_parts):
    path, parts = toy_parts
    # toy audio is short: the standard LSD frames need a few hundred samples
    feeds = [_feeds(200, 1), _feeds(300, 2)]
    r = sp.check_split(path, parts, feeds, [256, 512])
    assert r["failures"] == []
    assert set(r["max_lsd_db_by_bucket"]) == {"256", "512"}
    assert r["max_lsd_db"] < 0.01 and r["max_split_lsd_db"] == 0.0


def _longer(path, tmp_path, extra=8):
    """A copy of the model at ``path`` whose audio has ``extra`` samples more (a part gone wrong)."""
    m = onnx.load(str(path))
    out = m.graph.output[0].name
    for n in m.graph.node:
        n.output[:] = [o + "_pre" if o == out else o for o in n.output]
    m.graph.initializer.append(_init("extra_zeros", np.zeros(extra, np.float32)))
    m.graph.node.append(helper.make_node("Concat", [out + "_pre", "extra_zeros"], [out], axis=0))
    m.graph.output[0].type.tensor_type.ClearField("shape")
    dest = tmp_path / f"longer-{path.name}"
    onnx.save(m, str(dest))
    return dest


def test_check_split_fails_where_a_part_gives_other_lengths(toy_parts, tmp_path):
    path, parts = toy_parts
    feeds = [_feeds(200, 1)]
    bad_b = dataclasses.replace(parts, b=_longer(parts.b, tmp_path))
    r = sp.check_split(path, bad_b, feeds, [256])
    assert r["failures"] == ["split: 816 samples, the whole graph gave 808"]
    assert r["by_input"][0]["split_lsd_db"] is None
    bad_bucket = dataclasses.replace(parts, b_bucketed=_longer(parts.b_bucketed, tmp_path))
    r = sp.check_split(path, bad_bucket, feeds, [256])
    assert r["failures"] == [f"bucket 256: {256 * SPF + 8} samples, expected {256 * SPF}"]
    assert r["max_lsd_db_by_bucket"] == {} and r["max_lsd_db"] is not None  # the split itself was fine


def test_split_files_are_cached_by_model_hash(toy_parts, tmp_path):
    path, parts = toy_parts
    again = sp.split_files(path, parts.a.parent)
    assert again.a == parts.a and again.meta == parts.meta
    other = tmp_path / "toy2.onnx"
    m = toy_kokoro()
    m.graph.initializer[4].CopyFrom(_init("feat_w", np.ones((1, C, 1), np.float32)))
    onnx.save(m, str(other))
    assert sr.split_paths(other, parts.a.parent)["a"] != parts.a


def test_a_removed_split_is_gone_and_built_again_when_asked(tmp_path):
    """Issue #31: stage 03 removes a variant's split once it is judged."""
    p = tmp_path / "m.onnx"
    onnx.save(toy_kokoro(), str(p))
    parts = sp.split_files(p, tmp_path / "split")
    written = sum(f.stat().st_size for f in (tmp_path / "split").iterdir() if f.name.startswith("m."))
    assert sp.remove_split(p, tmp_path / "split") == written > 0
    assert not parts.a.exists() and not parts.b.exists()
    with pytest.raises(sr.SplitMissing):
        sr.SplitParts.locate(p, tmp_path / "split")
    assert sp.remove_split(p, tmp_path / "split") == 0
    assert sp.split_files(p, tmp_path / "split").a.exists()


def test_locate_missing_split_says_how_to_build(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(toy_kokoro(), str(p))
    with pytest.raises(sr.SplitMissing, match="split_files"):
        sr.SplitParts.locate(p, tmp_path / "nothing")


def test_b_rewrites_are_checked_and_recorded(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(toy_kokoro(), str(p))
    parts = sp.split_files(p, tmp_path / "split", ["pow2_mul"])
    assert parts.meta["b_rewrites"]["sites"] == {"pow2_mul": 0}


# -- the split engine ----------------------------------------------------------------------
def _voices():
    return VoiceBank({"af_heart": RNG.normal(0, 0.2, size=(510, 1, 256)).astype(np.float32)})


def test_split_engine_matches_the_whole_graph(toy_parts):
    path, parts = toy_parts
    cfg = LabConfig()
    voices = _voices()
    toks = list(range(5, 40))
    ref = _run(onnx.load(str(path)), kokoro_feeds(toks, voices.pack("af_heart")[len(toks) - 1]))
    for buckets in ([], [16, 64]):
        eng = sr.SplitEngine(cfg, parts, voices, buckets=buckets)
        syn = eng.run_tokens(toks, "af_heart")
        np.testing.assert_allclose(syn.audio, ref, atol=1e-4, rtol=1e-4)
        assert eng.last["frames"] == len(toks) + 2
        assert eng.last["bucket"] == (64 if buckets else len(toks) + 2)
    with pytest.raises(ValueError, match="speed"):
        eng.run_tokens(toks, "af_heart", speed=3.0)
    with pytest.raises(ValueError, match="no phoneme tokens"):
        eng.run_tokens([], "af_heart")


def test_split_engine_static_buckets(toy_parts, tmp_path):
    path, parts = toy_parts
    static = sp.static_bucket_models(parts, [16, 64], tmp_path)
    m = onnx.load(str(static[64]))
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, C, 64]
    voices = _voices()
    eng = sr.SplitEngine(LabConfig(), parts, voices, buckets=[16, 64], static_b=static)
    toks = list(range(5, 40))
    ref = _run(onnx.load(str(path)), kokoro_feeds(toks, voices.pack("af_heart")[len(toks) - 1]))
    np.testing.assert_allclose(eng.run_tokens(toks, "af_heart").audio, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="largest static bucket"):
        eng.run_tokens(list(range(1, 100)), "af_heart")
    with pytest.raises(ConfigError, match="bucket"):
        sr.SplitEngine(LabConfig(), parts, voices, buckets=[16, 32], static_b=static)


def test_engine_for_picks_the_split_engine_by_config(tmp_path, monkeypatch):
    cfg = LabConfig().with_overrides({"split.enabled": True, "artifacts_dir": str(tmp_path),
                                      "model_path": str(tmp_path / "m.onnx")})
    onnx.save(toy_kokoro(), str(tmp_path / "m.onnx"))
    with pytest.raises(sr.SplitMissing):
        sr.engine_for(cfg, voices=_voices())
    sp.split_files(tmp_path / "m.onnx", sr.split_dir(cfg))
    assert isinstance(sr.engine_for(cfg, voices=_voices()), sr.SplitEngine)


# -- config --------------------------------------------------------------------------------
def test_split_config_validation():
    LabConfig().with_overrides({"split.b_session": {"providers": ["CPUExecutionProvider"]}}).validate()
    with pytest.raises(ConfigError, match="buckets"):
        LabConfig().with_overrides({"split.buckets": [64, 0]}).validate()
    with pytest.raises(ConfigError, match="b_session: unknown"):
        LabConfig().with_overrides({"split.b_session": {"provider": "x"}}).validate()
    with pytest.raises(ConfigError, match="b_rewrites"):
        check_config(LabConfig().with_overrides({"split.b_rewrites": ["nope"]}))
    with pytest.raises(ConfigError, match="plugin_eps"):
        check_config(LabConfig().with_overrides({"session.plugin_eps": ["cuda"]}))


def test_meta_is_json(toy_parts):
    _, parts = toy_parts
    paths = sr.split_paths(parts.meta["source"], parts.a.parent)
    assert json.loads(paths["meta"].read_text())["boundary"] == ["/encoder/asr", "/encoder/f0"]


def test_the_split_choice_reaches_the_pipeline_and_the_endpoint(tmp_path):
    # what the lab may pick (split.enabled in best.json) is what serve/ and the pipeline run
    cfg = LabConfig().with_overrides({"split.enabled": True, "split.buckets": [16, 64],
                                      "artifacts_dir": str(tmp_path),
                                      "model_path": str(tmp_path / "m.onnx")})
    onnx.save(toy_kokoro(), str(tmp_path / "m.onnx"))
    sp.split_files(tmp_path / "m.onnx", sr.split_dir(cfg))
    engines = build_engines(cfg)
    assert len(engines) == 1 and isinstance(engines[0], sr.SplitEngine)
    with pytest.raises(ConfigError, match="pipeline.sessions: 1"):
        build_engines(cfg.with_overrides({"pipeline.sessions": 2}))
    cache = PieceCache()
    synth = StreamingSynthesizer.from_config(cfg, piece_cache=cache)  # what serve/ builds
    eng = synth.engine
    assert isinstance(eng, sr.SplitEngine) and synth.piece_cache is cache
    toks = list(range(5, 40))

    def run():
        syn = eng.run_tokens(toks, cfg.voice)
        return syn.audio, syn.seconds, syn.durations

    first = cache.through(piece_key(eng, cfg.voice, 1.0, toks), run)
    again = cache.through(piece_key(eng, cfg.voice, 1.0, toks), run)
    assert (cache.hits, cache.misses) == (1, 1) and np.array_equal(first[0], again[0])
    assert eng.last["bucket"] == 64  # the first call ran part B at its bucket
