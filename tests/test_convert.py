"""ORT-format conversion, the optimized-graph cache, and bad session settings."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labkit.engine import assets, graph_cache
from labkit.lab import s02_ort_conversion as s02
from labkit.lab.batch import Batch
from labkit.measure import profile, session_settings
from labkit.measure.compare import run_json
from labkit.engine import sessions
from labkit.optimize import convert
from labkit.config import REPO_ROOT, ConfigError, SessionConfig
from labkit.engine.registries import check_session
from labkit.engine.sessions import providers_for, session_options


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
    assert graph_cache.cached_model_for(model, SessionConfig(), tmp_path / "cache") == model
    assert not (tmp_path / "cache").exists()


def test_cache_builds_once_and_loads(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx")
    s = SessionConfig(use_ort_format=True)
    first = graph_cache.cached_model_for(model, s, tmp_path / "cache")
    assert first.suffix == ".ort" and first.exists()
    mtime = first.stat().st_mtime_ns
    assert graph_cache.cached_model_for(model, s, tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == mtime  # reused, not rebuilt
    sess = graph_cache.make_cached_session(model, s, tmp_path / "cache")
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], 2 * x)


def test_cache_invalidates_on_model_change(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx", scale=2.0)
    s = SessionConfig(use_optimized_cache=True)
    a = graph_cache.cached_model_for(model, s, tmp_path / "cache")
    _tiny_model(model, scale=3.0)  # same path, new content
    b = graph_cache.cached_model_for(model, s, tmp_path / "cache")
    assert a != b
    sess = graph_cache.make_cached_session(model, s, tmp_path / "cache")
    np.testing.assert_allclose(sess.run(None, {"x": np.ones((1, 4), np.float32)})[0], 3.0)


def test_cache_invalidates_on_ort_version_and_settings(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx")
    s = SessionConfig(use_ort_format=True)
    here = graph_cache.cache_entry(model, s, tmp_path / "c")
    other = graph_cache.cache_entry(model, s, tmp_path / "c", ort_version="0.0.1")
    assert here != other
    p = graph_cache.cached_model_for(model, s, tmp_path / "c", ort_version="9.9.9")
    assert p == graph_cache.cache_entry(model, s, tmp_path / "c", ort_version="9.9.9") and p.exists()
    level = graph_cache.cache_entry(model, dataclasses.replace(s, graph_optimization_level="basic"),
                                tmp_path / "c")
    threads = graph_cache.cache_entry(model, dataclasses.replace(s, intra_op_threads=1), tmp_path / "c")
    assert level != here  # the level shapes the saved graph
    assert threads == here  # threads do not
    digest = graph_cache.model_sha256(model)
    assert graph_cache.cache_key(digest, s, "ort", "1.0") != graph_cache.cache_key(digest, s, "ort", "1.1")


def test_optimize_every_level(tmp_path):
    model = _tiny_model(tmp_path / "m.onnx")
    out = convert.optimize(model, tmp_path / "opt", levels=("disable", "basic", "all"))
    assert set(out) == {"disable", "basic", "all"}
    for p in out.values():
        onnx.load(str(p))
    with pytest.raises(ConfigError, match="allowed are"):
        convert.optimize(model, tmp_path / "opt", levels=("fastest",))


@pytest.mark.model
def test_ort_format_round_trip_real_model(cfg, tmp_path):
    """The shipped model as ORT format loads and makes the same-length audio."""
    from labkit.engine import assets

    path = assets.model_path(cfg, "int8")
    if not path.exists():
        pytest.skip(f"{path} not provisioned")
    ort_path = convert.to_ort_format(path, tmp_path / "k.ort")
    assert ort_path.exists() and ort_path.stat().st_size > 0
    feeds = sessions.probe_feeds(10)
    plain = graph_cache.make_cached_session(path, SessionConfig(), tmp_path / "cache")
    s = SessionConfig(use_ort_format=True)
    cached = graph_cache.make_cached_session(path, s, tmp_path / "cache")
    a = plain.run(None, feeds)[0]
    b = cached.run(None, feeds)[0]
    assert a.size > 0 and a.size == b.size
    assert np.isfinite(b).all()


def test_a_cached_ort_format_graph_is_profiled_with_its_onnx_graphs_convolutions(tmp_path):
    """Stage 02 profiles its best settings from the cache: where that is an ORT-format
    graph (a flatbuffer onnx cannot parse; the journal's stage 02 failed on it with "Wire
    format was corrupt"), the convolutions' work is read from the ONNX graph it was
    optimized from, the cache entry's recorded source."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", pads=[1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 64])],
        [numpy_helper.from_array(np.ones((8, 4, 3), np.float32), "w")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp_path / "conv.onnx"
    onnx.save(m, str(src))
    s = SessionConfig(use_ort_format=True, intra_op_threads=1)
    cached = graph_cache.cached_model_for(src, s, tmp_path / "cache")
    assert cached.suffix == ".ort" and graph_cache.onnx_graph_of(cached) == src.resolve()
    assert graph_cache.onnx_graph_of(src) == src
    out = profile.profile_session(cached, graph_cache.load_config(s, True),
                                  {"x": np.ones((1, 4, 64), np.float32)}, out_dir=tmp_path / "prof")
    # 8 x 64 outputs, each 4 x 3 multiply-adds: 2 operations each
    assert out["conv_work"]["fp32"]["gops"] * 1e9 == pytest.approx(2 * 8 * 64 * 4 * 3)


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
        check_session(SessionConfig(rewrites=["fast_math"]))
    with pytest.raises(ConfigError, match="allowed are onnx, ort"):
        graph_cache.cache_key("x", SessionConfig(), "tflite")
    model = _tiny_model(tmp_path / "m.onnx")
    with pytest.raises(ConfigError):
        graph_cache.make_cached_session(model, SessionConfig(intra_op_threads=0, use_ort_format=True),
                                    tmp_path / "c")


@pytest.mark.model
def test_cold_start_entry_point(cfg, tmp_path):
    """``python -m labkit.optimize.convert cold`` in a fresh process reports its timings."""
    path = assets.model_path(cfg, "int8")
    if not path.exists():
        pytest.skip(f"{path} not provisioned")
    toks = list(sessions.probe_feeds(8)["tokens"][0, 1:-1])
    cmd = session_settings.cold_command(path, SessionConfig(use_ort_format=True), tmp_path / "c", toks,
                           assets.voices_path(cfg))
    out = run_json(cmd)
    assert out["samples"] > 0 and out["first_audio_s"] >= out["create_s"] > 0


def test_missed_targets_are_explained_from_the_record():
    cold = {"default": {"first_audio": 2.0, "create": 1.1, "first_run": 0.9},
            "best": {"first_audio": 1.6, "create": 0.7, "first_run": 0.9}}
    assert session_settings.cold_ceiling(cold) == pytest.approx(2.0 / 0.9)
    r = {"cold": cold, "cold_ratio": {"best": {"ratio": 1.25, "ci95": [1.2, 1.3]}},
         "cold_ceiling": session_settings.cold_ceiling(cold), "taken": ["ort_format"],
         "targets": {"cold_start_2x": False, "faster_at_every_length": False, "drift_within": True},
         "warm": {"30": {"tokens": 28, "speedup": 1.08, "ci95": [1.02, 1.12]},
                  "500": {"tokens": 494, "speedup": 0.98, "ci95": [0.95, 1.01]}}}
    notes = s02.missed_target_notes("int8", r)
    assert len(notes) == 2
    assert "1.25x" in notes[0] and "at most 2.22x" in notes[0]
    assert "494 tok 0.98x" in notes[1] and "28 tok" not in notes[1]
    r["targets"] = {"cold_start_2x": True, "faster_at_every_length": True, "drift_within": True}
    assert s02.missed_target_notes("int8", r) == []


def test_screen_takes_only_changes_whose_interval_clears_one():
    base = SessionConfig()
    cands = s02.screen_candidates(base, toggles=["denormal_as_zero", "enable_mem_pattern"],
                                  rewrites=["pow2_mul"], arch="x86_64")
    assert [c.label for c in cands][0] == "default" and cands[0].session == base
    rows = {"default": {"ci95": [0.97, 1.03], "drift_vs_default_db": 0.0},
            # a high median whose interval still touches 1.0 (a noisy screen): not taken
            "denormal_as_zero=True": {"ci95": [0.99, 1.20], "drift_vs_default_db": 0.0},
            "enable_mem_pattern=False": {"ci95": [1.10, 1.30], "drift_vs_default_db": 0.0},
            "ort_format": {"ci95": [0.95, 1.02], "drift_vs_default_db": 0.0},
            # earned on speed, but its audio moved too far
            "rewrite=pow2_mul": {"ci95": [1.05, 1.10], "drift_vs_default_db": 1.5}}
    best, taken = s02.combine(base, cands, rows, max_lsd_db=1.0)
    assert taken == ["enable_mem_pattern=False"]
    assert best.enable_mem_pattern is False and not best.use_ort_format and not best.rewrites
    rows["rewrite=pow2_mul"]["drift_vs_default_db"] = 0.1
    best, taken = s02.combine(base, cands, rows, max_lsd_db=1.0)
    assert set(taken) == {"enable_mem_pattern=False", "rewrite=pow2_mul"}
    assert best.rewrites == ["pow2_mul"] and best.use_ort_format


def test_candidates_mark_the_default_as_baseline_and_judge_the_worst_length():
    ok = {"verdict": "pass", "reasons": [], "checks": {}}
    warm = {"30": {"tokens": 28, "default_s": 0.2, "best_s": 0.18, "rtf_default": 0.3, "rtf_best": 0.27,
                   "speedup": 1.11, "ci95": [1.05, 1.15], "noise_band": [0.98, 1.02], "drift_vs_default_db": 0.1,
                   "ruler": ok},
            "500": {"tokens": 494, "default_s": 2.0, "best_s": 1.9, "rtf_default": 0.3, "rtf_best": 0.28,
                    "speedup": 1.05, "ci95": [0.99, 1.08], "noise_band": [0.97, 1.03], "drift_vs_default_db": 0.2,
                    "ruler": {"verdict": "fail", "reasons": ["gap_ms 6.00 > 3"], "checks": {}}}}
    r = {"warm": warm, "taken": ["enable_mem_pattern=False"],
         "best_session": {**dataclasses.asdict(SessionConfig()), "enable_mem_pattern": False},
         "cold": {"default": {"first_audio": 1.0}, "best": {"first_audio": 0.9}}}
    base, best = s02.candidates({"int8": r}, ["int8"], SessionConfig())
    assert base["baseline"] is True and base["overrides"] == {}
    assert best["overrides"] == {"session.enable_mem_pattern": False}
    assert best["ci95"] == [0.99, 1.08] and best["ratio"] == 1.05  # the least favourable length
    assert best["lsd_db"] == 0.2  # the standard drift, reported
    assert best["quality"]["verdict"] == "fail" and best["quality"]["reasons"] == ["494 tokens: gap_ms 6.00 > 3"]
    assert base["quality"]["verdict"] == "pass"


def test_denormal_as_zero_is_refused_where_it_does_nothing():
    """Finding 9: ONNX Runtime's SetDenormalAsZero only touches x86's SSE register
    (onnxruntime/core/common/denormal.cc: the body is under #ifdef DENORMAL_INTRINC, defined
    for x86 only); disassembled from libonnxruntime.1.31.1.dylib in the macOS arm64 wheel
    (llvm-objdump --macho -d), __ZN11onnxruntime17SetDenormalAsZeroEb is `mov w0, #0; ret`.
    Screening it on the M1 Max times noise."""
    with pytest.raises(ConfigError, match="toggle denormal_as_zero does nothing on arm64"):
        s02.screen_candidates(SessionConfig(), toggles=["enable_mem_pattern", "denormal_as_zero"],
                              arch="arm64")
    labels = [c.label for c in s02.screen_candidates(SessionConfig(), toggles=["denormal_as_zero"],
                                                     arch="x86_64")]
    assert labels[:2] == ["default", "denormal_as_zero=True"]
    # the notebook's x86 default run on the Mac: left out of the screen, and the record says why
    kept, flagged = s02.screened_toggles(["enable_mem_pattern", "denormal_as_zero"], "arm64")
    assert kept == ["enable_mem_pattern"]
    assert flagged["denormal_as_zero"].startswith("does nothing on arm64: ONNX Runtime sets")
    assert s02.screened_toggles(["denormal_as_zero"], "x86_64") == (["denormal_as_zero"], {})


def test_the_mac_batch_screens_only_what_acts_on_arm64():
    stage = next(s for s in Batch.load(REPO_ROOT / "experiments" / "m1max.yaml").stages
                 if s.name == "02_ort_conversion")
    toggles = stage.parameters.get("toggles", [])
    assert s02.screen_candidates(SessionConfig(), toggles=toggles, arch="arm64")
