"""The check of every configured name that an engine registry owns: a name a config
gives (``text.disable`` ...) must be one the registry holds, and the registry is the one
place those names are written (labkit.config cannot import the engine, so it does not
check them).

:func:`check_config` is called where a config is loaded to be used (the command line,
the endpoint) so that an unknown name fails there, before any work; the engine checks
again where it uses the names (:func:`labkit.engine.text.sanitize`).
"""
from __future__ import annotations

from labkit.config import LabConfig
from labkit.engine.text import check_rule_names


def check_config(cfg: LabConfig) -> LabConfig:
    """``cfg``, its registry-backed names checked: :class:`labkit.config.ConfigError`
    names the first unknown one and what is allowed. One line per registry, each calling
    the check that lives beside the registry's names."""
    check_rule_names(cfg.text)  # text.disable: labkit.engine.text.RULES
    return cfg
