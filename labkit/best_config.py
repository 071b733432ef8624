"""Which configuration the endpoint serves: artifacts/best.json under explicit settings.

``best.json`` (written by the journal) holds ``{"config": <LabConfig dict>, "provenance":
{...}, "runner_up": {...}}``. The server builds ``LabConfig.from_dict(best["config"])``
and lays over it every setting of the config it was started with that differs from
LabConfig's defaults (a YAML file, ``-s key=value``, the environment): what you say
explicitly wins over what the journal picked. The ``serve`` section always comes from
the start-up config, never from best.json. Without best.json: the start-up config, with
a logged warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.config import ConfigError, LabConfig, ServeConfig

log = logging.getLogger("labkit.best_config")


@dataclass
class Served:
    cfg: LabConfig
    #: "best.json" or "defaults"
    source: str
    best_path: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the settings laid over best.json (dotted keys)
    overrides: dict[str, Any] = field(default_factory=dict)
    #: best.json itself, when it was used
    best: dict[str, Any] = field(default_factory=dict)

    @property
    def public_config(self) -> dict[str, Any]:
        """The config without secrets (the API key)."""
        data = self.cfg.to_dict()
        data["serve"] = {k: v for k, v in data["serve"].items() if k != "api_key"}
        return data

    @property
    def config_hash(self) -> str:
        data = self.cfg.to_dict()
        data.pop("serve")  # where it listens does not change the audio
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def header(self) -> str:
        """The ``X-Kokoro-Config`` value: hash and where the config came from."""
        run = self.provenance.get("run_id") if isinstance(self.provenance, dict) else None
        tail = f"; run={run}" if run else ""
        return f"{self.config_hash}; source={self.source}{tail}"


_SECTIONS = ("session", "text", "chunking", "pipeline", "selection", "serve")


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    """Top-level sections to dotted keys; dict-valued settings inside them stay whole."""
    out = {}
    for key, value in data.items():
        if key in _SECTIONS and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def explicit_settings(cfg: LabConfig) -> dict[str, Any]:
    """Dotted settings of ``cfg`` that were given explicitly (``cfg.given``: even at their
    default value) or differ from LabConfig's defaults."""
    flat = _flatten(cfg.to_dict())
    default = _flatten(LabConfig().to_dict())
    given = {k if k in flat else k.split(".", 1)[0] for k in cfg.given}
    return {k: v for k, v in flat.items() if k in given or default.get(k, object()) != v}


def resolve(cfg: LabConfig, best_json: str | None = None) -> Served:
    """The config to serve. ``best_json``: a path, None for ``cfg.serve.best_json``,
    or "" to ignore best.json."""
    path_str = cfg.serve.best_json if best_json is None else best_json
    if not path_str:
        log.warning("best.json disabled: serving the start-up configuration")
        return Served(cfg, "defaults")
    path = cfg.resolve(path_str)
    if not path.exists():
        log.warning("%s not found: serving the start-up configuration (defaults plus explicit "
                    "settings); run `make journal` to have the lab pick the best one", path)
        return Served(cfg, "defaults", str(path))
    try:
        best = json.loads(Path(path).read_text())
        if not isinstance(best, dict) or not isinstance(best.get("config"), dict):
            raise ConfigError('expected {"config": {...}, "provenance": {...}}')
        base = LabConfig.from_dict(best["config"])
    except (json.JSONDecodeError, ConfigError) as exc:
        raise ConfigError(f"{path}: cannot use it as the served configuration: {exc}") from None
    overrides = {k: v for k, v in explicit_settings(cfg).items() if not k.startswith("serve.")}
    merged = base.with_overrides(overrides) if overrides else base
    merged.serve = cfg.serve
    run = (best.get("provenance") or {}).get("run_id", "?")
    if merged.model_path and not merged.resolve(merged.model_path).exists():
        raise ConfigError(
            f"{path} (run {run}) serves the model file {merged.model_path}, which no longer "
            "exists (its run folder was removed?): rerun `make journal`, or start with "
            "`-s serve.best_json=` to serve the defaults (the shipped int8 model)")
    log.info("serving %s (run %s)%s", path, run,
             f" with explicit settings {overrides}" if overrides else "")
    return Served(merged, "best.json", str(path), best.get("provenance") or {}, overrides, best)


