"""Plugin execution providers (WebGPU, MLX): registration through ONNX Runtime's plugin API,
device selection, and the ``skipped: <reason>`` path, with the Mac's facts faked; and the
stage-04 candidates that use them."""
from __future__ import annotations

import types

import pytest

from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.engine import sessions
from labkit.lab import accelerator_split as s04
from labkit.lab import selection


class FakeHW:
    def __init__(self, kind="GPU", vendor="Apple"):
        self.type = types.SimpleNamespace(name=kind)
        self.vendor = vendor


class FakeDevice:
    def __init__(self, ep, kind="GPU"):
        self.ep_name = ep
        self.ep_vendor = "fake"
        self.device = FakeHW(kind)


def fake_package(names=("WebGpuExecutionProvider",), lib="/fake/libplugin.dylib"):
    """Shaped like onnxruntime_ep_webgpu 0.4.0 (its __init__.py in
    onnxruntime_ep_webgpu-0.4.0-py3-none-macosx_14_0_universal2.whl: get_library_path(),
    get_ep_name(), get_ep_names()); the MLX package is shaped otherwise (below)."""
    return types.SimpleNamespace(get_library_path=lambda: lib, get_ep_names=lambda: list(names),
                                 get_ep_name=lambda: names[0])


#: onnxruntime_ep_mlx 0.31.0's whole public API: ``__all__`` of onnxruntime_ep_mlx/__init__.py
#: inside onnxruntime_ep_mlx-0.31.0-py3-none-macosx_14_0_arm64.whl
#: (pip download --no-deps --platform macosx_14_0_arm64 --only-binary=:all: onnxruntime-ep-mlx==0.31.0)
MLX_0_31_ALL = ("EP_NAME", "ep_name", "version", "vendor", "library_path",
                "register_execution_provider_library", "append_to_session_options", "__version__")


def mlx_0_31_standin(package_dir):
    """A module shaped exactly like onnxruntime_ep_mlx 0.31.0, from the same file:
    ``EP_NAME = "MLXExecutionProvider"``, ``ep_name()`` returns it, ``library_path()`` is
    ``libonnxruntime_mlx_ep.dylib`` beside the module and raises FileNotFoundError when that
    file is missing; ``register_execution_provider_library(name=EP_NAME)`` registers it with
    onnxruntime and returns the path. There is no get_library_path / get_ep_names."""
    mod = types.ModuleType("onnxruntime_ep_mlx")
    mod.__file__ = str(package_dir / "__init__.py")
    mod.__version__ = "0.31.0"
    mod.EP_NAME = "MLXExecutionProvider"
    mod.ep_name = lambda: mod.EP_NAME
    mod.version = lambda: mod.__version__
    mod.vendor = lambda: "onnxruntime-ep-mlx"

    def library_path():
        path = package_dir / "libonnxruntime_mlx_ep.dylib"
        if not path.is_file():
            raise FileNotFoundError(f"Bundled MLX EP plugin not found at {str(path)!r}. "
                                    "The onnxruntime-ep-mlx wheel appears to be incomplete.")
        return str(path)

    def register_execution_provider_library(name=mod.EP_NAME):
        lib = library_path()
        sessions.ort.register_execution_provider_library(name, lib)
        return lib

    mod.library_path = library_path
    mod.register_execution_provider_library = register_execution_provider_library
    mod.append_to_session_options = lambda so, name=mod.EP_NAME, provider_options=None: so
    mod.__all__ = list(MLX_0_31_ALL)
    return mod


@pytest.fixture
def mlx_wheel(tmp_path):
    """The MLX stand-in with its library file present, as an installed wheel has it."""
    (tmp_path / "libonnxruntime_mlx_ep.dylib").write_bytes(b"\xcf\xfa\xed\xfe")  # Mach-O magic
    return mlx_0_31_standin(tmp_path)


