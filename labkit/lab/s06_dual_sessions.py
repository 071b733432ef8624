"""Stage 06: one session or two: does a second session keep the stream fed?

Every candidate (one session, or two with a routing rule) streams each text; the streams
are timed by the one instrument (labkit.measure.compare: interleaved rounds, paired ratios
of the whole stream's time to the first candidate's, bootstrap intervals, an A/A control),
and each stream's first audio and underruns are kept beside it. A candidate that cannot be
built or run (a provider missing, a CoreML error) is recorded as skipped or failed and the
others go on.

With many candidates (the Mac batch's CoreML and CPU layouts), a cheap screen comes first
(``screen_text``: a short text, ``screen_rounds`` rounds by the same instrument, no rounds
added for noise): only the ``confirm_top`` fastest layouts there, beside the first, stream the
stage's texts in full rounds. A layout screened out keeps a row whose status says by how
much it trailed the slowest leader (:func:`screen_layouts`), so the journal shows it.
"""
from __future__ import annotations

import gc
from typing import Any, TypedDict

import numpy as np

import onnxruntime as ort

from labkit import progress
from labkit.host import machine
from labkit.config import SelectionConfig
from labkit.engine.pipeline import StreamingSynthesizer, build_engines, fastest
from labkit.lab import listen as listening
from labkit.lab.s05_chunking import chunking_label, plot_timeline
from labkit.measure import corpora, seams
from labkit.measure.texts import named
from labkit.measure.compare import compare
from labkit.measure.streaming import run_stream, stream_failures
from labkit.lab.selection import quality_entry
from labkit.quality import lsd_db, ruler
from labkit.tables import interval

NAME = "06_dual_sessions"
#: the stage's criterion for the journal: the time to stream the whole text
CRITERION = "total_s"


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


def _skip_reason(missing: list[str]) -> str:
    return (f"skipped: {', '.join(missing)} not available in onnxruntime {ort.__version__} on "
            f"this machine (available: {', '.join(ort.get_available_providers())})")


def build(cfg, cand: dict[str, Any]) -> StreamingSynthesizer:
    """The candidate's synthesizer over warmed-up engines (the faster session first)."""
    ccfg = candidate_config(cfg, cand)
    engines = build_engines(ccfg)
    for e in engines:
        e.warm_up(repeats=2)
    first = fastest(engines) if len(engines) > 1 else 0
    return StreamingSynthesizer(engines[0], engines, first_session=first)


def _describe(cfg, cand: dict[str, Any], synth: StreamingSynthesizer) -> dict[str, Any]:
    ccfg = candidate_config(cfg, cand)
    return {"sessions": len(synth.engines), "first_session": synth.first_session,
            "routing": ccfg.pipeline.routing, "queue_depth": ccfg.pipeline.queue_depth,
            "threads": [e.session.get_session_options().intra_op_num_threads for e in synth.engines],
            "pipeline": {"sessions": ccfg.pipeline.sessions,
                         "second_session": dict(ccfg.pipeline.second_session),
                         "second_variant": ccfg.pipeline.second_variant,
                         "routing": ccfg.pipeline.routing, "queue_depth": ccfg.pipeline.queue_depth},
            "session": dict(cand.get("session", {}))}