#: the settings that say which model runs and how its session is built (what stages 02 and
#: 03 earn): a later stage whose answer depends on the model's speed (05's chunking: how
#: small a piece can be and still be ready in time) measures on them (:func:`earned_model`)
MODEL_SETTINGS = ("variant", "model_path")
MODEL_SECTIONS = ("session.",)


def earned_model(cfg: LabConfig, best_json: str | None = None) -> tuple[dict[str, Any], str]:
    """The model best.json picked and its session settings (:data:`MODEL_SETTINGS`,
    ``session.*`` of its ``overrides``, as stage 07 takes the combination), as dotted
    overrides of ``cfg``, and where they came from in a few words. No best.json, or one that
    picked nothing of the kind or whose model file is gone: no override, and the words say
    why. (A stage's config is a whole file, every setting in it given, so "explicit wins" as
    :func:`resolve` has it would always keep the configured model: a stage opts out with its
    own parameter instead.)"""
    try:
        served = resolve(cfg, best_json)
    except ConfigError as exc:
        return {}, f"the configured model: best.json cannot be used ({exc})"
    if served.source != "best.json":
        return {}, "the configured model: no best.json"
    run = served.provenance.get("run_id", "?")
    own = _flatten(cfg.to_dict())
    out = {k: v for k, v in _flatten(served.best.get("overrides") or {}).items()
           if (k in MODEL_SETTINGS or k.startswith(MODEL_SECTIONS)) and own.get(k, object()) != v}
    if not out:
        return {}, f"the configured model: best.json (run {run}) picked no other"
    return out, f"best.json (run {run})"


def earned_speed(cfg: LabConfig, best_json: str | None = None) -> tuple[float, str]:
    """How many times faster than ``cfg``'s model the model best.json picked ran where it
    was picked (the ratio of the choice that set its ``variant``, measured against ``cfg``'s
    variant), and where that figure comes from; (1.0, why) when there is no such pick."""
    picks, source = earned_model(cfg, best_json)
    if "variant" not in picks:
        return 1.0, source
    served = resolve(cfg, best_json)
    for choice in served.best.get("choices") or []:
        if (choice.get("overrides") or {}).get("variant") == picks["variant"]:
            if choice.get("baseline") != cfg.variant or not choice.get("ratio"):
                break
            return float(choice["ratio"]), (f"{picks['variant']}, {float(choice['ratio']):.2f}x "
                                            f"{cfg.variant} in {choice.get('stage')} of {source}")
    return 1.0, f"{source}: no speed of {picks['variant']} against {cfg.variant} recorded"


#: which model a stage measures on (:func:`model_for`): the configuration's own, or the one
#: best.json picked
MODEL_CHOICES = ("configured", "earned")


def model_for(cfg: LabConfig, which: str) -> tuple[LabConfig, dict[str, Any]]:
    """``cfg`` on the model ``which`` names (:data:`MODEL_CHOICES`), and what that model is:
    its variant and file, the settings taken from best.json and where they came from."""
    if which not in MODEL_CHOICES:
        raise ValueError(f"model={which!r}: expected one of {MODEL_CHOICES}")
    picks, source = earned_model(cfg) if which == "earned" else ({}, "the configured model")
    out = cfg.with_overrides(picks) if picks else cfg
    return out, {"variant": out.variant, "model_path": out.model_path, "settings": picks, "from": source}


def check_limits(scfg: ServeConfig) -> None:
    """Every serve limit is a positive number (a clear error at start-up otherwise)."""
    for name in ("max_body_bytes", "max_connections", "max_input_chars"):
        value = getattr(scfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"serve.{name}={value!r}: must be an integer >= 1")
    for name in ("body_timeout_s", "header_timeout_s", "keep_alive_s", "queue_timeout_s"):
        value = getattr(scfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"serve.{name}={value!r}: must be a number of seconds > 0")