@pytest.fixture
def fresh(monkeypatch):
    """No plugin registered yet; registration and device enumeration recorded."""
    monkeypatch.setattr(sessions, "_REGISTERED", {})
    calls = {"registered": []}
    monkeypatch.setattr(sessions.ort, "register_execution_provider_library",
                        lambda name, path: calls["registered"].append((name, path)), raising=False)
    return calls


def test_missing_package_is_a_skip_reason(fresh, monkeypatch):
    def missing(name):
        raise ImportError(name)
    monkeypatch.setattr(sessions, "import_package", missing)
    with pytest.raises(sessions.PluginEPUnavailable) as exc:
        sessions.plugin_devices("mlx")
    assert "onnxruntime-ep-mlx not installed" in exc.value.reason
    assert "macOS 14+" in exc.value.reason
    assert fresh["registered"] == []


def test_registered_without_device_is_a_skip_reason(fresh, monkeypatch):
    monkeypatch.setattr(sessions, "import_package", lambda name: fake_package())
    monkeypatch.setattr(sessions.ort, "get_ep_devices", lambda: [FakeDevice("CPUExecutionProvider", "CPU")])
    with pytest.raises(sessions.PluginEPUnavailable, match="enumerated no device"):
        sessions.plugin_devices("webgpu")
    assert fresh["registered"] == [("webgpu", "/fake/libplugin.dylib")]


def test_mac_gpu_device_is_chosen_and_registered_once(fresh, monkeypatch):
    monkeypatch.setattr(sessions, "import_package",
                        lambda name: fake_package(("MLXExecutionProvider",), "/x/libmlx.dylib"))
    gpu = FakeDevice("MLXExecutionProvider")
    monkeypatch.setattr(sessions.ort, "get_ep_devices", lambda: [FakeDevice("CPUExecutionProvider", "CPU"), gpu])
    assert sessions.plugin_devices("mlx") == [gpu]
    assert sessions.plugin_devices("mlx") == [gpu]
    assert fresh["registered"] == [("mlx", "/x/libmlx.dylib")]
    assert sessions.device_info(gpu) == {"ep": "MLXExecutionProvider", "ep_vendor": "fake", "type": "GPU",
                                   "vendor": "Apple"}


def _add_model() -> bytes:
    from onnx import TensorProto, helper

    v = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [3])
    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [v("x")], [v("y")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m.SerializeToString()


def test_the_plugin_branch_runs_through_real_onnxruntime_on_its_cpu_device(fresh, monkeypatch):
    """The whole plugin path but the library load, real: a plugin package naming the CPU
    EP (the device ``ort.get_ep_devices()`` really enumerates here), its devices put on a
    real SessionOptions by ``add_provider_for_devices`` with LabConfig's options as ORT's
    strings, and a session that runs. A branch that drops the devices or their options
    leaves the options without providers."""
    import numpy as np

    monkeypatch.setattr(sessions, "import_package", lambda name: fake_package(("CPUExecutionProvider",),
                                                                        "/fake/libcpu_plugin.so"))
    cpu = [d for d in sessions.ort.get_ep_devices() if d.ep_name == "CPUExecutionProvider"]
    assert cpu, "onnxruntime enumerates no CPU device"
    s = SessionConfig(plugin_eps=["webgpu"], provider_options={"CPUExecutionProvider": {"use_arena": False}})
    seen = []
    sess = sessions.new_session(_add_model(), s, configure=seen.append)
    so = seen[0]
    assert so.has_providers()
    assert so.get_session_config_entry("ep.cpuexecutionprovider.use_arena") == "0"
    assert fresh["registered"] == [("webgpu", "/fake/libcpu_plugin.so")]
    assert sess.get_providers() == ["CPUExecutionProvider"]
    x = np.array([1.0, 2.0, 3.5], np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], 2 * x)
    # what a record says about the devices chosen: the real device's own words
    real = sessions.ort.SessionOptions()
    chosen = sessions.add_plugin_providers(real, s)
    assert real.has_providers() and chosen == [sessions.device_info(d) for d in cpu]
    assert chosen[0]["ep"] == "CPUExecutionProvider" and chosen[0]["type"] == "CPU"


