"""Each stage's choice, by rules that are data (``SelectionConfig``), the same in every stage.

A stage offers what it compared as ``metrics["candidates"]``; exactly one of them is its
baseline (what ships when nothing earns its place)::

    {"name": "ort-format",
     "overrides": {"session.use_ort_format": true},      # dotted LabConfig settings
     "baseline": false,                                  # true on the stage's baseline
     "criterion": "rtf", "ratio": 1.12, "ci95": [1.05, 1.19],  # Comparison.selection_fields
     "measured": ["rtf", "ttfa_s", "quality"],           # every criterion measured on it
     "ttfa_s": 0.41, "rtf": 0.28, "lsd_db": 0.3,         # its figures, for the journal
     "quality": {"verdict": "pass", "reasons": [],       # the ruler's verdict (quality_entry)
                 "basis": "vocoder at the reference's alignment, held-out and dev"},
     "failed_checks": []}                                # e.g. ["NaN", "length"]

``ratio`` is how many times better than the baseline the candidate measured on
``criterion`` (labkit.measure.compare: > 1 is better, whatever the figure's direction) and
``ci95`` its bootstrap 95 % interval.

A candidate replaces the baseline only when

(a) it passed every check: ``failed_checks`` is empty and its ``quality`` verdict, the
    quality ruler's (labkit.quality.ruler, bounds set on the calibration ladder), was
    measured and is "pass";
(b) it was measured on every criterion the baseline was (``measured``);
(c) its ratio is on the stage's criterion (``SelectionConfig.criteria[stage]``, else the
    baseline's ``criterion``) and its 95 % interval lies wholly above 1.0 + ``min_gain``
    (``SelectionConfig.clears``: a gain smaller than that is not worth a change).

Among several such candidates the one whose interval's low end is highest wins; an exact
tie keeps the baseline. Nothing depends on the order of the records or candidates, and no
secondary figure breaks a tie. A stage that was not ``ok`` changes nothing. The chosen
candidates' overrides, applied in stage-name order over the run's config, are the best
configuration.
"""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from labkit.config import LabConfig, SelectionConfig, repo_relative

#: the figures a choice entry carries beside its ratio (for the journal's table)
FIGURES = ("ttfa_s", "rtf", "lsd_db", "quality")


def _interval(c: dict) -> tuple[float, float] | None:
    ci = c.get("ci95")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    try:
        lo, hi = float(ci[0]), float(ci[1])
    except (TypeError, ValueError):
        return None
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        return None
    return lo, hi


def quality_entry(passed: bool | None, reasons: list[str] | None = None, basis: str = "",
                  **figures: Any) -> dict[str, Any]:
    """A candidate's ``quality``: the ruler's verdict ("pass", "fail", or None: not
    measured), why, on what it was measured, and the figures worth showing beside it."""
    return {"verdict": None if passed is None else "pass" if passed else "fail",
            "reasons": list(reasons or []), "basis": basis, **figures}


def check_failures(candidate: dict, rules: SelectionConfig) -> list[str]:
    """Rule (a): the checks a candidate failed, its own ``failed_checks`` plus the quality
    ruler's verdict; empty when it passed every one."""
    out = [str(x) for x in candidate.get("failed_checks") or []]
    q = candidate.get("quality") or {}
    if q.get("verdict") is None:
        out.append("quality not measured")
    elif q["verdict"] != "pass":
        out.append("quality: " + ("; ".join(q.get("reasons") or []) or "fails the ruler"))
    return out


def why_not(candidate: dict, baseline: dict, criterion: str | None, rules: SelectionConfig) -> str:
    """Why ``candidate`` may not replace ``baseline`` ("" when it earned it): rules (a)-(c)."""
    failed = check_failures(candidate, rules)
    if failed:
        return "failed checks: " + ", ".join(failed)
    missing = sorted(set(baseline.get("measured") or []) - set(candidate.get("measured") or []))
    if missing:
        return f"not measured on {', '.join(missing)} (the baseline was)"
    if not criterion:
        return "the stage names no criterion (selection.criteria or the baseline's criterion)"
    if candidate.get("criterion") != criterion:
        return f"its ratio is on {candidate.get('criterion')!r}, the stage's criterion is {criterion!r}"
    ci = _interval(candidate)
    if candidate.get("ratio") is None or ci is None:
        return f"no ratio with a 95 % interval on {criterion}"
    if not rules.clears(ci):
        return (f"{criterion} ratio {float(candidate['ratio']):.3f}, 95 % interval "
                f"[{ci[0]:.3f}, {ci[1]:.3f}] not wholly above {rules.threshold:.2f}")
    return ""


