"""ONNX Runtime for Kokoro: session options, providers, the one session factory and the
one feeds builder. Every ``InferenceSession`` in labkit is made by :func:`new_session`.

Kokoro's graph: ``tokens`` int64 [1, n + 2] (0-padded at both ends; some exports name it
``input_ids``), ``style`` float [1, 256], ``speed`` float [1]; output ``audio`` float
[samples] at 24 kHz. Position embeddings hold 512 rows, so at most 510 phoneme tokens
per call. The style row is ``voice[len(tokens) - 1]`` of the (510, 1, 256) voice pack.
"""
from __future__ import annotations

import importlib
import os
import platform
import threading
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from labkit.config import ConfigError, SessionConfig
from labkit.engine.provider_options import ort_option_values
from labkit.host.machine import session_threads
from labkit.kokoro import TOKEN_INPUTS


_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "layout": getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT",
                      ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


#: session settings ONNX Runtime honours only on x86, and why: elsewhere setting one changes
#: nothing, and timing it measures noise
X86_ONLY_SETTINGS = {
    "denormal_as_zero": "ONNX Runtime sets flush-to-zero and denormals-are-zero only through "
                        "x86's SSE control register (SetDenormalAsZero in "
                        "onnxruntime/core/common/denormal.cc); on ARM64 it returns without "
                        "doing anything (in the 1.31.1 macOS arm64 wheel it is `mov w0, #0; ret`)",
}
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")


def ineffective_settings(names: Iterable[str], arch: str) -> dict[str, str]:
    """Which of the SessionConfig fields ``names`` do nothing on a ``platform.machine()`` of
    ``arch``, each with the reason."""
    if arch.lower() in X86_MACHINES:
        return {}
    return {n: X86_ONLY_SETTINGS[n] for n in names if n in X86_ONLY_SETTINGS}


#: ONNX Runtime's session config key for spinning intra-op threads ("1", its default, or "0")
SPINNING = "session.intra_op.allow_spinning"


def session_options(s: SessionConfig, optimized_model_path: str | None = None) -> ort.SessionOptions:
    """SessionOptions from the session section of LabConfig (validated first)."""
    s.validate()
    so = ort.SessionOptions()
    so.graph_optimization_level = _OPT_LEVELS[s.graph_optimization_level]
    so.intra_op_num_threads = session_threads(s)  # "auto": from the machine
    so.inter_op_num_threads = s.inter_op_threads
    so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if s.execution_mode == "parallel"
                         else ort.ExecutionMode.ORT_SEQUENTIAL)
    so.enable_cpu_mem_arena = s.enable_mem_arena
    so.enable_mem_pattern = s.enable_mem_pattern
    if s.denormal_as_zero:
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.add_session_config_entry(SPINNING, "1" if s.allow_spinning else "0")
    if optimized_model_path:
        so.optimized_model_filepath = str(optimized_model_path)
    so.log_severity_level = 3
    return so


def providers_for(s: SessionConfig) -> list:
    """The provider list ORT takes: names, with options where LabConfig gives some.

    Unknown names get a clear error naming what this ONNX Runtime build has; option values
    become ORT's strings ("1"/"0" for flags) and CoreML's are checked first."""
    available = ort.get_available_providers()
    out = []
    for name in s.providers:
        if name not in available:
            raise ConfigError(
                f"provider {name!r} is not available in this onnxruntime build "
                f"({ort.__version__}); available: {', '.join(available)}"
            )
        opts = s.provider_options.get(name)
        out.append((name, ort_option_values(name, opts)) if opts else name)
    return out


# -- plugin execution providers ----------------------------------------------------------
#: short name (SessionConfig.plugin_eps) -> the PyPI package holding the plugin library: the
#: one list of plugin names (a config's are checked against it: labkit.engine.registries).
#: The packages do not share an API (read from their macOS wheels): onnxruntime-ep-webgpu
#: 0.4.0 has get_library_path() and get_ep_names() / get_ep_name(); onnxruntime-ep-mlx
#: 0.31.0 has library_path(), ep_name() and EP_NAME (:func:`plugin_library` reads both)
PLUGIN_PACKAGES = {"webgpu": "onnxruntime_ep_webgpu", "mlx": "onnxruntime_ep_mlx"}
PLUGIN_PIP = {"webgpu": "onnxruntime-ep-webgpu", "mlx": "onnxruntime-ep-mlx"}
#: what each plugin needs (for the reason a skip gives)
PLUGIN_NEEDS = {"webgpu": "a GPU through Metal (macOS), Vulkan (Linux) or D3D12 (Windows)",
                "mlx": "macOS 14+ on Apple silicon (arm64)"}
