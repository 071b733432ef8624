"""ONNX Runtime's CoreML execution provider: options, sweep points, static-shape models.

LabConfig holds provider options in ``session.provider_options["CoreMLExecutionProvider"]``;
they are checked *before* a session is made (:func:`validate_options`), so a typo is a
clear error naming the allowed keys and values rather than ORT's terse ``Unknown
option``. The sweep over these points is stage 04's (labkit.lab.accelerator_sweep); where a node
runs is read from ORT's own log (labkit.measure.placement).
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from labkit import files
from labkit.config import LabConfig, SessionConfig
from labkit.engine.provider_options import COREML_OPTIONS, validate_coreml
from labkit.engine.provider_options import CoreMLOptionError as CoreMLOptionError  # its callers raise it

PROVIDER = "CoreMLExecutionProvider"
CPU = "CPUExecutionProvider"

#: the CoreML EP's options and allowed values (they live with the conversion ORT's sessions use)
OPTIONS = COREML_OPTIONS
MODEL_FORMATS = OPTIONS["ModelFormat"]
COMPUTE_UNITS = OPTIONS["MLComputeUnits"]


# -- availability ------------------------------------------------------------------------
def platform_name() -> str:
    """``Darwin arm64``, ``Linux x86_64``: the words the skip reason uses."""
    return f"{platform.system()} {platform.machine()}".strip()


def coreml_available() -> bool:
    import onnxruntime as ort

    return PROVIDER in ort.get_available_providers()


def skip_reason() -> str:
    return f"{PROVIDER} not available on {platform_name()}"


# -- options -------------------------------------------------------------------------------
def validate_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """The options as the strings ORT takes, or a :class:`CoreMLOptionError` that names the
    unknown key (with the allowed keys) or the bad value (with the allowed values)."""
    return validate_coreml(options)


def provider_options(cfg: LabConfig) -> dict[str, str]:
    """The validated CoreML options of ``cfg`` (ModelCacheDirectory made absolute from the
    repository root, so the cache does not depend on the notebook's working directory)."""
    opts = validate_options(cfg.session.provider_options.get(PROVIDER))
    if "ModelCacheDirectory" in opts:
        opts["ModelCacheDirectory"] = str(cfg.resolve(opts["ModelCacheDirectory"]))
    return opts


def session_config(cfg: LabConfig, model_format: str | None = None,
                   compute_units: str | None = None, static_shapes: bool | None = None,
                   cache_dir: str | os.PathLike | None = None,
                   extra: Mapping[str, Any] | None = None) -> SessionConfig:
    """A copy of ``cfg.session`` that puts CoreML first (CPU takes what CoreML cannot), with
    the config's CoreML options overridden by the arguments given. Validated here."""
    opts: dict[str, Any] = dict(cfg.session.provider_options.get(PROVIDER) or {})
    if model_format is not None:
        opts["ModelFormat"] = model_format
    if compute_units is not None:
        opts["MLComputeUnits"] = compute_units
    if static_shapes is not None:
        opts["RequireStaticInputShapes"] = static_shapes
    if cache_dir is not None:
        opts["ModelCacheDirectory"] = str(cache_dir)
    opts.update(extra or {})
    checked = validate_options(opts)
    if "ModelCacheDirectory" in checked:
        checked["ModelCacheDirectory"] = str(cfg.resolve(checked["ModelCacheDirectory"]))
    s = SessionConfig(**{**asdict(cfg.session)})
    s.providers = [PROVIDER] + [p for p in s.providers if p != PROVIDER]
    if CPU not in s.providers:
        s.providers.append(CPU)
    s.provider_options = {**s.provider_options, PROVIDER: checked}
    s.validate()
    return s


def cpu_session_config(cfg: LabConfig) -> SessionConfig:
    """``cfg.session`` with the CPU provider only (the harness's baseline)."""
    s = SessionConfig(**{**asdict(cfg.session)})
    s.providers = [CPU]
    s.provider_options = {k: v for k, v in s.provider_options.items() if k == CPU}
    s.validate()
    return s


@dataclass
class SweepPoint:
    """One configuration of the sweep."""

    variant: str
    provider: str = PROVIDER
    model_format: str | None = "MLProgram"
    compute_units: str | None = "ALL"
    static_shapes: bool = False

    @property
    def label(self) -> str:
        if self.provider != PROVIDER:
            return f"{self.variant}/{self.provider.replace('ExecutionProvider', '')}"
        static = "/static" if self.static_shapes else ""
        return f"{self.variant}/{self.model_format}/{self.compute_units}{static}"


def sweep_points(variants: Iterable[str], formats: Iterable[str], compute_units: Iterable[str],
                 static_shapes: Iterable[bool] = (False,)) -> list[SweepPoint]:
    """The CoreML grid, every value checked up front (a bad value fails before any run)."""
    points = []
    for fmt in formats:
        validate_options({"ModelFormat": fmt})
    for cu in compute_units:
        validate_options({"MLComputeUnits": cu})
    for variant in variants:
        for fmt in formats:
            for cu in compute_units:
                for static in static_shapes:
                    points.append(SweepPoint(variant, PROVIDER, fmt, cu, bool(static)))
    return points


class StaticBudgetError(RuntimeError):
    """Writing a static-shape copy would take the copies past their disk budget."""


@dataclass
class StaticBudget:
    """A disk budget for the static-shape model copies (each is a whole model: ~3.6 GB for a
    full sweep on the Mac). :func:`static_model` reserves a copy's size before writing it and
    refuses with :class:`StaticBudgetError` past ``limit_bytes``; :meth:`remove` deletes
    every copy it wrote (the stage does, at its end)."""

    limit_bytes: int
    used_bytes: int = 0
    written: list = field(default_factory=list)

    @classmethod
    def gb(cls, limit_gb: float) -> "StaticBudget":
        if limit_gb is None or limit_gb < 0:
            raise ValueError(f"static_budget_gb={limit_gb!r}: a size in GB, >= 0")
        return cls(int(float(limit_gb) * 1e9))

    def reserve(self, nbytes: int, what: str) -> None:
        if self.used_bytes + nbytes > self.limit_bytes:
            raise StaticBudgetError(
                f"static-shape copy {what} ({nbytes / 1e9:.2f} GB) would take the copies to "
                f"{(self.used_bytes + nbytes) / 1e9:.2f} GB, over static_budget_gb="
                f"{self.limit_bytes / 1e9:g}: not written")
        self.used_bytes += nbytes

    def track(self, path: Path, reserved: int) -> None:
        size = path.stat().st_size
        self.used_bytes += size - reserved
        self.written.append(path)

    def remove(self) -> int:
        """Delete every copy this budget let through; returns the bytes freed."""
        freed = 0
        for path in self.written:
            try:
                freed += path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                pass
        self.written.clear()
        self.used_bytes = 0
        return freed

    def to_dict(self) -> dict[str, Any]:
        return {"limit_gb": self.limit_bytes / 1e9, "used_gb": self.used_bytes / 1e9,
                "files": [str(p) for p in self.written]}


def static_model(src: str | os.PathLike, n_tokens: int, out_dir: str | os.PathLike,
                 budget: StaticBudget | None = None) -> Path:
    """A copy of the model with ``tokens`` fixed to [1, n+2] (ORT's make_input_shape_fixed),
    for ``RequireStaticInputShapes``: CoreML then sees static shapes up to the duration
    predictor. Written once under ``out_dir``; with ``budget``, only within it (the copy's
    size is reserved first: :class:`StaticBudgetError` past it) and recorded for removal."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    out = Path(out_dir) / f"{Path(src).stem}.static{n_tokens}.onnx"
    if out.exists():
        if budget is not None and out not in budget.written:
            budget.track(out, 0)  # left by an earlier run: counted, and removed with the rest
        return out
    reserved = 0
    if budget is not None:
        reserved = Path(src).stat().st_size  # the copy is the whole model, re-serialized
        budget.reserve(reserved, out.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src))
    name = model.graph.input[0].name
    make_input_shape_fixed(model.graph, name, [1, int(n_tokens) + 2])
    fix_output_shapes(model)
    with files.atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    if budget is not None:
        budget.track(out, reserved)
    return out
