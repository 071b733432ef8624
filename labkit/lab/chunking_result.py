"""What stage 05 (labkit.lab.s05_chunking) returns: :class:`ChunkingResult`.

Typed for readers and checkers only: a plain dict at run time, so the record the stage
writes is the same JSON, key for key (keys starting with ``_`` are not recorded)."""
from __future__ import annotations

from typing import Any, TypedDict

from labkit.engine.runtime import Engine
from labkit.lab.listen import Listening
from labkit.measure.compare import Comparison
from labkit.measure.streaming import Run


class ChunkingResult(TypedDict):
    #: the configured chunking and the chosen one side by side (None: not asked for)
    _listening: Listening | None
    #: the engine every variant streamed on (the notebook's Try it reuses it)
    _engine: Engine
    #: the chunking the rule chose, and the one it had to beat
    label: str
    contender: str
    #: label -> token count of each piece of the sweep text; the first piece's text;
    #: whether every word is in exactly one piece
    pieces: dict[str, list[int]]
    first_pieces: dict[str, str]
    coverage_ok: dict[str, bool]
    #: the sweep's interleaved rounds and its rows
    comparison: Comparison
    rows: list[dict[str, Any]]
    #: label -> the seam report on the seam text (labkit.measure.chunkings.seam_costs)
    seams: dict[str, dict[str, Any]]
    #: the article streamed idle and under load with the choice (None: left out)
    article: dict[str, Any] | None
    article_rows: list[dict[str, Any]]
    _article_run: Run | None
    #: voice -> the choice's stream summary
    voices: dict[str, dict[str, Any]]
    #: what a listener's buffer hears, idle and under load
    listener: list[dict[str, Any]]
    #: label -> first audio of a phrase vs the sweep text
    first_audio: dict[str, dict[str, Any]]
    #: what a cancel releases
    cancel: dict[str, Any]
    load_processes: int
    #: the opening sweep on the choice (labkit.lab.s05_chunking.opening_sweep: rows, seams,
    #: verdicts, the option that ships and its overrides; None: left out of this batch)
    openings: dict[str, Any] | None
    #: the model the stage streamed: its variant and file, the settings taken from best.json
    #: (s05_chunking.run's ``model="earned"``) and where they came from
    model: dict[str, Any]
    #: the chosen ChunkingConfig as a dict, and which named texts each part used (the
    #: opening sweep's: a list)
    chunking: dict[str, Any]
    texts: dict[str, Any]
