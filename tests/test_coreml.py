"""CoreML EP options, ORT placement-log and profile parsing, and the sweep harness.

The macOS path is exercised here by building provider option sets and by parsing ONNX
Runtime's placement log: the CoreML lines below are copied from user reports (Python and
Rust `ort` prefixes), the CPU ones are captured live from this onnxruntime."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from labkit.lab import s04_coreml, accelerator_harness, accelerator_split, accelerator_sweep
from labkit.lab.accelerator_result import CoreMLResult
from labkit.measure import placement, profile
from labkit.optimize import coreml
from labkit.config import ConfigError, LabConfig

# onnxruntime issue #28022 (ORT 1.24.4, M3 Max, MLProgram), Python-style prefix
SAMPLE_PARTIAL = """\
2026-04-15 10:01:02.123456 [I:onnxruntime:, inference_session.cc:2767 operator()] Initializing session.
2026-04-15 10:01:02.223456 [W:onnxruntime:, coreml_execution_provider.cc:113 GetCapability] CoreMLExecutionProvider::GetCapability, number of partitions supported by CoreML: 14 number of nodes in the graph: 226 number of nodes supported by CoreML: 212
2026-04-15 10:01:03.000001 [V:onnxruntime:, session_state.cc:1313 VerifyEachNodeIsAssignedToAnEp] Node placements
2026-04-15 10:01:03.000002 [V:onnxruntime:, session_state.cc:1313 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CoreMLExecutionProvider]. Number of nodes: 14
2026-04-15 10:01:03.000003 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   CoreML_18221836647193573136_0 (CoreMLExecutionProvider_CoreML_18221836647193573136_0_0)
2026-04-15 10:01:03.000004 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   CoreML_18221836647193573136_1 (CoreMLExecutionProvider_CoreML_18221836647193573136_1_1)
2026-04-15 10:01:03.000005 [V:onnxruntime:, session_state.cc:1313 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 14
2026-04-15 10:01:03.000006 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   Pad (/enc/Pad)
2026-04-15 10:01:03.000007 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   Pad (/enc/Pad_1)
2026-04-15 10:01:03.000008 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   CumSum (/dur/CumSum)
2026-04-15 10:01:03.000009 [W:onnxruntime:, session_state.cc:1359 VerifyEachNodeIsAssignedToAnEp] Some nodes were not assigned to the preferred execution providers which may or may not have an negative impact on performance.
2026-04-15 10:01:03.100000 [I:onnxruntime:, inference_session.cc:2400 Initialize] Session successfully initialized.
"""

# ekhodzitsky/gigastt#42 (Rust `ort` tracing prefix): two graphs offered in one process
SAMPLE_RUST = """\
2026-06-13T06:47:39.025710Z  WARN ort{id="" location="coreml_execution_provider.cc:113 GetCapability"}: ort::logging: CoreMLExecutionProvider::GetCapability, number of partitions supported by CoreML: 64 number of nodes in the graph: 1799 number of nodes supported by CoreML: 262
2026-06-13T06:47:41.270379Z  INFO ort{id="" location="allocation_planner.cc:2658 CreateGraphPartitioner"}: ort::logging: Use DeviceBasedPartition as default
2026-06-13T06:47:41.459504Z  WARN ort{id="" location="coreml_execution_provider.cc:113 GetCapability"}: ort::logging: CoreMLExecutionProvider::GetCapability, number of partitions supported by CoreML: 2 number of nodes in the graph: 5 number of nodes supported by CoreML: 4
"""

# the kokoro-onnx report quoted in the issue (message text only)
SAMPLE_KOKORO = ("CoreMLExecutionProvider::GetCapability, number of partitions supported by CoreML: 129 "
                 "number of nodes in the graph: 2478 number of nodes supported by CoreML: 1051")

SAMPLE_ALL = ("2026-04-15 10:02:00.1 [I:onnxruntime:, coreml_execution_provider.cc:115 GetCapability] "
              "CoreMLExecutionProvider::GetCapability, number of partitions supported by CoreML: 1 "
              "number of nodes in the graph: 312 number of nodes supported by CoreML: 312\n"
              "2026-04-15 10:02:00.2 [V:onnxruntime:, session_state.cc:1310 VerifyEachNodeIsAssignedToAnEp]"
              "  All nodes placed on [CoreMLExecutionProvider]. Number of nodes: 1\n")


# -- options ------------------------------------------------------------------------------
def test_validate_options_accepts_every_documented_value():
    for key, allowed in coreml.OPTIONS.items():
        for value in allowed or ("/tmp/coreml-cache",):
            assert coreml.validate_options({key: value}) == {key: value}
    assert coreml.validate_options({"RequireStaticInputShapes": True, "EnableOnSubgraphs": 0}) == {
        "RequireStaticInputShapes": "1", "EnableOnSubgraphs": "0"}


@pytest.mark.parametrize("opts, match", [
    ({"ComputeUnits": "ALL"}, "allowed keys: ModelFormat, MLComputeUnits"),
    ({"MLComputeUnits": "GPU"}, "allowed are CPUOnly, CPUAndGPU, CPUAndNeuralEngine, ALL"),
    ({"ModelFormat": "mlprogram"}, "allowed are MLProgram, NeuralNetwork"),
    ({"SpecializationStrategy": "Fast"}, "allowed are Default, FastPrediction"),
    ({"RequireStaticInputShapes": "maybe"}, "allowed are 0/1"),
    ({"ModelCacheDirectory": ""}, "expected a directory path"),
])
def test_validate_options_errors_name_what_is_allowed(opts, match):
    with pytest.raises(coreml.CoreMLOptionError, match=match):
        coreml.validate_options(opts)
    assert issubclass(coreml.CoreMLOptionError, ConfigError)


def test_session_config_from_labconfig():
    cfg = LabConfig.load(env={}).with_overrides({"session.provider_options": {
        coreml.PROVIDER: {"SpecializationStrategy": "FastPrediction", "ModelCacheDirectory": "artifacts/cm"}}})
    assert coreml.provider_options(cfg)["ModelCacheDirectory"] == str(cfg.resolve("artifacts/cm"))
    s = coreml.session_config(cfg, "NeuralNetwork", "CPUAndNeuralEngine", static_shapes=True)
    assert s.providers == [coreml.PROVIDER, coreml.CPU]
    assert s.provider_options[coreml.PROVIDER] == {
        "SpecializationStrategy": "FastPrediction", "ModelCacheDirectory": str(cfg.resolve("artifacts/cm")),
        "ModelFormat": "NeuralNetwork", "MLComputeUnits": "CPUAndNeuralEngine",
        "RequireStaticInputShapes": "1"}
    assert cfg.session.providers == [coreml.CPU]  # the config itself is untouched
    with pytest.raises(coreml.CoreMLOptionError, match="MLComputeUnits='NPU'"):
        coreml.session_config(cfg, compute_units="NPU")
    bad = cfg.with_overrides({"session.provider_options": {coreml.PROVIDER: {"UseCPUOnly": 1}}})
    with pytest.raises(coreml.CoreMLOptionError, match="unknown CoreMLExecutionProvider option 'UseCPUOnly'"):
        coreml.provider_options(bad)


def test_sweep_points_grid_and_labels():
    pts = coreml.sweep_points(["int8", "fp32-recon"], ["MLProgram", "NeuralNetwork"],
                              ["ALL", "CPUOnly"], [False, True])
    assert len(pts) == 16
    assert pts[0].label == "int8/MLProgram/ALL" and pts[1].label == "int8/MLProgram/ALL/static"
    assert coreml.SweepPoint("int8", coreml.CPU).label == "int8/CPU"
    with pytest.raises(coreml.CoreMLOptionError, match="CPUAndNeuralEngine"):
        coreml.sweep_points(["int8"], ["MLProgram"], ["ANE"])


def test_availability_and_skip_reason():
    assert coreml.coreml_available() == (coreml.PROVIDER in ort.get_available_providers())
    assert coreml.skip_reason().startswith("CoreMLExecutionProvider not available on ")
    assert coreml.platform_name() in coreml.skip_reason()


# -- ORT's placement log --------------------------------------------------------------------
def test_parse_partial_placement():
    p = placement.parse_placement_log(SAMPLE_PARTIAL)
    cov = p.coverage()
    assert (cov["nodes_in_graph"], cov["nodes_on_ep"], cov["partitions"]) == (226, 212, 14)
    assert cov["nodes_fallback"] == 14 and cov["coverage_pct"] == pytest.approx(93.81)
    assert p.nodes_by_provider == {coreml.PROVIDER: 14, coreml.CPU: 14}
    assert p.ops_by_provider[coreml.CPU] == {"Pad": 2, "CumSum": 1}
    assert p.ops_by_provider[coreml.PROVIDER] == {"CoreML partition": 2}
    assert cov["cpu_ops"] == {"Pad": 2, "CumSum": 1}


def test_parse_rust_prefix_and_message_only():
    p = placement.parse_placement_log(SAMPLE_RUST)
    assert [(c.partitions, c.nodes_in_graph, c.nodes_supported) for c in p.capabilities] == [
        (64, 1799, 262), (2, 5, 4)]
    assert p.coverage()["nodes_in_graph"] == 1799  # the main graph, not the small one
    k = placement.parse_placement_log(SAMPLE_KOKORO).coverage()
    assert (k["partitions"], k["nodes_in_graph"], k["nodes_on_ep"]) == (129, 2478, 1051)
    assert k["coverage_pct"] == pytest.approx(42.41)


def test_parse_all_nodes_on_one_provider():
    p = placement.parse_placement_log(SAMPLE_ALL)
    assert p.all_on == coreml.PROVIDER and p.coverage()["partitions"] == 1
    assert placement.parse_placement_log("nothing of interest\n").coverage()["nodes_on_ep"] is None


def _tiny_model(tmp_path):
    X = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3])
    Y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])
    ax = helper.make_tensor("ax", TensorProto.INT64, [], [1])
    nodes = [helper.make_node("Sin", ["X"], ["a"], name="sin0"),
             helper.make_node("CumSum", ["a", "ax"], ["b"], name="cumsum0"),
             helper.make_node("Relu", ["b"], ["Y"], name="relu0")]
    model = helper.make_model(helper.make_graph(nodes, "g", [X], [Y], [ax]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_live_cpu_log_and_profile(tmp_path):
    path = _tiny_model(tmp_path)
    so = ort.SessionOptions()
    so.log_severity_level = 0
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof")
    with placement.capture_ort_log() as log:
        sess = ort.InferenceSession(str(path), so, providers=[coreml.CPU])
    p = placement.parse_placement_log("".join(log))
    assert p.all_on == coreml.CPU and p.nodes_by_provider == {coreml.CPU: 3}
    assert p.coverage()["coverage_pct"] == 0.0
    sess.run(None, {"X": np.ones((1, 3), np.float32)})
    prof = profile.summarize(profile.read_trace(sess.end_profiling()))
    assert prof["by_provider"][coreml.CPU]["nodes"] == 3
    assert prof["by_provider"][coreml.CPU]["time_share"] == 1.0
    assert set(prof["cpu_top_ops_us"]) == {"Sin", "CumSum", "Relu"}


def test_parse_profile_coreml_events():
    ev = [{"cat": "Node", "name": "CoreMLExecutionProvider_CoreML_1_0_0_kernel_time", "dur": 900,
           "args": {"provider": coreml.PROVIDER, "op_name": "CoreML_1_0"}},
          {"cat": "Node", "name": "/dur/CumSum_kernel_time", "dur": 100,
           "args": {"provider": coreml.CPU, "op_name": "CumSum"}},
          {"cat": "Session", "name": "model_run", "dur": 5000, "args": {}}]
    prof = profile.summarize(profile.read_trace(ev))
    assert prof["by_provider"][coreml.PROVIDER] == {"nodes": 1, "kernel_us": 900.0, "time_share": 0.9}
    assert prof["cpu_top_ops_us"] == {"CumSum": 100.0}


# -- the harness ----------------------------------------------------------------------------
def test_tokens_of_length():
    assert len(accelerator_harness.tokens_of_length(1)) == 1 and len(accelerator_harness.tokens_of_length(510)) == 510
    with pytest.raises(ValueError, match="1 to 510"):
        accelerator_harness.tokens_of_length(511)


@pytest.mark.skipif(coreml.coreml_available(), reason="CoreML exists here: the sweep runs for real")
def test_coreml_point_is_skipped_here(cfg, tmp_path):
    r = accelerator_sweep.run_config(cfg, coreml.SweepPoint("int8"), [8], cache_root=tmp_path)
    assert r["status"] == f"skipped: {coreml.skip_reason()}"
    assert r["provider_options"]["MLComputeUnits"] == "ALL"
    assert accelerator_sweep.summarize([r]) == [{"label": "int8/MLProgram/ALL", "status": r["status"]}]


def test_cpu_point_measures_placement_latency_and_quality(cfg, engine, tmp_path):
    ref = engine.run_tokens(accelerator_harness.tokens_of_length(8), cfg.voice).audio
    r = accelerator_sweep.run_config(cfg, coreml.SweepPoint("int8", coreml.CPU), [8], repeats=1, warmup=0,
                          cache_root=tmp_path, reference={8: ref})
    assert r["status"] == "ok"
    cov = r["placement"]["all"]["coverage"]
    assert cov["all_on"] == coreml.CPU and cov["nodes_on_cpu"] > 2000
    row = r["by_length"]["8"]
    assert row["warm_s"]["n"] == 1 and row["audio_s"] > 0
    assert row["lsd_db"] == pytest.approx(0.0, abs=0.05)  # same model, same provider
    assert row["ruler"]["verdict"] == "pass"
    rows = accelerator_sweep.summarize([r])
    assert rows[0]["label"] == "int8/CPU" and rows[0]["tokens"] == 8
    rec = accelerator_sweep.recommend(rows)
    assert rec["short"]["label"] == "int8/CPU" and rec["long"] is None
    json.dumps(r)  # the record is JSON-serializable as is


def test_run_candidate_measures_the_split_on_the_cpu(cfg, engine, split_parts, tmp_path):
    """split/CPU needs no Mac: part A then part B on the CPU provider, timed, placed, and
    judged against the whole graph's audio (the same model: the same sound)."""
    n = 25
    ref = {n: engine.run_tokens(accelerator_harness.tokens_of_length(n), cfg.voice).audio}
    r = accelerator_split.run_candidate(cfg, accelerator_split.Candidate("split", "CPU"), split_parts, "int8", [n], ref,
                          repeats=1, warmup=0, cache_dir=tmp_path)
    assert r["status"] == "ok" and r["placement"] == {"nodes_on_cpu": "all"}
    assert r["create_and_first_run_s"] > 0
    row = r["by_length"][str(n)]
    assert row["warm_s"] > 0 and row["rtf"] > 0 and row["parts_s"]
    assert row["lsd_db"] == pytest.approx(0.0, abs=0.05) and row["ruler"]["verdict"] == "pass"
    json.dumps(r)


def test_recommendation_leaves_out_what_the_ruler_rejects():
    """A configuration whose durations moved by a frame has a large common-prefix LSD but
    passes the ruler (aligned before it compares); one the ruler rejects is left out however
    fast; one the ruler did not measure stays in."""
    def row(label, tokens, s, lsd, verdict=None):
        return {"label": label, "tokens": tokens, "status": "ok", "warm_median_s": s,
                "rtf": s, "lsd_db": lsd, "ruler_verdict": verdict}

    rows = [row("cpu", 25, 0.30, 0.0, "pass"), row("cpu", 244, 2.0, 0.0, "pass"),
            row("ane", 25, 0.20, 6.5, "pass"),   # a frame longer, same sound
            row("ane", 244, 1.0, 7.0, "pass"),
            row("gpu", 25, 0.10, 5.0, "fail")]   # fast, but damaged
    rec = accelerator_sweep.recommend(rows, short_max_tokens=60)
    assert rec["short"]["label"] == "ane" and rec["long"]["label"] == "ane"
    rows[-1]["ruler_verdict"] = None
    assert accelerator_sweep.recommend(rows, short_max_tokens=60)["short"]["label"] == "gpu"


# -- static-shape copies: a disk budget ---------------------------------------------------------
def _dynamic_model(path):
    x = helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "n"])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, "n"])
    g = helper.make_graph([helper.make_node("Identity", ["tokens"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    import onnx

    onnx.save(m, str(path))
    return path


def test_static_copies_stay_within_their_budget_and_are_removed(tmp_path):
    src = _dynamic_model(tmp_path / "m.onnx")
    size = src.stat().st_size
    budget = coreml.StaticBudget(limit_bytes=int(size * 2.5))  # room for two copies, not three
    a = coreml.static_model(src, 8, tmp_path / "static", budget=budget)
    b = coreml.static_model(src, 16, tmp_path / "static", budget=budget)
    assert a.exists() and b.exists() and budget.written == [a, b]
    assert coreml.static_model(src, 8, tmp_path / "static", budget=budget) == a  # reused, not re-counted
    with pytest.raises(coreml.StaticBudgetError, match="static_budget_gb"):
        coreml.static_model(src, 32, tmp_path / "static", budget=budget)
    assert not (tmp_path / "static" / "m.static32.onnx").exists()  # refused before writing
    assert budget.remove() > 0
    assert not a.exists() and not b.exists() and budget.used_bytes == 0
    with pytest.raises(ValueError, match="static_budget_gb"):
        coreml.StaticBudget.gb(-1)
    assert coreml.StaticBudget.gb(4).limit_bytes == 4_000_000_000


class FakeStage:
    """What stage 04's record() writes to: metrics, notes, a status."""

    def __init__(self):
        self.metrics, self.notes, self.status = {}, [], "ok"

    def note(self, text):
        self.notes.append(text)

    def skip(self, reason):
        self.status = f"skipped: {reason}"


def test_stage_04_offers_split_candidates_and_says_why_they_cannot_win_yet(tmp_path):
    st = FakeStage()
    result = CoreMLResult(**_results()[0])  # nothing ran here; the split failed; mlx absent
    s04_coreml.record(st, result)
    assert [c["name"] for c in st.metrics["candidates"]] == ["whole graph"]  # skipped: not offered
    assert st.metrics["split"]["status"].startswith("failed:")
    assert st.metrics["providers"]["split/mlx"]["fp32-recon"]["status"].startswith("skipped:")
    assert any("no paired ratio interval" in n for n in st.notes)
    assert any("disk budget" in n and "static" in n for n in st.notes)
    assert st.status == f"skipped: {coreml.skip_reason()}" or coreml.coreml_available()


def test_the_journal_names_each_failed_candidate_and_what_was_screened_out():
    st = FakeStage()
    result = CoreMLResult(**{"audits": {}, "missing": {}, "tables": {"onnxruntime_version": "x", "source": "y"},
              "tables_vs_pinned": {}, "reference": {}, "rows": [], "available": True,
              "platform": "macOS", "sweep_status": "ok", "recommendation": {},
              "static_copies": {"limit_gb": 4.0, "used_gb": 0.0, "files": [], "freed_gb": 0.0},
              "split": {}, "providers": {},
              "results": [{"label": "int8/MLProgram/CPUAndGPU",
                           "status": "failed: crashed (killed by SIGSEGV) after 1 s"},
                          {"label": "int8/MLProgram/ALL", "status": "ok"}],
              "candidates": {"split/CoreML/MLProgram/ALL": {
                  "label": "split/CoreML/MLProgram/ALL", "status": "failed: timed out after 900 s (killed)"}},
              "screen": {"screened": 8, "screen_length": 115, "screen_repeats": 1,
                         "confirmed": ["a", "b"], "screened_out": [
                             {"label": "int8/NeuralNetwork/CPUOnly", "rtf": 0.9, "x_fastest": 3.1}]}})
    s04_coreml.record(st, result)
    failed = next(n for n in st.notes if n.startswith("failed candidates"))
    assert "int8/MLProgram/CPUAndGPU: crashed (killed by SIGSEGV)" in failed
    assert "split/CoreML/MLProgram/ALL: timed out after 900 s (killed)" in failed
    screen = next(n for n in st.notes if n.startswith("screened 8"))
    assert "int8/NeuralNetwork/CPUOnly (3.1x the fastest's RTF)" in screen
    assert st.metrics["screen"]["confirmed"] == ["a", "b"]


# -- the record: the same JSON from the typed result ---------------------------------------------
RECORDS = Path(__file__).parent / "records"


class _Audit(dict):
    """An op audit's stand-in: what record reads of labkit.optimize.op_audit's result."""

    def to_dict(self):
        return dict(self)


def _results() -> list[dict]:
    a = {"audits": {}, "missing": {}, "tables": {"onnxruntime_version": "x", "source": "y"},
         "tables_vs_pinned": {}, "reference": {}, "results": [
             {"label": "fp32/MLProgram/ALL/static", "status": "skipped: static-shape copy m "
              "(0.3 GB) would take the copies to 4.2 GB, over static_budget_gb=4: not written"}],
         "rows": [], "available": False, "platform": "Linux", "sweep_status": "skipped: x",
         "recommendation": {"short": None, "long": None},
         "static_copies": {"limit_gb": 4.0, "used_gb": 0.0, "files": [], "freed_gb": 0.0},
         "split": {"fp32-recon": {"status": "failed: SplitError: x", "variant": "fp32-recon"}},
         "candidates": {"split/mlx": {"label": "split/mlx", "status": "skipped: not installed",
                                      "variant": "fp32-recon"}},
         "providers": {"split/mlx": {"fp32-recon": {"status": "skipped: not installed"}}}}
    audit_b = {k: {"nodes": 10, "MLProgram": {"coverage_pct": 90.0, "estimated_partitions": 2},
                   "NeuralNetwork": {"coverage_pct": 80.0, "estimated_partitions": 3}}
               for k in ("b", "b_bucketed")}
    b = {"audits": {"int8": _Audit(nodes=100, coreml={"MLProgram": {"coverage_pct": 70.0, "estimated_partitions": 9}})},
         "missing": {"fp16": "not present"}, "tables": {"onnxruntime_version": "1.22", "source": "pinned"},
         "tables_vs_pinned": {"same": True}, "reference": {"variant": "fp32-recon", "path": "/m.onnx", "note": "n"},
         "rows": [{"label": "int8/CPU", "tokens": 25, "status": "ok", "rtf": 0.3, "lsd_db": 1.2,
                   "lsd_db_aligned": 0.9},
                  {"label": "int8/MLProgram/ALL", "tokens": 25, "status": "ok", "rtf": 0.2, "lsd_db": None}],
         "available": True, "platform": "macOS", "sweep_status": "ok",
         "recommendation": {"short": {"label": "int8/MLProgram/ALL", "median_rtf": 0.2, "tokens": [25]}, "long": None},
         "static_copies": {"limit_gb": 4.0, "used_gb": 0.0, "files": [], "freed_gb": 0.0},
         "split": {"fp32-recon": {"status": "ok", "variant": "fp32-recon", "stages": 2, "max_lsd_db": 0.02,
                                  "max_lsd_db_limit": 0.1, "passed": True,
                                  "max_lsd_db_by_bucket": {"64": 0.01, "128": 0.02}, "audit_b": audit_b}},
         "providers": {"whole/CPU": {"int8": {"status": "ok"}}},
         "results": [{"label": "int8/MLProgram/CPUAndGPU",
                      "status": "failed: crashed (killed by SIGSEGV) after 1 s"},
                     {"label": "int8/MLProgram/ALL", "status": "ok"}],
         "buckets": [64, 128],
         "candidates": {"split/CPU": {"label": "split/CPU", "variant": "fp32-recon", "status": "ok",
                                      "candidate": {"graph": "split", "provider": "CPU"},
                                      "by_length": {"25": {"rtf": 0.25, "lsd_db": 0.0,
                                                           "ruler": {"verdict": "pass", "reasons": []}}}},
                        "split/CoreML/MLProgram/ALL": {
                            "label": "split/CoreML/MLProgram/ALL", "variant": "fp32-recon", "status": "ok",
                            "candidate": {"graph": "split", "provider": "CoreML", "model_format": "MLProgram",
                                          "compute_units": "ALL", "static_shapes": False},
                            "by_length": {"25": {"rtf": 0.2, "lsd_db": 0.1}}},
                        "split/mlx": {"label": "split/mlx", "status": "failed: timed out after 900 s (killed)",
                                      "variant": "fp32-recon", "candidate": {"graph": "split", "provider": "mlx"}}},
         "screen": {"screened": 8, "screen_length": 115, "screen_repeats": 1,
                    "confirmed": ["a", "b"], "screened_out": [
                        {"label": "int8/NeuralNetwork/CPUOnly", "rtf": 0.9, "x_fastest": 3.1}]}}
    return [a, b]


def test_record_writes_what_the_untyped_result_wrote():
    """tests/records/04_coreml_units.json is what ``record`` wrote for these results when
    ``run`` returned a dict (before the typed CoreMLResult): the same keys and values."""
    expected = json.loads((RECORDS / "04_coreml_units.json").read_text(encoding="utf-8"))
    for fields, want in zip(_results(), expected, strict=True):
        st = FakeStage()
        s04_coreml.record(st, CoreMLResult(**fields))
        assert json.loads(json.dumps({"metrics": st.metrics, "notes": st.notes})) == want
        assert st.status == ("ok" if fields["available"] else f"skipped: {coreml.skip_reason()}")
