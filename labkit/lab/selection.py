"""Choosing the best configuration from stage records, by rules that are data.

A stage offers the settings it compared as ``metrics["candidates"]``::

    {"name": "ort-format+2 threads",
     "overrides": {"session.use_ort_format": true},      # dotted LabConfig settings
     "ttfa_s": 0.41, "rtf": 0.28,                        # objectives (lower is better)
     "lsd_db": 0.3,                                      # quality cost vs the reference
     "failed_checks": []}                                # e.g. ["nan", "length"]

Per stage, a candidate is eligible when its stage is ``ok``, it has a measured
``lsd_db`` within ``SelectionConfig.max_lsd_db`` and no failed checks. Eligible ones are
ranked lexicographically by ``SelectionConfig.objectives``: on each objective two
candidates within ``tie_band`` (relative) count as tied and the next objective decides;
a full tie keeps the stage's own order (its first candidate is its baseline), so a
rerun on a noisy machine keeps its choice. The winners' overrides, applied in stage
order over the run's config, are the best configuration; the runner-up swaps in the
second-best candidate of the stage where it costs least.
"""
from __future__ import annotations

import datetime as _dt
import functools
import math
from typing import Any

from labkit.config import LabConfig, SelectionConfig


def _value(c: dict, key: str) -> float:
    v = c.get(key)
    return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def eligible(candidate: dict, rules: SelectionConfig) -> tuple[bool, str]:
    if candidate.get("failed_checks"):
        return False, f"failed checks: {', '.join(candidate['failed_checks'])}"
    lsd = candidate.get("lsd_db")
    if lsd is None:
        return False, "quality not measured"
    if lsd > rules.max_lsd_db:
        return False, f"lsd {lsd:.2f} dB > bound {rules.max_lsd_db:.2f} dB"
    return True, ""


def compare(a: dict, b: dict, rules: SelectionConfig) -> int:
    """-1 if a is better, 1 if b is, 0 if tied on every objective within the band."""
    for key in rules.objectives:
        va, vb = _value(a, key), _value(b, key)
        if va == vb:
            continue
        if math.isinf(va) or math.isinf(vb):
            return -1 if va < vb else 1
        scale = max(abs(va), abs(vb), 1e-12)
        if abs(va - vb) / scale > rules.tie_band:
            return -1 if va < vb else 1
    return 0


def rank(candidates: list[dict], rules: SelectionConfig) -> list[dict]:
    ok = [c for c in candidates if eligible(c, rules)[0]]
    # sorted() is stable, so full ties keep the stage's order
    return sorted(ok, key=functools.cmp_to_key(lambda a, b: compare(a, b, rules)))


def _loss(winner: dict, second: dict, rules: SelectionConfig) -> float:
    key = rules.objectives[0]
    w, s = _value(winner, key), _value(second, key)
    if math.isinf(w) or math.isinf(s):
        return math.inf
    return (s - w) / max(abs(w), 1e-12)


def select(records: list[dict], rules: SelectionConfig, base: LabConfig | None = None) -> dict:
    """The best configuration (and runner-up) from stage records; see the module doc."""
    base = base or LabConfig()
    choices, rejected, seconds = [], [], []
    for rec in records:
        cands = rec.get("metrics", {}).get("candidates") or []
        if not cands:
            continue
        if rec.get("status") != "ok":
            rejected.append({"stage": rec.get("stage"), "reason": f"stage {rec.get('status')}"})
            continue
        for c in cands:
            ok, why = eligible(c, rules)
            if not ok:
                rejected.append({"stage": rec["stage"], "candidate": c.get("name"), "reason": why})
        ranked = rank(cands, rules)
        if not ranked:
            continue
        choices.append(_choice(rec, ranked[0]))
        if len(ranked) > 1:
            seconds.append((_loss(ranked[0], ranked[1], rules), rec, ranked[1]))

    overrides: dict[str, Any] = {}
    for ch in choices:
        overrides.update(ch["overrides"])
    best_cfg = base.with_overrides(overrides)
    result = {
        "config": best_cfg.to_dict(),
        "overrides": overrides,
        "choices": choices,
        "rejected": rejected,
        "rules": {"max_lsd_db": rules.max_lsd_db, "objectives": list(rules.objectives),
                  "tie_band": rules.tie_band},
        "runner_up": None,
    }
    if seconds:
        seconds.sort(key=lambda t: t[0])
        _, rec, cand = seconds[0]
        ru_choices = [(_choice(rec, cand) if ch["stage"] == rec["stage"] else ch) for ch in choices]
        ru_overrides: dict[str, Any] = {}
        for ch in ru_choices:
            ru_overrides.update(ch["overrides"])
        result["runner_up"] = {"config": base.with_overrides(ru_overrides).to_dict(),
                               "overrides": ru_overrides, "differs_in": rec["stage"],
                               "choice": _choice(rec, cand)}
    return result


def _choice(rec: dict, cand: dict) -> dict:
    figures = {k: cand.get(k) for k in ("ttfa_s", "rtf", "lsd_db") if k in cand}
    return {"stage": rec.get("stage"), "run_id": rec.get("run_id"), "candidate": cand.get("name"),
            "overrides": dict(cand.get("overrides") or {}), **figures}


def best_json(records: list[dict], rules: SelectionConfig, base: LabConfig, run_id: str,
              record_paths: list[str]) -> dict:
    out = select(records, rules, base)
    out["provenance"] = {
        "run_id": run_id,
        "records": record_paths,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return out