def compare_sessions(cfg, candidates: list[dict[str, Any]], texts: list[str],
                     rounds: int | None = None, startup_buffer_s: float = 0.0,
                     screen_text: str | None = None, screen_rounds: int = 2, confirm_top: int = 2
                     ) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """One row per (candidate, text) and the comparisons (text -> Comparison.to_dict()).
    The first candidate that could be built is the baseline of every ratio. With
    ``screen_text`` and more than ``confirm_top`` others, only the leaders of the screen
    (:func:`screen_layouts`) stream ``texts``."""
    rows: list[dict[str, Any]] = []
    synths: dict[str, StreamingSynthesizer] = {}
    info: dict[str, dict] = {}
    for cand in candidates:
        name = cand.get("name") or chunking_label({k: v for k, v in cand.items() if k != "name"})
        missing = unavailable_providers(cand)
        if missing:
            rows += [{"candidate": name, "text": t, "status": _skip_reason(missing)} for t in texts]
            continue
        try:
            synths[name] = build(cfg, cand)
            info[name] = _describe(cfg, cand, synths[name])
        except Exception as exc:  # noqa: BLE001 - one candidate's error must not lose the others
            rows += [{"candidate": name, "text": t, "status": f"failed: {type(exc).__name__}: {exc}"}
                     for t in texts]
    comparisons: dict[str, dict] = {}
    if not synths:
        return rows, comparisons
    baseline = next(iter(synths))
    # the A/A control streams through a second build of the baseline layout: every
    # candidate is a build of its own, and two builds of the same layout can differ
    first_cand = next(c for c in candidates
                      if (c.get("name") or chunking_label({k: v for k, v in c.items() if k != "name"}))
                      == baseline)
    control_synth = build(cfg, first_cand)
    if screen_text and len(synths) - 1 > confirm_top:
        out, comparisons[f"screen: whole-stream time, {screen_text}"] = screen_layouts(
            synths, baseline, control_synth, screen_text, screen_rounds, confirm_top)
        for name, status in out.items():
            rows += [{"candidate": name, "text": t, "status": status} for t in texts]
            del synths[name]
        gc.collect()
    for t in progress.steps(list(texts), "texts"):
        text = named(t)
        keep_audio = {n: True for n in synths}

        def streamer(name):
            def go():
                r = run_stream(synths[name], text, name=name, keep_audio=keep_audio[name])
                keep_audio[name] = False  # one take per candidate is enough to compare audio
                return r
            return go

        try:
            # rounds added for noise end once every layout is decided against the journal's
            # threshold (the rule's own test: dual_rule), as stage 02's do
            cmp = compare({n: streamer(n) for n in synths}, baseline, rounds=rounds, warmup=0,
                          measure=lambda r: r.total_s, keep=lambda r: r, criterion=CRITERION,
                          control=lambda: run_stream(control_synth, text, name="control"),
                          decide_at=cfg.selection.threshold)
        except Exception as exc:  # noqa: BLE001 - recorded with the text it failed on
            rows += [{"candidate": n, "text": t, "status": f"failed: {type(exc).__name__}: {exc}"}
                     for n in synths]
            continue
        takes = {n: next((r.audio for r in cmp.kept[n] if r.audio is not None), None) for n in synths}
        for name in synths:
            runs = cmp.kept[name]
            pbs = [r.playback(startup_buffer_s) for r in runs]
            ref, take = takes[baseline], takes[name]
            same = take is not None and ref is not None and len(take) == len(ref)
            row = {"candidate": name, "text": t, "status": "ok", **info[name],
                   "total_s": cmp.median(name), "ratio": cmp.ratio(name), "ci95": list(cmp.ci95(name)),
                   "ttfa_s": float(np.median([r.ttfa_s for r in runs])),
                   "rtf": float(np.median([r.rtf for r in runs])),
                   "underruns_max": max(p.underruns for p in pbs),
                   "jitter_median": float(np.median([p.jitter for p in pbs])),
                   "cpu_utilization": float(np.median([r.cpu_utilization for r in runs])),
                   "words_present": all(r.words_present is not False for r in runs),
                   "failures": sum(r.extra.get("failures", 0) for r in runs),
                   "per_session": runs[-1].extra.get("per_session"),
                   "change_vs_first_db": lsd_db(ref, take) if same else None,
                   # what a listener would hear change against the first layout's audio
                   "ruler": (ruler.verdict(ruler.measure(ref, take, standard_figures=False)).to_dict()
                             if ref is not None and take is not None else None),
                   "length_matches_first": same}
            rows.append(row)
        cmp.kept = {}
        comparisons[f"whole-stream time, {t}"] = cmp.to_dict()
    return rows, comparisons


def screen_layouts(synths: dict[str, StreamingSynthesizer], baseline: str,
                   control: StreamingSynthesizer, text_name: str, rounds: int, top: int
                   ) -> tuple[dict[str, str], dict[str, Any]]:
    """The screen: every layout streams ``text_name`` in ``rounds`` interleaved rounds
    against ``baseline`` (the one instrument, no rounds added for noise); the ``top``
    fastest others are the leaders. Returns (screened-out layout -> its status, naming its
    ratio and how far it trailed the slowest leader; the screen's comparison)."""
    text = named(text_name)
    fns = {n: (lambda s=s: run_stream(s, text, name="screen")) for n, s in synths.items()}
    progress.say(f"screen: {len(synths)} layouts on {text_name}, {rounds} rounds")
    cmp = compare(fns, baseline, rounds=rounds, max_rounds=rounds, warmup=0,
                  measure=lambda r: r.total_s, criterion=CRITERION,
                  control=lambda: run_stream(control, text, name="control"))
    ranked = sorted((n for n in synths if n != baseline), key=cmp.ratio, reverse=True)
    last = ranked[top - 1]
    out = {n: (f"screened out: {cmp.ratio(n):.2f}x the first layout's whole-stream time on "
               f"{text_name} ({rounds} rounds), {cmp.ratio(last) / cmp.ratio(n):.2f}x behind the "
               f"slowest of the {top} leaders ({last})") for n in ranked[top:]}
    return out, cmp.to_dict()


