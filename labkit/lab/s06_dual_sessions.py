"""Stage 06: one session or two: does a second session keep the stream fed?"""
from __future__ import annotations

import gc
from typing import Any

import numpy as np
import onnxruntime as ort

from labkit import machine
from labkit.engine.pipeline import StreamingSynthesizer, build_engines, fastest
from labkit.lab.s05_chunking import chunking_label
from labkit.measure.texts import named
from labkit.measure.streaming import run_stream, stream_failures, summarize_runs
from labkit.quality import lsd_db

NAME = "06_dual_sessions"


def candidate_config(cfg, candidate: dict[str, Any]):
    """``cfg`` with a session-pair candidate applied: ``session`` (overrides of
    cfg.session), ``sessions``, ``second_session``, ``second_variant``, ``routing``,
    ``queue_depth``."""
    over: dict[str, Any] = {f"session.{k}": v for k, v in candidate.get("session", {}).items()}
    for key in ("sessions", "second_session", "second_variant", "routing", "queue_depth"):
        if key in candidate:
            over[f"pipeline.{key}"] = candidate[key]
    return cfg.with_overrides(over)


def unavailable_providers(candidate: dict[str, Any]) -> list[str]:
    """Execution providers a candidate names that this ONNX Runtime build lacks."""
    have = set(ort.get_available_providers())
    wanted = list(candidate.get("session", {}).get("providers", []))
    wanted += list(candidate.get("second_session", {}).get("providers", []))
    return sorted({p for p in wanted if p not in have})


def compare_sessions(cfg, candidates: list[dict[str, Any]], texts: list[str], repeats: int = 2,
                     startup_buffer_s: float = 0.0) -> list[dict[str, Any]]:
    """Stream each text with each candidate (one session or two): one row per
    (candidate, text); candidates whose providers are missing are recorded as skipped."""
    rows = []
    first_audio: dict[str, np.ndarray] = {}  # text -> the first measured candidate's take
    for cand in candidates:
        name = cand.get("name") or chunking_label({k: v for k, v in cand.items() if k != "name"})
        missing = unavailable_providers(cand)
        if missing:
            for t in texts:
                rows.append({"candidate": name, "text": t, "status":
                             f"skipped: {', '.join(missing)} not available in onnxruntime "
                             f"{ort.__version__} on this machine (available: "
                             f"{', '.join(ort.get_available_providers())})"})
            continue
        ccfg = candidate_config(cfg, cand)
        engines = build_engines(ccfg)
        for e in engines:
            e.warm_up(repeats=2)
        first = fastest(engines) if len(engines) > 1 else 0
        synth = StreamingSynthesizer(engines[0], engines, first_session=first)
        for t in texts:
            runs = [run_stream(synth, named(t), name=name, keep_audio=(i == 0))
                    for i in range(max(1, repeats))]
            take = runs[0].audio
            runs[0].audio = None
            row = summarize_runs(runs, startup_buffer_s)
            # same pieces, same model: the audio should not change; measured, not assumed
            first_audio.setdefault(t, take)
            ref = first_audio[t]
            row["lsd_db_vs_first"] = (lsd_db(ref, take) if take is not None and len(take) == len(ref)
                                      else None)
            row["length_matches_first"] = take is not None and len(take) == len(ref)
            row.update(candidate=name, text=t, status="ok", sessions=len(engines), first_session=first,
                       routing=ccfg.pipeline.routing, queue_depth=ccfg.pipeline.queue_depth,
                       threads=[e.session.get_session_options().intra_op_num_threads for e in engines],
                       per_session=runs[-1].extra.get("per_session"),
                       pipeline={"sessions": ccfg.pipeline.sessions,
                                 "second_session": dict(ccfg.pipeline.second_session),
                                 "second_variant": ccfg.pipeline.second_variant,
                                 "routing": ccfg.pipeline.routing,
                                 "queue_depth": ccfg.pipeline.queue_depth},
                       session=dict(cand.get("session", {})))
            rows.append(row)
        del synth, engines
        gc.collect()
    return rows