_REGISTERED: dict[str, list[str]] = {}
_REGISTER_LOCK = threading.Lock()
#: how a plugin package is imported (tests put a fake here)
import_package = importlib.import_module


class PluginEPUnavailable(ConfigError):
    """A plugin EP's package is not installed, its library does not register, or it
    enumerates no device here. ``reason`` is the text a skipped record carries."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"plugin execution provider {name!r}: {reason}")
        self.name = name
        self.reason = reason


#: (library path, EP names) accessors each plugin package shape offers, in the order tried
_LIBRARY_ACCESSORS = ("get_library_path", "library_path")
_EP_NAME_ACCESSORS = ("get_ep_names", "get_ep_name", "ep_name", "EP_NAME")


def plugin_library(name: str, pkg) -> tuple[str, list[str]]:
    """The plugin library's path and the EP names it provides, from package ``pkg`` of
    plugin ``name`` in whichever shape it has (webgpu's ``get_library_path()`` /
    ``get_ep_names()``, mlx's ``library_path()`` / ``ep_name()`` / ``EP_NAME``). A package
    with neither shape, or whose accessor fails (a broken wheel), is
    :class:`PluginEPUnavailable` with the reason, never an AttributeError."""
    lib_attr = next((a for a in _LIBRARY_ACCESSORS if hasattr(pkg, a)), None)
    ep_attr = next((a for a in _EP_NAME_ACCESSORS if hasattr(pkg, a)), None)
    for found, wanted in ((lib_attr, _LIBRARY_ACCESSORS), (ep_attr, _EP_NAME_ACCESSORS)):
        if found is None:
            raise PluginEPUnavailable(
                name, f"package {PLUGIN_PIP[name]} has none of {', '.join(wanted)} "
                      "(an API this lab does not know: another release?)")
    try:
        path = str(getattr(pkg, lib_attr)())
        value = getattr(pkg, ep_attr)
        value = value() if callable(value) else value
    except Exception as exc:  # noqa: BLE001 - a broken install's own words are the reason
        raise PluginEPUnavailable(name, f"package {PLUGIN_PIP[name]} is broken "
                                        f"({type(exc).__name__}: {exc})") from None
    names = [value] if isinstance(value, str) else list(value)
    return path, names


def register_plugin(name: str) -> list[str]:
    """Register plugin ``name``'s library with ONNX Runtime (once per process) and return
    the EP names it provides. Raises :class:`PluginEPUnavailable` when its package is
    missing, has an API this lab does not know, or the library does not load."""
    if name not in PLUGIN_PACKAGES:
        raise ConfigError(f"plugin EP {name!r}: known are {', '.join(PLUGIN_PACKAGES)}")
    with _REGISTER_LOCK:
        if name in _REGISTERED:
            return _REGISTERED[name]
        try:
            pkg = import_package(PLUGIN_PACKAGES[name])
        except ImportError:
            raise PluginEPUnavailable(name, f"package {PLUGIN_PIP[name]} not installed "
                                            f"(it needs {PLUGIN_NEEDS[name]})") from None
        path, names = plugin_library(name, pkg)
        try:
            ort.register_execution_provider_library(name, path)
        except Exception as exc:  # noqa: BLE001 - the library's own words are the reason
            raise PluginEPUnavailable(name, f"library did not register ({exc})") from None
        _REGISTERED[name] = names
        return names


def plugin_devices(name: str) -> list:
    """The ``OrtEpDevice``s plugin ``name`` enumerates here (registered first); raises
    :class:`PluginEPUnavailable` when there is none."""
    names = register_plugin(name)
    devices = [d for d in ort.get_ep_devices() if d.ep_name in names]
    if not devices:
        raise PluginEPUnavailable(
            name, f"{', '.join(names)} registered but enumerated no device on "
                  f"{platform.system()} {platform.machine()} (it needs {PLUGIN_NEEDS[name]})")
    return devices


def device_info(device) -> dict[str, str]:
    """What an OrtEpDevice says about itself, for a record."""
    hw = device.device
    return {"ep": device.ep_name, "ep_vendor": getattr(device, "ep_vendor", ""),
            "type": str(getattr(hw.type, "name", hw.type)), "vendor": str(hw.vendor)}


def add_plugin_providers(so: ort.SessionOptions, s: SessionConfig) -> list[dict[str, str]]:
    """Put each of ``s.plugin_eps`` on ``so`` (its devices, with the options LabConfig
    gives under its EP name); returns the devices chosen."""
    chosen = []
    for name in s.plugin_eps:
        devices = plugin_devices(name)
        opts = s.provider_options.get(devices[0].ep_name)
        so.add_provider_for_devices(devices, ort_option_values(devices[0].ep_name, opts))
        chosen += [device_info(d) for d in devices]
    return chosen


def new_session(model: str | os.PathLike | bytes | onnx.ModelProto,
                s: SessionConfig | None = None, *,
                configure: Callable[[ort.SessionOptions], Any] | None = None,
                ) -> ort.InferenceSession:
    """THE session factory: an InferenceSession of ``model`` (a path, serialized bytes or
    a ModelProto) with the settings of ``s`` (default: LabConfig's session defaults).
    ``configure(so)`` may adjust the options before the session is made (profiling, an
    ORT-format load, a saved optimized graph, verbose logging).

    With ``s.plugin_eps``, each plugin's library is registered and its devices added
    (``add_provider_for_devices``); ONNX Runtime then gives the CPU what they cannot run,
    and ``s.providers`` is not passed (ORT would let it override the devices)."""
    s = s or SessionConfig()
    so = session_options(s)
    if configure is not None:
        configure(so)
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    if s.plugin_eps:
        add_plugin_providers(so, s)
        return ort.InferenceSession(model, sess_options=so)
    return ort.InferenceSession(model, sess_options=so, providers=providers_for(s))


def probe_config(threads: int = 1) -> SessionConfig:
    """Settings for probing a graph's values: optimizer off (the graph as written), CPU."""
    return SessionConfig(graph_optimization_level="disable", intra_op_threads=threads)


def input_names(session_or_names: ort.InferenceSession | Iterable[str]) -> set[str]:
    if hasattr(session_or_names, "get_inputs"):
        return {i.name for i in session_or_names.get_inputs()}
    return set(session_or_names)


def kokoro_feeds(tokens: Sequence[int], style: np.ndarray, speed: float = 1.0,
                 names: Iterable[str] | ort.InferenceSession = ("tokens",)) -> dict[str, np.ndarray]:
    """THE feeds builder: Kokoro's inputs for phoneme ``tokens`` (without the pads), a
    style row (any shape holding 256 floats) and ``speed``, keyed by the names the model
    uses (``names``: its input names or the session itself)."""
    have = input_names(names)
    token_name = next((n for n in TOKEN_INPUTS if n in have), "tokens")
    return {token_name: np.array([[0, *[int(t) for t in tokens], 0]], dtype=np.int64),
            "style": np.asarray(style, dtype=np.float32).reshape(1, -1),
            "speed": np.array([speed], dtype=np.float32)}


def for_session(feeds: dict[str, np.ndarray], session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """``feeds`` with the token input under the name ``session``'s model uses."""
    have = input_names(session)
    name = next((n for n in TOKEN_INPUTS if n in feeds), None)
    want = next((n for n in TOKEN_INPUTS if n in have), name)
    if name is None or name == want:
        return feeds
    out = dict(feeds)
    out[want] = out.pop(name)
    return out


def style_row(pack: np.ndarray, n_tokens: int) -> np.ndarray:
    """The style row a voice pack gives ``n_tokens`` phoneme tokens: ``pack[n - 1]``."""
    return np.asarray(pack[min(max(int(n_tokens), 1), len(pack)) - 1], dtype=np.float32).reshape(1, -1)


def n_tokens(feeds: dict[str, np.ndarray]) -> int:
    """Phoneme tokens in a feeds dict (without the two pads)."""
    name = next(n for n in TOKEN_INPUTS if n in feeds)
    return int(feeds[name].shape[1]) - 2


def probe_feeds(n: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs for shape probes and rewrite checks when no real ones are
    given (token ids from the phoneme vocabulary, a plausible style row)."""
    rng = np.random.default_rng(seed)
    ids = [16, 43, 156, 102, 4, 62, 61, 16, 83, 56, 156, 51, 158, 46, 16, 48, 156, 86,
           123, 4, 57, 135, 156, 69]
    return kokoro_feeds([ids[i % len(ids)] for i in range(n)],
                        rng.normal(0.0, 0.15, size=(1, 256)))