def find_baseline(candidates: list[dict]) -> tuple[dict | None, str]:
    """The stage's baseline candidate, or None and why."""
    marked = [c for c in candidates if c.get("baseline") is True]
    if len(marked) == 1:
        return marked[0], ""
    if not marked:
        return None, 'no candidate is marked as the baseline ("baseline": true)'
    return None, "several candidates are marked as the baseline: " + ", ".join(
        sorted(str(c.get("name")) for c in marked))


def stage_criterion(stage: str, baseline: dict, rules: SelectionConfig) -> str | None:
    return rules.criteria.get(stage) or baseline.get("criterion")


def rank(candidates: list[dict], rules: SelectionConfig, stage: str = "") -> list[dict]:
    """The candidates that earned a place over the stage's baseline, best first (highest
    low end of the interval; equal ones by name, for a stable listing)."""
    baseline, _ = find_baseline(candidates)
    if baseline is None:
        return []
    crit = stage_criterion(stage, baseline, rules)
    ok = [c for c in candidates if c is not baseline and not why_not(c, baseline, crit, rules)]
    return sorted(ok, key=lambda c: (-_interval(c)[0], str(c.get("name"))))


def _entry(rec: dict, choice: dict | None, baseline: dict | None, criterion: str | None,
           reason: str, apply: bool = True) -> dict:
    c = choice or {}
    stays = choice is not None and choice is baseline
    entry = {
        "stage": rec.get("stage"),
        "run_id": rec.get("run_id"),
        "choice": c.get("name"),
        "baseline": baseline.get("name") if baseline else None,
        "criterion": criterion,
        "ratio": 1.0 if stays else c.get("ratio"),
        # the baseline against itself: its A/A interval when the stage gave one
        "ci95": list(_interval(c)) if _interval(c) else None,
        "failed_checks": list(c.get("failed_checks") or []),
        "reason": reason,
        "overrides": dict(c.get("overrides") or {}) if apply else {},
    }
    entry.update({k: c[k] for k in FIGURES if k in c})
    return entry


def judge(rec: dict, rules: SelectionConfig) -> tuple[dict, list[dict]]:
    """One stage record -> its choice entry and the candidates not taken with their reasons."""
    stage = rec.get("stage")
    cands = list(rec.get("metrics", {}).get("candidates") or [])
    baseline, problem = find_baseline(cands)
    names = [str(c.get("name")) for c in cands]
    if not problem and len(set(names)) != len(names):
        problem = "candidate names repeat: " + ", ".join(sorted({n for n in names if names.count(n) > 1}))
        baseline = None
    if problem:
        return _entry(rec, None, None, None, problem + "; nothing changes", apply=False), []
    crit = stage_criterion(stage, baseline, rules)
    if rec.get("status") != "ok":
        return _entry(rec, baseline, baseline, crit, f"stage {rec.get('status')}; nothing changes",
                      apply=False), []
    others = sorted((c for c in cands if c is not baseline), key=lambda c: str(c.get("name")))
    rejected = []
    for c in others:
        why = why_not(c, baseline, crit, rules)
        if why:
            rejected.append({"stage": stage, "candidate": c.get("name"), "reason": why})
    earned = rank(cands, rules, stage)
    if not earned:
        if not others:
            reason = "baseline stays: no other candidate was offered"
        else:
            reason = "baseline stays: " + "; ".join(f"{r['candidate']}: {r['reason']}" for r in rejected)
        return _entry(rec, baseline, baseline, crit, reason), rejected
    top = _interval(earned[0])[0]
    tied = [c for c in earned if _interval(c)[0] == top]
    if len(tied) > 1:
        reason = (f"baseline stays: {', '.join(str(c.get('name')) for c in tied)} tie exactly on "
                  f"the low end of their {crit} interval ({top:.3f})")
        for c in earned:
            rejected.append({"stage": stage, "candidate": c.get("name"), "reason": reason if c in tied
                             else f"earned, but its interval's low end is below {top:.3f}"})
        return _entry(rec, baseline, baseline, crit, reason), rejected
    win = earned[0]
    lo, hi = _interval(win)
    reason = (f"{win.get('name')}: {crit} ratio {float(win['ratio']):.3f}, 95 % interval "
              f"[{lo:.3f}, {hi:.3f}] wholly above {rules.threshold:.2f}, all checks passed")
    for c in earned[1:]:
        clo = _interval(c)[0]
        rejected.append({"stage": stage, "candidate": c.get("name"),
                         "reason": f"earned, but its interval's low end {clo:.3f} is below "
                                   f"{win.get('name')}'s {lo:.3f}"})
        reason += f"; beats {c.get('name')} (low end {clo:.3f})"
    return _entry(rec, win, baseline, crit, reason), rejected