def dual_rule(rows: list[dict[str, Any]], band: float = 0.05,
              facts: machine.Facts | None = None,
              rules: SelectionConfig | None = None) -> dict[str, Any]:
    """Single vs dual, per text: the best single-session row (the baseline of the ratios)
    against the dual pair whose interval's low end is highest. Two sessions are used only
    where, on every text measured, the pair streams faster beyond the noise (its interval
    wholly above ``rules.threshold``, the journal's 1.0 + min_gain), its first audio is not later by more than ``band``, and it has no more
    underruns. The rule text names the machine measured (``facts``, default this one)."""
    rules = rules or SelectionConfig()
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
        d = max(duals, key=lambda r: r["ci95"][0] / max(s["ci95"][0], 1e-9))
        best_single = best_single or s
        ratios = {"single": s["candidate"], "dual": d["candidate"],
                  "ttfa_dual_over_single": d["ttfa_s"] / s["ttfa_s"],
                  "total_dual_over_single": d["total_s"] / s["total_s"],
                  "dual_speedup_ci95": d["ci95"],
                  "underruns_single": s["underruns_max"], "underruns_dual": d["underruns_max"],
                  "cpu_single": s["cpu_utilization"], "cpu_dual": d["cpu_utilization"]}
        win = (rules.clears(d["ci95"]) and ratios["ttfa_dual_over_single"] <= 1 + band
               and d["underruns_max"] <= s["underruns_max"])
        ratios["dual_pays"] = win
        per_text[t] = ratios
        wins.append((win, d))
    use_dual = bool(wins) and all(w for w, _ in wins)
    chosen = wins[0][1] if use_dual else None
    if not per_text:
        rule = "no single-vs-dual pair was measured here; single session kept"
    elif use_dual:
        rule = (f"use two sessions ({chosen['candidate']}): on every text measured they stream "
                "faster beyond the noise without later first audio or more underruns")
    else:
        rule = ("keep one session: two sessions did not stream faster beyond the noise (interval "
                f"wholly above {rules.threshold:.2f}) without a first audio later by more than {band:.0%} or more "
                f"underruns on every text measured (on {(facts or machine.current()).cores_phrase()} "
                "the sessions compete for the same cores)")
    return {"use_dual": use_dual, "rule": rule, "per_text": per_text,
            "pipeline": chosen["pipeline"] if chosen else {"sessions": 1},
            "session": chosen["session"] if chosen else (best_single or {}).get("session"),
            "candidate": chosen["candidate"] if chosen else (best_single or {}).get("candidate")}


