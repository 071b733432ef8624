"""The configuration checked against the engine's registries: names a LabConfig may hold
that only the engine knows.

labkit.config is the bottom layer (the engine imports it), so it cannot read the lists
of what exists; each list is written once, in its registry, and checked here:

* graph rewrites (``session.rewrites``, ``split.b_rewrites``): labkit.engine.rewrites.REWRITES;
* plugin execution providers (``session.plugin_eps``): labkit.engine.sessions.PLUGIN_PACKAGES;
* sanitization rules (``text.disable``): labkit.engine.text.RULES.

:func:`check_config` is called wherever a configuration is loaded for use (the command
line, the batch runner, every stage, the endpoint's start), beside ``LabConfig.validate``
for what the config can judge alone; the engine checks again where it uses the names
(:func:`labkit.engine.text.sanitize`).
"""
from __future__ import annotations

from typing import Iterable

from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.engine.rewrites import REWRITES
from labkit.engine.sessions import PLUGIN_PACKAGES
from labkit.engine.text import check_rule_names


def _check_names(setting: str, given: Iterable[str], known: Iterable[str]) -> None:
    known = list(known)
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ConfigError(f"{setting}: unknown {', '.join(map(repr, unknown))}; "
                          f"allowed are {', '.join(known)}")


def check_session(s: SessionConfig) -> None:
    """A session section's plugin EPs and rewrites, by name."""
    _check_names("session.plugin_eps", s.plugin_eps, PLUGIN_PACKAGES)
    _check_names("session.rewrites", s.rewrites, REWRITES)


def check_config(cfg: LabConfig) -> LabConfig:
    """``cfg``, every name in it that one of the engine's registries holds checked (a
    ConfigError naming the setting and what is allowed): the session's and each split
    part's plugin EPs and rewrites, part B's own rewrites, and the disabled text rules."""
    check_session(cfg.session)
    _check_names("split.b_rewrites", cfg.split.b_rewrites, REWRITES)
    for part in ("a", "b"):
        check_session(cfg.split.session_for(cfg.session, part))
    check_rule_names(cfg.text)
    return cfg