def test_without_plugins_the_session_options_carry_no_devices():
    seen = []
    sess = sessions.new_session(_add_model(), SessionConfig(), configure=seen.append)
    assert not seen[0].has_providers() and sess.get_providers() == ["CPUExecutionProvider"]


def test_the_mlx_stand_in_has_exactly_the_wheels_api(mlx_wheel):
    public = {n for n in dir(mlx_wheel) if not n.startswith("_")} | {"__version__"}
    assert public - {"__all__"} == set(MLX_0_31_ALL) == set(mlx_wheel.__all__)
    assert not hasattr(mlx_wheel, "get_library_path") and not hasattr(mlx_wheel, "get_ep_names")


def test_the_real_mlx_package_shape_finds_its_library_and_ep_name(fresh, monkeypatch, mlx_wheel):
    """Finding 1: the lab called get_ep_names()/get_library_path(), which onnxruntime-ep-mlx
    0.31.0 does not have, so every MLX candidate failed with an AttributeError."""
    monkeypatch.setattr(sessions, "import_package", lambda name: mlx_wheel)
    gpu = FakeDevice("MLXExecutionProvider")
    monkeypatch.setattr(sessions.ort, "get_ep_devices", lambda: [FakeDevice("CPUExecutionProvider", "CPU"), gpu])
    assert sessions.plugin_library("mlx", mlx_wheel) == (mlx_wheel.library_path(), ["MLXExecutionProvider"])
    assert sessions.plugin_devices("mlx") == [gpu]
    assert fresh["registered"] == [("mlx", mlx_wheel.library_path())]


def test_stage_04_measures_an_mlx_candidate_instead_of_failing_it(fresh, monkeypatch, mlx_wheel):
    monkeypatch.setattr(sessions, "import_package", lambda name: mlx_wheel)
    monkeypatch.setattr(sessions.ort, "get_ep_devices", lambda: [FakeDevice("MLXExecutionProvider")])
    reason, devices = s04.provider_available(s04.Candidate("split", "mlx"))
    assert reason is None and devices[0]["ep"] == "MLXExecutionProvider"


def test_a_broken_or_unknown_plugin_package_is_a_skip_reason_not_a_crash(fresh, monkeypatch, tmp_path):
    incomplete = mlx_0_31_standin(tmp_path)  # the wheel without its dylib
    monkeypatch.setattr(sessions, "import_package", lambda name: incomplete)
    reason, _ = s04.provider_available(s04.Candidate("split", "mlx"))
    assert "onnxruntime-ep-mlx is broken (FileNotFoundError: Bundled MLX EP plugin not found" in reason
    sessions._REGISTERED.clear()
    monkeypatch.setattr(sessions, "import_package", lambda name: types.SimpleNamespace(EP_NAME="X"))
    reason, _ = s04.provider_available(s04.Candidate("split", "mlx"))
    assert reason.startswith("package onnxruntime-ep-mlx has none of get_library_path, library_path")
    assert fresh["registered"] == []


def test_library_that_fails_to_load_is_a_skip_reason(fresh, monkeypatch):
    monkeypatch.setattr(sessions, "import_package", lambda name: fake_package())

    def broken(name, path):
        raise RuntimeError("dlopen failed: libvulkan.so.1")
    monkeypatch.setattr(sessions.ort, "register_execution_provider_library", broken, raising=False)
    with pytest.raises(sessions.PluginEPUnavailable, match="libvulkan"):
        sessions.register_plugin("webgpu")


def test_unknown_plugin_is_a_config_error():
    with pytest.raises(ConfigError, match="known are"):
        sessions.register_plugin("cuda")


