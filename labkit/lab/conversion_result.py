"""What stage 02 (labkit.lab.s02_ort_conversion) returns: variant -> :class:`VariantRecord`.

Typed for readers and checkers only: a plain dict at run time, so the record the stage
writes is the same JSON, key for key."""
from __future__ import annotations

from typing import Any, TypedDict


class VariantRecord(TypedDict, total=False):
    """One variant's run (``run_variant``); a variant whose model is not provisioned holds
    ``skipped`` alone."""

    #: why the variant was not run
    skipped: str
    #: its model file, and the token count of each length it was timed at
    model: str
    tokens: dict[str, int]
    #: toggles a notebook asked for that do nothing on this machine (said, not timed)
    not_screened: dict[str, str]
    #: the one-change screen: candidate -> row; its A/A band; what was combined, what not
    screen: dict[str, dict[str, Any]]
    screen_noise_band: list[float]
    taken: list[str]
    rejected: dict[str, dict[str, Any]]
    #: default vs best, warm, per length: medians, ratio, interval, drift, the ruler's verdict
    warm: dict[str, dict[str, Any]]
    #: the audio behind the warm drift, for players (not recorded)
    _audio: dict[str, dict[int, Any]]
    #: labkit.measure.profile of default and best
    profile: dict[str, dict[str, Any]]
    #: cold starts in fresh processes, their ratios and the ceiling on what a cache can save
    cold: dict[str, Any]
    cold_ratio: dict[str, dict[str, Any]]
    cold_ceiling: dict[str, Any]
    #: Comparison.to_dict() of every timing, by what it compared
    comparisons: dict[str, dict[str, Any]]
    #: the best session (SessionConfig as a dict), the drift bound, the targets met or not
    best_session: dict[str, Any]
    max_lsd_db: float
    targets: dict[str, bool]


ConversionResult = dict[str, VariantRecord]
