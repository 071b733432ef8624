import re

import pytest
import yaml

from labkit.config import ENV_VARS, ConfigError, LabConfig
from labkit.engine.registries import check_config
from labkit.engine.rewrites import REWRITES
from labkit.engine.sessions import PLUGIN_PACKAGES


def test_round_trip_through_yaml(tmp_path):
    cfg = LabConfig().with_overrides({"voice": "bf_emma", "session.intra_op_threads": 1,
                                      "chunking.max_tokens": 300,
                                      "session.provider_options": {"CPUExecutionProvider": {}}})
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = LabConfig.from_yaml(path)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


def test_overrides_from_strings_are_typed():
    cfg = LabConfig().with_overrides(["speed=1.25", "session.denormal_as_zero=true",
                                      "session.providers=[CPUExecutionProvider]"])
    assert cfg.speed == 1.25
    assert cfg.session.denormal_as_zero is True
    assert cfg.session.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("key", ["nope", "session.nope", "voice.sub"])
def test_unknown_setting_is_named(key):
    with pytest.raises(ConfigError, match="unknown setting"):
        LabConfig().with_overrides({key: 1})


def test_unknown_key_in_yaml_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"session": {"intra_op_thread": 2}}))
    with pytest.raises(ConfigError, match="session.intra_op_thread"):
        LabConfig.from_yaml(path)


def test_environment_is_read_in_load_only(tmp_path):
    env = {"KOKORO_LAB_MODEL": "/x/model.onnx", "KOKORO_LAB_VOICES": "/x/v.npz",
           "KOKORO_LAB_API_KEY": "secret"}
    cfg = LabConfig.load(env=env, overrides={"voice": "am_adam"})
    assert cfg.model_path == "/x/model.onnx"
    assert cfg.voices_path == "/x/v.npz"
    assert cfg.serve.api_key == "secret"
    assert cfg.voice == "am_adam"
    assert set(ENV_VARS) >= set(env)


@pytest.mark.parametrize("override,match", [
    ({"session.intra_op_threads": 0}, "intra_op_threads"),
    ({"session.inter_op_threads": -1}, "inter_op_threads"),
    ({"session.graph_optimization_level": "max"}, "allowed are"),
    ({"session.execution_mode": "async"}, "allowed are"),
    ({"speed": 3.0}, "0.5 to 2.0"),
])
def test_validation_names_the_setting(override, match):
    with pytest.raises(ConfigError, match=match):
        LabConfig().with_overrides(override).validate()


@pytest.mark.parametrize("override,match", [
    ({"session.rewrites": ["fast_math"]},
     "session.rewrites: unknown 'fast_math'; allowed are pow2_mul, instance_norm, conv1d_as_2d, "
     "snake_fold, reflect_pad"),
    ({"session.plugin_eps": ["cuda"]}, "session.plugin_eps: unknown 'cuda'; allowed are webgpu, mlx"),
    ({"split.b_rewrites": ["nope"]}, "split.b_rewrites: unknown 'nope'; allowed are pow2_mul"),
    ({"split.a_session": {"plugin_eps": ["cuda"]}}, "session.plugin_eps: unknown 'cuda'"),
])
def test_registry_names_are_checked_by_the_engine(override, match):
    """Rewrites and plugin EPs are named by the engine's registries (labkit.engine.registries):
    the config section alone accepts any name, check_config names the setting and the
    registry's names."""
    cfg = LabConfig().with_overrides(override).validate()
    with pytest.raises(ConfigError, match=re.escape(match)):
        check_config(cfg)


def test_the_registries_are_the_lists():
    check_config(LabConfig().with_overrides({"session.rewrites": list(REWRITES),
                                             "session.plugin_eps": list(PLUGIN_PACKAGES),
                                             "split.b_rewrites": list(REWRITES)}))