def test_real_webgpu_wheel_registers_but_finds_no_gpu_here():
    """On these GPU-less Linux machines the real WebGPU plugin registers and enumerates no
    device: the skip path the stage records."""
    pytest.importorskip("onnxruntime_ep_webgpu")
    sessions._REGISTERED.pop("webgpu", None)
    try:
        devices = sessions.plugin_devices("webgpu")
    except sessions.PluginEPUnavailable as exc:
        assert "no device" in exc.reason or "did not register" in exc.reason
    else:
        assert devices and all(d.ep_name == "WebGpuExecutionProvider" for d in devices)


# -- stage 04's candidates ------------------------------------------------------------------
def test_candidates_cover_cpu_coreml_grid_and_plugins():
    cands = s04.candidates(["MLProgram", "NeuralNetwork"], ["ALL", "CPUAndGPU"], [False, True],
                           ["webgpu", "mlx"])
    labels = [c.label for c in cands]
    assert labels[0] == "split/CPU"
    assert "split/CoreML/MLProgram/ALL/static" in labels and len([l for l in labels if "CoreML" in l]) == 8
    assert {"split/webgpu", "whole/webgpu", "split/mlx", "whole/mlx"} <= set(labels)
    with pytest.raises(ConfigError):
        s04.candidates(["MLProgram"], ["ALL"], [False], ["cuda"])
    with pytest.raises(ConfigError):
        s04.candidates(["MLProgam"], ["ALL"], [False], [])


def test_provider_availability_on_a_faked_mac(monkeypatch):
    monkeypatch.setattr(s04, "coreml_available", lambda: True)
    monkeypatch.setattr(s04, "plugin_devices", lambda name: [FakeDevice("MLXExecutionProvider")])
    assert s04.provider_available(s04.Candidate("split", "CoreML", "MLProgram", "ALL")) == (None, [])
    reason, devices = s04.provider_available(s04.Candidate("split", "mlx"))
    assert reason is None and devices[0]["ep"] == "MLXExecutionProvider"
    monkeypatch.setattr(s04, "coreml_available", lambda: False)
    reason, _ = s04.provider_available(s04.Candidate("split", "CoreML", "MLProgram", "ALL"))
    assert "not available" in reason


def test_candidate_session_configs(tmp_path):
    cfg = LabConfig()
    s = s04.candidate_session(cfg, s04.Candidate("split", "CoreML", "NeuralNetwork", "CPUAndGPU", True), tmp_path)
    assert s.providers[0] == "CoreMLExecutionProvider"
    assert s.provider_options["CoreMLExecutionProvider"]["RequireStaticInputShapes"] == "1"
    assert s04.candidate_session(cfg, s04.Candidate("whole", "webgpu"), tmp_path).plugin_eps == ["webgpu"]
    assert s04.candidate_session(cfg, s04.Candidate("split", "CPU"), tmp_path).providers == ["CPUExecutionProvider"]


def test_a_failing_candidate_is_recorded_and_the_others_run(monkeypatch):
    def fake(cfg, c, *a, **k):
        if c.provider == "mlx":
            raise RuntimeError("MLX kernel missing")
        return {"label": c.label, "candidate": {}, "status": "skipped: x", "variant": "v"}
    monkeypatch.setattr(s04, "run_candidate", fake)
    cands = [s04.Candidate("split", "mlx"), s04.Candidate("split", "webgpu")]
    out = s04.run_candidates(LabConfig(), cands, None, "v", [25], None, 1, 0, None, log=None)
    assert out["split/mlx"]["status"] == "failed: RuntimeError: MLX kernel missing"
    assert out["split/webgpu"]["status"] == "skipped: x"


def test_skipped_candidate_records_its_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(s04, "plugin_devices", lambda name: (_ for _ in ()).throw(
        sessions.PluginEPUnavailable(name, "package onnxruntime-ep-mlx not installed")))
    r = s04.run_candidate(LabConfig(), s04.Candidate("split", "mlx"), None, "fp32-recon", [25],
                          None, 1, 0, tmp_path)
    assert r["status"] == "skipped: package onnxruntime-ep-mlx not installed"


