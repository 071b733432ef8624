"""What a stage's plan holds (:class:`StagePlan`) and the pricing every stage's planner
shares (labkit.lab.plan): the rounds a comparison runs, a text's synthesis, a model's size."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from labkit.config import LabConfig
from labkit.engine import assets
from labkit.lab.costs import Costs
from labkit.measure.compare import default_rounds
from labkit.measure.texts import named

GiB = 1e9


@dataclass
class StagePlan:
    stage: str
    candidates: int = 0
    session_builds: int = 0
    timed_runs: int = 0
    seconds: float = 0.0
    disk_gb: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "minutes": round(self.minutes, 1), "seconds": round(self.seconds),
                "disk_gb": round(self.disk_gb, 2)}


def rounds_for(params: dict, entries: int, key: str = "rounds") -> int:
    r = params.get(key)
    return int(r) if r else default_rounds(entries)


def model_gb(cfg: LabConfig, variant: str) -> float:
    path = assets.model_path(cfg, variant)
    if path.exists():
        return path.stat().st_size / GiB
    ref = assets.model_path(cfg, "fp32-recon")
    return (ref.stat().st_size if ref.exists() else 0) / GiB


def text_s(c: Costs, name: str) -> float:
    return c.synth_s(named(name))
