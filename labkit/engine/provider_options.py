"""Execution-provider options as the strings ONNX Runtime takes.

ORT wants every provider option as a string, and its flags as ``"1"``/``"0"``: a YAML
``true`` turned into ``"True"`` by ``str()`` is silently ignored. :func:`ort_option_values`
is the one conversion: CoreML's options are checked against :data:`COREML_OPTIONS` (an
unknown key or value is a clear error naming what is allowed, before any session is made);
other providers' values get the same flag handling (booleans -> "1"/"0").
"""
from __future__ import annotations

from typing import Any, Mapping

from labkit.config import ConfigError

COREML = "CoreMLExecutionProvider"

#: Every provider option the CoreML EP accepts (ORT's CoreMLOptions::ValidateAndParseProviderOption,
#: plus ModelCacheDirectory) and its allowed values; ``None`` means a free-form path.
COREML_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "ModelFormat": ("MLProgram", "NeuralNetwork"),
    "MLComputeUnits": ("CPUOnly", "CPUAndGPU", "CPUAndNeuralEngine", "ALL"),
    "RequireStaticInputShapes": ("0", "1"),
    "EnableOnSubgraphs": ("0", "1"),
    "SpecializationStrategy": ("Default", "FastPrediction"),
    "ProfileComputePlan": ("0", "1"),
    "AllowLowPrecisionAccumulationOnGPU": ("0", "1"),
    "ModelCacheDirectory": None,
}


class ProviderOptionError(ConfigError):
    """A provider option is unknown or has a value the provider does not accept."""


class CoreMLOptionError(ProviderOptionError):
    """A CoreML provider option is unknown or has a value the EP does not accept."""


def as_flag(provider: str, key: str, value: Any) -> str:
    """``True``/``1``/``"true"``/``"yes"``/``"on"`` -> ``"1"``; the false ones -> ``"0"``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) and value in (0, 1):
        return str(value)
    text = str(value).strip()
    if text.lower() in ("true", "yes", "on"):
        return "1"
    if text.lower() in ("false", "no", "off"):
        return "0"
    if text in ("0", "1"):
        return text
    error = CoreMLOptionError if provider == COREML else ProviderOptionError
    raise error(f"{provider} option {key}={value!r}: allowed are 0/1 (or true/false)")


def validate_coreml(options: Mapping[str, Any] | None) -> dict[str, str]:
    """CoreML's options as the strings ORT takes, or a :class:`CoreMLOptionError` that names
    the unknown key (with the allowed keys) or the bad value (with the allowed values)."""
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        if key not in COREML_OPTIONS:
            raise CoreMLOptionError(
                f"unknown {COREML} option {key!r}; allowed keys: {', '.join(COREML_OPTIONS)}")
        allowed = COREML_OPTIONS[key]
        if allowed is None:  # a path
            if value is None or not str(value).strip():
                raise CoreMLOptionError(f"{COREML} option {key}: expected a directory path")
            out[key] = str(value)
        elif allowed == ("0", "1"):
            out[key] = as_flag(COREML, key, value)
        else:
            if str(value) not in allowed:
                raise CoreMLOptionError(
                    f"{COREML} option {key}={value!r}: allowed are {', '.join(allowed)}")
            out[key] = str(value)
    return out


def ort_option_values(name: str, options: Mapping[str, Any] | None) -> dict[str, str]:
    """The options of provider ``name`` as ORT's strings: CoreML's validated against its
    table; any provider's booleans as "1"/"0"; a missing value (None) is an error."""
    if name == COREML:
        return validate_coreml(options)
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        if value is None:
            raise ProviderOptionError(f"{name} option {key}: no value given")
        out[str(key)] = as_flag(name, key, value) if isinstance(value, bool) else str(value)
    return out
