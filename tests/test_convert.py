"""ORT-format conversion, the optimized-graph cache, and bad session settings."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labkit.optimize import convert
from labkit.config import ConfigError, SessionConfig
from labkit.engine.runtime import providers_for, session_options


def _tiny_model(path, scale=2.0):
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(scale, np.float32), "k")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_plain_config_loads_the_model_itself(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx")
    assert convert.cached_model_for(model, SessionConfig(), tmp_path / "cache") == model
    assert not (tmp_path / "cache").exists()


def test_cache_builds_once_and_loads(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx")
    s = SessionConfig(use_ort_format=True)
    first = convert.cached_model_for(model, s, tmp_path / "cache")
    assert first.suffix == ".ort" and first.exists()
    mtime = first.stat().st_mtime_ns
    assert convert.cached_model_for(model, s, tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == mtime  # reused, not rebuilt
    sess = convert.make_cached_session(model, s, tmp_path / "cache")
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], 2 * x)


def test_cache_invalidates_on_model_change(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx", scale=2.0)
    s = SessionConfig(use_optimized_cache=True)
    a = convert.cached_model_for(model, s, tmp_path / "cache")
    _tiny_model(model, scale=3.0)  # same path, new content
    b = convert.cached_model_for(model, s, tmp_path / "cache")
    assert a != b
    sess = convert.make_cached_session(model, s, tmp_path / "cache")
    np.testing.assert_allclose(sess.run(None, {"x": np.ones((1, 4), np.float32)})[0], 3.0)


def test_cache_invalidates_on_ort_version_and_settings(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx")
    s = SessionConfig(use_ort_format=True)
    here = convert.cache_entry(model, s, tmp_path / "c")
    other = convert.cache_entry(model, s, tmp_path / "c", ort_version="0.0.1")
    assert here != other
    p = convert.cached_model_for(model, s, tmp_path / "c", ort_version="9.9.9")
    assert p == convert.cache_entry(model, s, tmp_path / "c", ort_version="9.9.9") and p.exists()
    level = convert.cache_entry(model, dataclasses.replace(s, graph_optimization_level="basic"),
                                tmp_path / "c")
    threads = convert.cache_entry(model, dataclasses.replace(s, intra_op_threads=1), tmp_path / "c")
    assert level != here  # the level shapes the saved graph
    assert threads == here  # threads do not
    digest = convert.model_sha256(model)
    assert convert.cache_key(digest, s, "ort", "1.0") != convert.cache_key(digest, s, "ort", "1.1")


def test_optimize_every_level(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx")
    out = convert.optimize(model, tmp_path / "opt", levels=("disable", "basic", "all"))
    assert set(out) == {"disable", "basic", "all"}
    for p in out.values():
        onnx.load(str(p))
    with pytest.raises(ConfigError, match="allowed are"):
        convert.optimize(model, tmp_path / "opt", levels=("fastest",))


def test_ort_format_round_trip_real_model(cfg, tmp_path):
    """The shipped model as ORT format loads and makes the same-length audio."""
    from labkit.engine import assets

    path = assets.model_path(cfg, "int8")
    if not path.exists():
        pytest.skip(f"{path} not provisioned")
    ort_path = convert.to_ort_format(path, tmp_path / "k.ort")
    assert ort_path.exists() and ort_path.stat().st_size > 0
    feeds = convert.probe_feeds(10)
    plain = convert.make_cached_session(path, SessionConfig(), tmp_path / "cache")
    s = SessionConfig(use_ort_format=True)
    cached = convert.make_cached_session(path, s, tmp_path / "cache")
    a = plain.run(None, feeds)[0]
    b = cached.run(None, feeds)[0]
    assert a.size > 0 and a.size == b.size
    assert np.isfinite(b).all()


@pytest.mark.parametrize("threads", [0, -1])
def test_bad_thread_count(threads):
    with pytest.raises(ConfigError, match="intra_op_threads.*>= 1"):
        session_options(SessionConfig(intra_op_threads=threads))
    with pytest.raises(ConfigError, match="inter_op_threads.*>= 1"):
        session_options(SessionConfig(inter_op_threads=threads))


def test_unknown_provider_is_named():
    with pytest.raises(ConfigError, match="NopeExecutionProvider.*available: .*CPUExecutionProvider"):
        providers_for(SessionConfig(providers=["NopeExecutionProvider"]))


def test_unknown_rewrite_and_format(tmp_path):
    with pytest.raises(ConfigError, match="session.rewrites.*allowed are"):
        SessionConfig(rewrites=["fast_math"]).validate()
    with pytest.raises(ConfigError, match="allowed are onnx, ort"):
        convert.cache_key("x", SessionConfig(), "tflite")
    model = _tiny_model(tmp_path / "m.onnx")
    with pytest.raises(ConfigError):
        convert.make_cached_session(model, SessionConfig(intra_op_threads=0, use_ort_format=True),
                                    tmp_path / "c")


def test_cold_start_entry_point(cfg, tmp_path):
    """``python -m labkit.optimize.convert cold`` in a fresh process reports its timings."""
    from labkit.engine import assets
    from labkit.lab import s02_ort_conversion as ortbench

    path = assets.model_path(cfg, "int8")
    if not path.exists():
        pytest.skip(f"{path} not provisioned")
    toks = list(convert.probe_feeds(8)["tokens"][0, 1:-1])
    out = ortbench.cold_once(path, SessionConfig(use_ort_format=True), tmp_path / "c", toks,
                             assets.voices_path(cfg))
    assert out["samples"] > 0 and out["first_audio_s"] >= out["create_s"] > 0


def test_missed_targets_are_explained_from_the_record():
    from labkit.lab import s02_ort_conversion as ortbench

    def t(median):
        return {"median": median}

    cold = {"default": {"first_audio": t(2.0), "create": t(1.1), "first_run": t(0.9)},
            "best": {"first_audio": t(1.6), "create": t(0.7), "first_run": t(0.9)}}
    assert ortbench.cold_ceiling(cold) == pytest.approx(2.0 / 0.9)
    r = {"cold": cold, "cold_speedup": 1.25, "cold_ceiling": ortbench.cold_ceiling(cold),
         "targets": {"cold_start_2x": False, "faster_at_every_length": False, "drift_within": True},
         "speedup": {30: 1.08, 500: 0.98},
         "warm": {"best": {30: {"tokens": 28}, 500: {"tokens": 494}}}}
    notes = ortbench.missed_target_notes("int8", r)
    assert len(notes) == 2
    assert "1.25x" in notes[0] and "at most 2.22x" in notes[0]
    assert "494 tok 0.98x" in notes[1] and "28 tok" not in notes[1]
    r["targets"] = {"cold_start_2x": True, "faster_at_every_length": True, "drift_within": True}
    assert ortbench.missed_target_notes("int8", r) == []


def test_screen_takes_only_changes_that_beat_its_own_noise():
    from labkit.lab import s02_ort_conversion as ortbench

    base = SessionConfig()
    cands = ortbench.screen_candidates(base, toggles=["denormal_as_zero", "enable_mem_pattern"],
                                       rewrites=["pow2_mul"])
    labels = [c.label for c in cands]
    assert labels[:2] == ["default", ortbench.CONTROL] and cands[1].session == base
    lsd = {c.label: {60: {"drift_vs_default_db": 0.0}} for c in cands}
    speed = {"default": {60: 1.0}, ortbench.CONTROL: {60: 1.10},  # this screen is 10 % noisy
             "denormal_as_zero=True": {60: 1.08}, "enable_mem_pattern=False": {60: 1.25},
             "ort_format": {60: 0.97}, "rewrite=pow2_mul": {60: 1.05}}
    assert ortbench.screen_noise(speed) == pytest.approx(0.10)
    best, taken = ortbench.combine(base, cands, speed, lsd)
    assert taken == ["enable_mem_pattern=False", "ort_format"]  # ORT format: for the cold start
    assert best.enable_mem_pattern is False and best.denormal_as_zero is False and not best.rewrites
    # a quiet screen takes the 8 % and 5 % wins too
    speed[ortbench.CONTROL] = {60: 1.01}
    best, taken = ortbench.combine(base, cands, speed, lsd)
    assert set(taken) == {"denormal_as_zero=True", "enable_mem_pattern=False", "ort_format",
                          "rewrite=pow2_mul"}
    assert best.rewrites == ["pow2_mul"] and best.use_ort_format