def session_candidates(rows: list[dict[str, Any]], rule: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage 06's measured rows on its first text as candidates for the journal: the first
    (the baseline of the ratios) marked as the baseline, each with its ratio and interval
    on the whole-stream time; ``quality`` is the ruler's verdict on its audio against the
    baseline's (``lsd_db``: the standard LSD between them, reported).

    The rule weighed single against dual on first audio, total time and underruns over
    every text; the journal's rules see one criterion. So the rows the rule did not choose
    carry the failed check ``not the stage's rule``: the journal never ships a pair the stage
    measured as worse on another criterion."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return []
    main_text = ok[0]["text"]
    chosen = rule.get("candidate")
    out = []
    for i, r in enumerate(x for x in ok if x["text"] == main_text):
        overrides = {f"session.{k}": v for k, v in (r.get("session") or {}).items()}
        overrides.update({f"pipeline.{k}": v for k, v in r["pipeline"].items()
                          if k in ("sessions", "second_session", "routing")})
        if r["sessions"] == 1:
            overrides = {k: v for k, v in overrides.items()
                         if k not in ("pipeline.second_session", "pipeline.routing")}
        v = r.get("ruler")
        c = {"name": r["candidate"], "overrides": overrides, "ttfa_s": r["ttfa_s"], "rtf": r["rtf"],
             "lsd_db": r.get("change_vs_first_db"), "criterion": CRITERION, "ci95": r["ci95"],
             "quality": quality_entry(None if v is None else v["verdict"] == "pass",
                                      (v or {}).get("reasons"),
                                      "the ruler on this layout's audio against the first's"),
             "measured": [CRITERION, "ttfa_s", "underruns", "quality"],
             "failed_checks": stream_failures(r) + ([] if r.get("length_matches_first", True)
                                                   else ["length"])
             + ([] if r["candidate"] == chosen else ["not the stage's rule"])}
        if i == 0:
            c.update(baseline=True, lsd_db=0.0, quality=quality_entry(True, basis="the first layout itself"))
        else:
            c["ratio"] = r["ratio"]
        out.append(c)
    return out


class DualSessionsResult(TypedDict):
    """What :func:`run` returns: the notebook's cells read it, :func:`record` writes it."""

    #: the first layout and the one the rule picks, side by side (None: nothing to hear)
    _listening: listening.Listening | None
    #: one row per (candidate, text) (:func:`compare_sessions`)
    rows: list[dict[str, Any]]
    #: text -> Comparison.to_dict()
    comparisons: dict[str, dict]
    #: single vs dual, per text (:func:`dual_rule`)
    rule: dict[str, Any]


def run(cfg, st, *, candidates: list[dict[str, Any]], texts: list[str], rounds: int | None = None,
        queue_depth: int = 4, startup_buffer_s: float = 0.0, band: float = 0.05,
        screen_text: str | None = None, screen_rounds: int = 2,
        confirm_top: int = 2) -> DualSessionsResult:
    cfg = cfg.with_overrides({"pipeline.queue_depth": queue_depth})
    rows, comparisons = compare_sessions(cfg, candidates, texts, rounds, startup_buffer_s,
                                         screen_text, screen_rounds, confirm_top)
    gc.collect()
    rule = dual_rule(rows, band, rules=cfg.selection)
    heard = side_by_side(cfg, candidates, rows, rule)
    gc.collect()
    return DualSessionsResult(_listening=heard, rows=rows, comparisons=comparisons, rule=rule)


def record(st, result: DualSessionsResult) -> None:
    rows, rule = result["rows"], result["rule"]
    st.metrics["comparison"] = rows
    st.metrics["comparisons"] = result["comparisons"]
    skipped = sorted({r["status"] for r in rows if r["status"] != "ok"})
    for s in skipped:
        st.note(s)
    st.metrics["selection"] = {"use_dual": rule["use_dual"], "rule": rule["rule"],
                               "pipeline": rule["pipeline"], "session": rule["session"],
                               "candidate": rule["candidate"], "ratios": rule["per_text"],
                               "skipped": skipped}
    st.metrics["candidates"] = session_candidates(rows, rule)
    head: dict[str, Any] = {"rule": rule["rule"], "dual used": rule["use_dual"]}
    for t, r in rule["per_text"].items():
        head[f"{t} whole stream, dual vs single (x)"] = {
            "value": round(1 / r["total_dual_over_single"], 3),
            "ci95": [round(x, 3) for x in r["dual_speedup_ci95"]]}
        head[f"{t} TTFA dual/single"] = round(r["ttfa_dual_over_single"], 3)
        head[f"{t} underruns single/dual"] = f"{r['underruns_single']}/{r['underruns_dual']}"
    missing = [x for x in skipped if x.startswith("skipped")]
    head["CoreML pairs"] = ("skipped: " + missing[0].split(": ", 1)[-1]) if missing else "measured"
    screened = sorted({r["candidate"] for r in rows if r["status"].startswith("screened out")})
    if screened:
        head["screened out"] = f"{len(screened)} of {len({r['candidate'] for r in rows})} layouts"
    st.metrics["headline"] = head
    if result.get("_listening") is not None:
        st.metrics["listen"] = result["_listening"].to_dict()
        listening.write(result["_listening"], st.dir)


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| candidate | text | threads | TTFA med s | total s | vs first (x) | 95 % interval | "
           "underruns | CPU util | pieces per session |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['candidate']} | {r['text']} | {r['status']} |  |  |  |  |  |  |  |")
            continue
        per = {k: int(v["pieces"]) for k, v in (r["per_session"] or {}).items()}
        out.append(f"| {r['candidate']} | {r['text']} | {r['threads']} | {r['ttfa_s']:.3f} | "
                   f"{r['total_s']:.2f} | {r['ratio']:.3f} | {interval(r['ci95'], 3)} | "
                   f"{r['underruns_max']} | {r['cpu_utilization']:.2f} | {per} |")
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], texts: list[str], plt):
    ok = [r for r in rows if r["status"] == "ok"]
    fig, axes = plt.subplots(1, len(texts), figsize=(5.5 * len(texts), 3.5), squeeze=False)
    for ax, t in zip(axes[0], texts):
        sel = [r for r in ok if r["text"] == t]
        ax.barh([r["candidate"] for r in sel], [r["total_s"] for r in sel], color="tab:orange", label="total")
        ax.barh([r["candidate"] for r in sel], [r["ttfa_s"] for r in sel], color="tab:blue", label="first audio")
        ax.set_title(t)
        ax.set_xlabel("seconds (median)")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