def dual_rule(rows: list[dict[str, Any]], band: float = 0.05,
              facts: machine.Facts | None = None) -> dict[str, Any]:
    """Single vs dual, per text: the best single-session row against the best dual one
    (lowest total time among those with no more underruns), as ratios; dual sessions are
    used only where they win on total time by more than ``band`` without losing on TTFA
    (beyond ``band``) or adding underruns on every text measured. The rule text names the
    machine measured (``facts``, default this one)."""
    texts = sorted({r["text"] for r in rows if r.get("status") == "ok"})
    per_text, wins = {}, []
    best_single = None
    for t in texts:
        ok = [r for r in rows if r.get("status") == "ok" and r["text"] == t]
        singles = [r for r in ok if r["sessions"] == 1]
        duals = [r for r in ok if r["sessions"] == 2]
        if not singles or not duals:
            continue
        s = min(singles, key=lambda r: (r["underruns_max"], r["total_s"]))
        d = min(duals, key=lambda r: (r["underruns_max"], r["total_s"]))
        best_single = best_single or s
        ratios = {"single": s["candidate"], "dual": d["candidate"],
                  "ttfa_dual_over_single": d["ttfa_s"] / s["ttfa_s"],
                  "total_dual_over_single": d["total_s"] / s["total_s"],
                  "underruns_single": s["underruns_max"], "underruns_dual": d["underruns_max"],
                  "cpu_single": s["cpu_utilization"], "cpu_dual": d["cpu_utilization"]}
        win = (ratios["total_dual_over_single"] < 1 - band and ratios["ttfa_dual_over_single"] <= 1 + band
               and d["underruns_max"] <= s["underruns_max"])
        ratios["dual_pays"] = win
        per_text[t] = ratios
        wins.append((win, d))
    use_dual = bool(wins) and all(w for w, _ in wins)
    chosen = wins[0][1] if use_dual else None
    if not per_text:
        rule = "no single-vs-dual pair was measured here; single session kept"
    elif use_dual:
        rule = (f"use two sessions ({chosen['candidate']}): on every text measured they finish "
                f">{band:.0%} sooner without later first audio or more underruns")
    else:
        rule = ("keep one session: two sessions did not finish more than "
                f"{band:.0%} sooner without a later first audio or more underruns on every text "
                f"measured (on {(facts or machine.current()).cores_phrase()} the sessions "
                "compete for the same cores)")
    return {"use_dual": use_dual, "rule": rule, "per_text": per_text,
            "pipeline": chosen["pipeline"] if chosen else {"sessions": 1},
            "session": chosen["session"] if chosen else (best_single or {}).get("session"),
            "candidate": chosen["candidate"] if chosen else (best_single or {}).get("candidate")}


def session_candidates(rows: list[dict[str, Any]], rule: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage 06's measured rows on its first text as candidates, the stage's rule's choice
    first; ``lsd_db`` is each one's measured distance from the first candidate's audio.

    The rule weighed single against dual on first audio, total time and underruns over
    every text; the journal's ranking sees one text and its hard checks. So the rows the
    rule did not choose carry the failed check ``not the stage's rule``: the journal can
    never ship the dual pair the stage measured as worse (a one-off underrun of the single
    session on a noisy machine once made it pick a pair with 1.65x later first audio)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return []
    main_text = ok[0]["text"]
    chosen = rule.get("candidate")
    out = []
    for r in sorted((r for r in ok if r["text"] == main_text), key=lambda r: r["candidate"] != chosen):
        overrides = {f"session.{k}": v for k, v in (r.get("session") or {}).items()}
        overrides.update({f"pipeline.{k}": v for k, v in r["pipeline"].items()
                          if k in ("sessions", "second_session", "routing")})
        if r["sessions"] == 1:
            overrides = {k: v for k, v in overrides.items()
                         if k not in ("pipeline.second_session", "pipeline.routing")}
        out.append({"name": r["candidate"], "overrides": overrides, "ttfa_s": r["ttfa_s"],
                    "rtf": r["rtf"], "lsd_db": r.get("lsd_db_vs_first"),
                    "failed_checks": stream_failures(r) + ([] if r.get("length_matches_first", True)
                                                          else ["length"])
                    + ([] if r["candidate"] == chosen else ["not the stage's rule"])})
    return out
