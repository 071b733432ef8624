"""What stage 04 (labkit.lab.s04_coreml) measured: :class:`CoreMLResult`, the typed result
its ``run`` returns and its ``record``, tables and plots read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CoreMLResult:
    """Stage 04's three experiments: the op audit (labkit.lab.accelerator_audit), the CoreML sweep
    over the whole graph (labkit.lab.accelerator_sweep) and the split model's check with its
    provider candidates (labkit.lab.accelerator_split)."""

    #: the op audit: variant -> its audit (labkit.optimize.op_audit), the variants not
    #: audited (-> why), the CoreML op tables read and how they differ from the pinned ones
    audits: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    tables_vs_pinned: dict[str, Any] = field(default_factory=dict)
    #: the reference model the audio is compared with: ``variant``, ``path``, ``note``
    reference: dict[str, str] = field(default_factory=dict)
    #: the sweep: one result per configuration, its flat rows (tokens by configuration),
    #: whether CoreML exists here, the platform, the sweep's status and the recommendation
    results: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    available: bool = False
    platform: str = ""
    sweep_status: str = ""
    recommendation: dict[str, Any] = field(default_factory=dict)
    #: the static-shape copies' disk budget, what was written and freed
    static_copies: dict[str, Any] = field(default_factory=dict)
    #: the split: variant -> its check; candidate label -> its measurement; the buckets
    split: dict[str, dict] = field(default_factory=dict)
    candidates: dict[str, dict] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=list)
    #: what the screen decided (labkit.lab.accelerator_sweep.screen_then_confirm); None: no screen
    screen: dict[str, Any] | None = None
    #: every candidate known, whole-graph sweep and split alike (metrics.providers)
    providers: dict[str, Any] = field(default_factory=dict)