# -- listen and try it -------------------------------------------------------------------------------
def _name(cand: dict[str, Any]) -> str:
    return cand.get("name") or chunking_label({k: v for k, v in cand.items() if k != "name"})


def layouts(result: dict[str, Any]) -> list[str]:
    """The candidates this run built and streamed (the first: the configured layout)."""
    return list(dict.fromkeys(r["candidate"] for r in result["rows"] if r.get("status") == "ok"))


def side_by_side(cfg, candidates: list[dict[str, Any]], rows: list[dict[str, Any]],
                 rule: dict[str, Any], utt_id: str | None = None) -> listening.Listening | None:
    """The held-out listening sentence streamed by the first layout (stock) and by the one
    the rule ships (or, where it keeps one session, the best dual pair it measured); the
    ruler reads the second against the first (the stage's own quality check: a layout
    must not change the audio). None when no layout streamed."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    by_name = {_name(c): c for c in candidates}
    stock = ok[0]["candidate"]
    other = rule.get("candidate") if rule.get("use_dual") else next(
        (r["dual"] for r in (rule.get("per_text") or {}).values()), None)
    stock_label, other_label = listening.labels(stock, other or "-", not rule.get("use_dual"))
    synths = {stock_label: build(cfg, by_name[stock])}
    if other is not None and other != stock:
        synths[other_label] = build(cfg, by_name[other])
    utt = listening.sentence(utt_id)
    takes = {label: listening.streamed(synth, utt) for label, synth in synths.items()}
    return listening.listening(
        utt, f"the first layout's stream ({stock})", None, takes, reference_take=stock_label,
        note="A session layout changes where and when pieces are synthesized, not the model: "
             "the second take should read like the first.")


def try_controls(result: dict[str, Any], text: str) -> dict[str, Any]:
    """The "Try it" knobs: a layout this run built (the first: the configured one), a text."""
    return {"layout": layouts(result) or ["(no layout streamed in this run)"], "text": text}


def try_sessions(cfg, candidates: list[dict[str, Any]], layout: str, text: str, plt) -> list[Any]:
    """Try it: ``text`` streamed by one candidate layout (built and warmed up here): its
    first audio, whole time, underruns, CPU use and pieces per session, the timeline of
    pieces against playback (labkit.lab.s05_chunking.plot_timeline, the session of each
    piece in its bar's colour order), and the audio beside the same model reading the text
    unchunked."""
    by_name = {_name(c): c for c in candidates}
    if layout not in by_name:
        raise KeyError(f"layout {layout!r}: the candidates are {sorted(by_name)}")
    missing = unavailable_providers(by_name[layout])
    if missing:
        return [_skip_reason(missing)]
    synth = build(cfg, by_name[layout])
    run_ = run_stream(synth, text, name=layout, keep_audio=True)
    pb = run_.playback()
    summary = {"layout": layout, "sessions": len(synth.engines),
               "threads per session": [e.session.get_session_options().intra_op_num_threads
                                       for e in synth.engines],
               "first audio s": round(run_.ttfa_s, 3), "whole stream s": round(run_.total_s, 3),
               "underruns": pb.underruns, "RTF (end to end)": round(run_.rtf, 3),
               "CPU utilization": round(run_.cpu_utilization, 2),
               "pieces per session": {k: int(v["pieces"]) for k, v in
                                      (run_.extra.get("per_session") or {}).items()}}
    utt = corpora.Utterance("your text", text, cfg.voice, cfg.lang)
    heard = listening.listening(utt, "the same model reading the text unchunked",
                                seams.unchunked(synth.engine, cfg.chunking, text), {layout: run_.audio})
    return [summary, plot_timeline(run_, plt), heard]
