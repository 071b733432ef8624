"""labkit.engine.provider_options: option values as ORT's strings, and providers_for using them."""
from __future__ import annotations

import pytest

from labkit.config import ConfigError, SessionConfig
from labkit.engine import sessions
from labkit.engine.provider_options import (COREML, CoreMLOptionError, ProviderOptionError,
                                            ort_option_values)


@pytest.mark.parametrize("value, want", [(True, "1"), (False, "0"), (1, "1"), (0, "0"),
                                         ("true", "1"), ("False", "0"), ("1", "1"), ("0", "0")])
def test_coreml_flags_become_one_and_zero(value, want):
    assert ort_option_values(COREML, {"RequireStaticInputShapes": value}) == {
        "RequireStaticInputShapes": want}


def test_coreml_values_are_checked():
    assert ort_option_values(COREML, {"MLComputeUnits": "ALL", "ModelFormat": "MLProgram"}) == {
        "MLComputeUnits": "ALL", "ModelFormat": "MLProgram"}
    with pytest.raises(CoreMLOptionError, match="allowed are 0/1"):
        ort_option_values(COREML, {"EnableOnSubgraphs": 2})
    with pytest.raises(CoreMLOptionError, match="unknown CoreMLExecutionProvider option 'UseCPUOnly'"):
        ort_option_values(COREML, {"UseCPUOnly": True})
    with pytest.raises(CoreMLOptionError, match="MLComputeUnits=True"):
        ort_option_values(COREML, {"MLComputeUnits": True})
    assert issubclass(CoreMLOptionError, ConfigError)


def test_other_providers_get_flags_as_one_and_zero():
    out = ort_option_values("CUDAExecutionProvider", {"do_copy_in_default_stream": True,
                                                      "cudnn_conv_use_max_workspace": False,
                                                      "device_id": 0, "arena": "kNextPowerOfTwo"})
    assert out == {"do_copy_in_default_stream": "1", "cudnn_conv_use_max_workspace": "0",
                   "device_id": "0", "arena": "kNextPowerOfTwo"}
    with pytest.raises(ProviderOptionError, match="device_id: no value"):
        ort_option_values("CUDAExecutionProvider", {"device_id": None})


def test_providers_for_passes_yaml_true_as_one(monkeypatch):
    monkeypatch.setattr(sessions.ort, "get_available_providers",
                        lambda: [COREML, "CPUExecutionProvider"])
    s = SessionConfig(providers=[COREML, "CPUExecutionProvider"],
                      provider_options={COREML: {"RequireStaticInputShapes": True,
                                                 "MLComputeUnits": "CPUAndNeuralEngine"}})
    assert sessions.providers_for(s) == [
        (COREML, {"RequireStaticInputShapes": "1", "MLComputeUnits": "CPUAndNeuralEngine"}),
        "CPUExecutionProvider"]
    s.provider_options[COREML] = {"MLComputeUnits": "NPU"}
    with pytest.raises(CoreMLOptionError, match="MLComputeUnits='NPU'"):
        sessions.providers_for(s)
