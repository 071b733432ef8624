"""What stage 03 (labkit.lab.s03_quantization) measured: :class:`QuantizationResult`, the
typed result its ``run`` returns and its ``record``, tables and listening read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labkit.lab.listen import Listening
from labkit.measure.compare import Comparison


@dataclass
class QuantizationResult:
    """Stage 03's run: the inputs, the builds, the sensitivity sweep, the bench and what
    was chosen from it. ``rows`` are the bench's rows by variant (labkit.measure.variant_bench,
    with the ruler's verdict under ``"quality"``), the reference's row first."""

    #: the reference model: ``variant``, ``path`` and ``note`` (where it came from)
    reference: dict[str, str] = field(default_factory=dict)
    #: the shipped variant every variant is timed against
    baseline: str = "int8"
    #: corpus -> {utterance id: tokens}, and each choosing corpus's overlap with the held-out one
    corpora: dict[str, Any] = field(default_factory=dict)
    #: variant -> its build (labkit.optimize.quantize.Built.to_dict)
    builds: dict[str, dict] = field(default_factory=dict)
    #: the sweep's spec, per-family costs, the mixed plan and the development ids; None: not run
    sensitivity: dict[str, Any] | None = None
    rows: dict[str, dict] = field(default_factory=dict)
    #: probe length (tokens) -> the speed comparison against the baseline there
    comparisons: dict[int, Comparison] = field(default_factory=dict)
    #: the probe length whose comparison the journal chooses on
    speed_tokens: int = 120
    token_lengths: list[int] = field(default_factory=list)
    #: variant -> (speed-up over the reference, the ruler's masked LSD dB)
    pareto_points: dict[str, tuple[float, float]] = field(default_factory=dict)
    pareto_front: list[str] = field(default_factory=list)
    #: the listening sentence: ``id``, ``text`` and ``page`` (the HTML listening table)
    listen: dict[str, str] = field(default_factory=dict)
    #: variant -> its audio of the listening sentence
    clips: dict[str, np.ndarray] = field(default_factory=dict)
    #: model -> its ORT profile summary (labkit.measure.profile)
    profiles: dict[str, dict] = field(default_factory=dict)
    speed_bound: dict[str, Any] | None = None
    #: the stage's fast pick (labkit.lab.variant_choice.select)
    selection: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: what the journal's selection takes from this stage's candidates
    ships: str | None = None
    #: stock against what ships, read by the ruler (labkit.lab.quantization_report.side_by_side)
    listening: Listening | None = None