def test_providers_record_and_split_candidates_under_the_selection_rules():
    sweep = [{"label": "int8/CPU", "point": {"variant": "int8"}, "status": "ok",
              "by_length": {"25": {"rtf": 0.3, "lsd_db": 2.8}},
              "placement": {"all": {"coverage": {"partitions": 0}}}},
             {"label": "int8/MLProgram/ALL", "point": {"variant": "int8"},
              "status": "skipped: CoreMLExecutionProvider not available on Linux x86_64"}]
    cands = {"split/CPU": {"label": "split/CPU", "variant": "fp32-recon", "status": "ok",
                           "candidate": {"graph": "split", "provider": "CPU"},
                           "by_length": {"25": {"rtf": 0.25, "lsd_db": 0.0,
                                                "ruler": {"verdict": "pass", "reasons": []}}}},
             "split/CoreML/MLProgram/ALL": {"label": "split/CoreML/MLProgram/ALL", "variant": "fp32-recon",
                                            "status": "ok",
                                            "candidate": {"graph": "split", "provider": "CoreML",
                                                          "model_format": "MLProgram",
                                                          "compute_units": "ALL", "static_shapes": False},
                                            "by_length": {"25": {"rtf": 0.1, "lsd_db": 0.4,
                                                                 "ruler": {"verdict": "pass", "reasons": []}}}}}
    prov = s04.providers_record(sweep, cands)
    assert prov["whole/CPU"]["int8"]["by_length"]["25"]["rtf"] == 0.3
    assert prov["whole/MLProgram/ALL"]["int8"]["status"].startswith("skipped:")
    assert prov["split/CPU"]["fp32-recon"]["status"] == "ok"
    offered = s04.split_candidates(cands, {"fp32-recon": {
        "status": "ok", "passed": True, "max_lsd_db": 0.0, "max_lsd_db_limit": 0.1}})
    assert [c["baseline"] for c in offered] == [True, False, False]
    coreml = offered[2]
    assert coreml["overrides"]["split.enabled"] is True
    assert coreml["overrides"]["split.b_session"]["providers"][0] == "CoreMLExecutionProvider"
    LabConfig().with_overrides(coreml["overrides"]).validate()  # flows to best.json as is
    # single-run figures, no ratio interval: the baseline stays (rule c)
    for c in offered[1:]:
        assert selection.check_failures(c, LabConfig().selection) == []
        assert "ci95" not in c
    # a split the ruler rejects fails its quality check
    cands["split/CPU"]["by_length"]["25"]["ruler"] = {"verdict": "fail", "reasons": ["gap_ms 9.00 > 3"]}
    again = s04.split_candidates(cands, {"fp32-recon": {
        "status": "ok", "passed": True, "max_lsd_db": 0.0, "max_lsd_db_limit": 0.1}})
    assert selection.check_failures(again[1], LabConfig().selection) == ["quality: gap_ms 9.00 > 3"]
    entry, rejected = selection.judge({"stage": "04_coreml_units", "status": "ok",
                                       "metrics": {"candidates": offered}}, LabConfig().selection)
    assert entry["choice"] == "whole graph" and len(rejected) == 2


def test_a_split_that_failed_its_check_fails_its_candidates():
    cands = {"split/CPU": {"label": "split/CPU", "variant": "int8", "status": "ok",
                           "candidate": {"graph": "split", "provider": "CPU"},
                           "by_length": {"25": {"rtf": 0.25, "lsd_db": 0.0}}}}
    offered = s04.split_candidates(cands, {"int8": {
        "status": "ok", "passed": False, "max_lsd_db": 2.1, "max_lsd_db_limit": 0.1}})
    assert "2.1 dB" in offered[1]["failed_checks"][0]
    assert selection.check_failures(offered[1], LabConfig().selection)