def verification_of(records: list[dict], combined: dict[str, Any]) -> dict[str, Any]:
    """The verification stage's verdict on exactly this combination (a record whose
    ``metrics.verdict.tested_overrides`` equals ``combined``): ``ships`` is "stock" when the
    combination lost to the stock configuration on any criterion, "shipped" when it did
    not; {"ships": None, "reason": ...} when no verdict applies (not run, failed, or it
    verified a different combination)."""
    for rec in records:
        v = (rec.get("metrics") or {}).get("verdict")
        if not isinstance(v, dict):
            continue
        if rec.get("status") != "ok":
            return {"ships": None, "stage": rec.get("stage"),
                    "reason": f"verification {rec.get('status')}: the combination was not verified"}
        # compared as best.json writes them: paths inside the checkout relative to it (stage 07
        # reads best.json's portable paths; the stage records hold absolute ones)
        if repo_relative(v.get("tested_overrides")) != repo_relative(combined):
            return {"ships": None, "stage": rec.get("stage"),
                    "reason": "the verification measured another combination (rerun it)"}
        reason = ("lost to the stock configuration on " + "; ".join(v.get("losses") or [])
                  if v.get("ships") == "stock" else "no loss against the stock configuration")
        return {"ships": v.get("ships"), "stage": rec.get("stage"), "reason": reason,
                "losses": list(v.get("losses") or [])}
    return {"ships": None, "reason": "no verification stage in this run"}


def select(records: list[dict], rules: SelectionConfig, base: LabConfig | None = None) -> dict:
    """The best configuration from stage records; see the module doc."""
    base = base or LabConfig()
    choices, rejected = [], []
    for rec in sorted(records, key=lambda r: str(r.get("stage"))):
        if not rec.get("metrics", {}).get("candidates"):
            continue
        entry, rej = judge(rec, rules)
        choices.append(entry)
        rejected += rej
    combined: dict[str, Any] = {}
    for ch in choices:
        combined.update(ch["overrides"])
    verification = verification_of(records, combined)
    overrides = {} if verification.get("ships") == "stock" else combined
    return {
        "config": base.with_overrides(overrides).to_dict(),
        "overrides": overrides,
        "combined_overrides": combined,
        "verification": verification,
        "choices": choices,
        "rejected": rejected,
        "rules": {"quality": "the ruler's verdict (labkit.quality.ruler)", "criteria": dict(rules.criteria),
                  "min_gain": rules.min_gain,
                  "earned_when": "no failed checks, measured on every criterion the baseline "
                                 f"was, 95 % interval of the ratio wholly above {rules.threshold:.2f}"},
    }


#: overrides that name a file a run built for its choice (the quantized model, or its copy
#: with word timings, keyed by its bytes): the choice is the variant and its recipe, and
#: the same recipe rebuilt in another run is the same choice
BUILT_FILES = ("model_path",)


def _run_free(overrides: dict | None, runs) -> dict:
    """Overrides as a choice: built files left out, the runs' ids masked."""
    out = {}
    for k, v in (overrides or {}).items():
        if k in BUILT_FILES:
            continue
        for run in runs:
            if run and isinstance(v, str):
                v = v.replace(str(run), "<run>")
        out[k] = v
    return out


def _runs(best: dict) -> set:
    return {c.get("run_id") for c in best.get("choices") or []} - {None}


def choice_differences(best: dict, before: dict, before_run: str = "the other run") -> list[str]:
    """Where two selections (best.json-shaped) chose differently: one line per stage whose
    choice or settings differ, or that only one of them judged; [] when they agree."""
    now = {c.get("stage"): c for c in best.get("choices") or []}
    then = {c.get("stage"): c for c in before.get("choices") or []}
    out = []
    for stage in sorted(set(now) | set(then), key=str):
        a, b = now.get(stage), then.get(stage)
        if a is None or b is None:
            out.append(f"{stage}: judged only in {'this run' if b is None else before_run}")
        elif (a.get("choice"), _run_free(a.get("overrides"), [a.get("run_id")])) != (
                b.get("choice"), _run_free(b.get("overrides"), [b.get("run_id")])):
            same_name = a.get("choice") == b.get("choice")
            out.append(f"{stage}: {a.get('choice')} here, {b.get('choice')} in {before_run}"
                       + (" (settings differ)" if same_name else ""))
    if not out and (_run_free(best.get("overrides"), _runs(best))
                    != _run_free(before.get("overrides"), _runs(before))):
        out.append(f"shipped settings differ (verification): {best.get('overrides')} here, "
                   f"{before.get('overrides')} in {before_run}")
    return out


def best_json(records: list[dict], rules: SelectionConfig, base: LabConfig, run_id: str,
              record_paths: list[str]) -> dict:
    out = select(records, rules, base)
    out["provenance"] = {
        "run_id": run_id,
        "records": record_paths,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return out
