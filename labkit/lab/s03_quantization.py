"""Stage 03: quantization and the quality bench.

:func:`run` builds the variants (labkit.optimize.quantize), sweeps the per-block
sensitivity on the development set and builds the mixed-precision variant from it, then
benches the reference, the shipped baseline (``int8``) and every variant: size, load
time, quality against the reference, and speed -- the warm wall time of one
``session.run`` on the same feeds, every variant against the baseline through the one
instrument (labkit.measure.compare: interleaved rounds, paired ratios with a bootstrap
95 % interval, an A/A control). The comparison at ``speed_tokens`` (120 by default) is the
stage's criterion (:data:`CRITERION`); the other lengths are reported. Then the Pareto
front, a listening page, the ORT profile that explains the speed and the targets'
selection; :func:`record` fills the record and the journal's candidates.

Quality is the ruler's (labkit.quality.ruler), like with like (labkit.measure.vocoder):
each variant's vocoder on the reference's part A, so a variant that predicts other
durations is not read as damaged; its durations are compared token by token (a bound of
their own) and the recognizer's word error rate of its own output is held against the
reference's. A variant passes when every utterance of the development set and of the
held-out set passes (:func:`ruler_quality`); the standard figures (LSD, PESQ, STOI,
DNSMOS) are reported beside. A variant whose output has NaN, silence or clipping on any
input is *failed*: reported, never selected.
"""
from __future__ import annotations

import html
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labkit import progress
from labkit import quality
from labkit.config import LabConfig
from labkit.engine import assets
from labkit.engine import words as wordsmod
from labkit.engine.graph_cache import make_session
from labkit.engine.g2p import get_g2p
from labkit.kokoro import MAX_TOKENS, SAMPLE_RATE, VOCAB
from labkit.engine.sessions import kokoro_feeds, style_row
from labkit.engine.runtime import DURATIONS
from labkit.engine.voices import VoiceBank
from labkit.lab import listen as listening
from labkit.lab.selection import quality_entry, rank
from labkit.measure import corpora, coverage, dnsmos, vocoder
from labkit.measure.compare import Comparison, compare, schedule
from labkit.measure import profile as profiling
from labkit.optimize import durations
from labkit.optimize import quantize
from labkit.optimize import split as splitting
from labkit.quality import ruler
from labkit.optimize.quantize import VariantSpec, family_of
from labkit.tables import cell, fixed
from labkit.timing import Timing


NAME = "03_quantization"
#: what the speed comparison times: the warm wall time of one ``session.run`` on the same
#: feeds (seconds), at the stage's representative length (``speed_tokens``)
CRITERION = "warm_s"
REFERENCE = "reference"


# -- inputs ----------------------------------------------------------------------------------
def token_probe(prepared: Sequence, n_tokens: int, voices) -> dict[str, np.ndarray]:
    """Feeds of exactly ``n_tokens`` tokens: held-out phonemes concatenated (with a space)
    and cut, voice and speed of the first utterance. For RTF at a chosen length."""
    if not 1 <= n_tokens <= MAX_TOKENS:
        raise ValueError(f"n_tokens={n_tokens}: Kokoro takes 1 to {MAX_TOKENS} tokens")
    toks: list[int] = []
    while len(toks) < n_tokens:
        for p in prepared:
            toks += p.tokens + [VOCAB[" "]]
    toks = toks[:n_tokens]
    first = prepared[0]
    pack = voices.pack(first.utt.voice)
    return kokoro_feeds(toks, style_row(pack, n_tokens))


# -- speed ------------------------------------------------------------------------------------
def load_seconds(model: Path, session_cfg, repeats: int = 1) -> Timing:
    samples = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        sess = make_session(model, session_cfg)
        samples.append(time.perf_counter() - t0)
        del sess
    return Timing.of(samples)


def speed_compare(sessions: dict[str, Any], probes: dict[int, dict], baseline: str,
                  rounds: int | None = None, warmup: int = 1,
                  criterion_tokens: int | None = None) -> dict[int, Comparison]:
    """Per probe length, the wall time of ``session.run`` on the same feeds for every
    session against ``baseline``'s, through the one instrument (labkit.measure.compare:
    interleaved rounds whose order changes, paired ratios with a bootstrap 95 % interval,
    an A/A control). Each call's output length is kept (``Comparison.kept``) for the RTF.
    With ``criterion_tokens``, only that length's comparison adds rounds on a noisy machine
    (the one the journal chooses on); the other lengths, reported only, run ``rounds``."""
    if baseline not in sessions:
        raise KeyError(f"baseline {baseline!r} has no session (it did not load); "
                       f"sessions: {list(sessions)}")
    out: dict[int, Comparison] = {}
    for n, feeds in probes.items():
        fns = {name: (lambda s=sess, f=feeds: s.run(None, f)) for name, sess in sessions.items()}
        square = len(schedule(len(fns) + 1))  # + the A/A control
        k = rounds if rounds is not None else square * -(-6 // square)
        cap = None if criterion_tokens is None or n == criterion_tokens else k
        out[n] = compare(fns, baseline, rounds=k, max_rounds=cap, warmup=warmup,
                         criterion=CRITERION, keep=lambda res: int(np.size(res[0])))
    return out


def paired_speedup(cmp: Comparison, over: str, name: str) -> float | None:
    """Median over rounds of ``over``'s time / ``name``'s time in the same round (how many
    times faster than ``over``), from one comparison's samples; None where either is absent."""
    if over not in cmp.entries or name not in cmp.entries:
        return None
    a = np.asarray(cmp.entries[over].samples)
    b = np.asarray(cmp.entries[name].samples)
    return float(np.median(a / b))


# -- quality ---------------------------------------------------------------------------------
def reference_audio(session, prepared: Sequence, voices) -> dict[str, np.ndarray]:
    return {p.utt.id: np.asarray(session.run(None, p.feeds(voices))[0]).ravel() for p in prepared}


def utterance_words(p, frames: np.ndarray) -> list[dict[str, Any]]:
    """[{"word", "start", "end"}] of a prepared utterance from the model's per-token frames."""
    phonemized = get_g2p(p.utt.lang)(p.utt.text)
    spans, _ = wordsmod.spans_for(p.utt.text, p.phonemes, phonemized)
    return [{"word": w, "start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE}
            for w, a, b in wordsmod.piece_samples(spans, frames, len(p.tokens))]


def evaluate(session, prepared: Sequence, voices, ref_audio: dict[str, np.ndarray],
             with_dnsmos: bool = True) -> dict[str, Any]:
    """Quality of one variant on a corpus: per utterance and summarized. Where the model
    outputs per-token durations (labkit.optimize.durations), every word is also checked
    in the audio (labkit.measure.coverage): a word not heard fails the utterance."""
    per: dict[str, Any] = {}
    audio: dict[str, np.ndarray] = {}
    names = [o.name for o in session.get_outputs()]
    timed = DURATIONS in names
    for p in prepared:
        try:
            outs = session.run(None, p.feeds(voices))
            out = np.asarray(outs[0]).ravel()
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a failed variant
            per[p.utt.id] = {"ok": False, "problems": [f"run failed: {type(exc).__name__}: {exc}"]}
            continue
        audio[p.utt.id] = out
        # a length change is the durations' figure (ruler_quality), not a failure
        rec = quality.compare(ref_audio[p.utt.id], out, mos=dnsmos.score if with_dnsmos else None)
        if rec["ok"] and out.size == ref_audio[p.utt.id].size:  # other lengths: ruler_quality
            rec["masked_lsd_db"] = ruler.measure(ref_audio[p.utt.id], out,
                                                 standard_figures=False).masked_lsd_db
        rec["n_tokens"] = p.n_tokens
        rec["words_checked_in_audio"] = timed
        if timed:
            cov = coverage.check(out, SAMPLE_RATE, utterance_words(p, outs[names.index(DURATIONS)]))
            if not cov.ok:
                rec["ok"] = False
                rec["problems"].append(f"words not heard: {[w.word for w in cov.failed][:10]}"
                                       if cov.words else f"words not heard: {cov.problem}")
        per[p.utt.id] = rec
    return {"per_utterance": per, "summary": summarize(per), "_audio": audio}


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(vals) if vals else None


def summarize(per: dict[str, dict]) -> dict[str, Any]:
    """Over utterances: ``lsd_db`` is the worst utterance's standard LSD (None when any
    utterance could not be measured), ``lsd_db_mean`` the mean beside it; the other
    figures are means."""
    recs = list(per.values())
    lsd = (quality.summary({k: r.get("lsd_db") for k, r in per.items()}) if per
           else {"worst": None, "worst_id": None, "mean": None})
    problems = {k: r["problems"] for k, r in per.items() if r.get("problems")}
    return {
        "ok": all(r.get("ok") for r in recs) and bool(recs),
        "problems": problems,
        # the standard LSD of the worst utterance (bounds apply to it), the mean beside it
        "lsd_db": lsd["worst"],
        "lsd_db_worst_id": lsd["worst_id"],
        "lsd_db_mean": lsd["mean"],
        # time-aligned where a length changed (labkit.quality.aligned_lsd_db): the spectral
        # part of the distance without the timing shift
        "lsd_db_aligned": _mean(r.get("lsd_db_aligned") for r in recs),
        # the ruler's distance where the whole outputs have the same length (sensitivity)
        "masked_lsd_db": (max(r["masked_lsd_db"] for r in recs)
                          if recs and all(r.get("masked_lsd_db") is not None for r in recs) else None),
        "spectral_convergence": _mean(r.get("spectral_convergence") for r in recs),
        "pesq_wb": _mean(r.get("pesq_wb") for r in recs),
        "stoi": _mean(r.get("stoi") for r in recs),
        "dnsmos_ovrl": _mean((r.get("dnsmos") or {}).get("ovrl") for r in recs),
        "dnsmos_ovrl_ref": _mean((r.get("dnsmos_ref") or {}).get("ovrl") for r in recs),
        "length_changes": sum(1 for r in recs if r.get("duration", {}).get("diff_s")),
        "truncated": sum(1 for r in recs if r.get("truncated")),
        "n": len(recs),
        # every utterance's words were checked in its audio (the model gave durations)
        "words_checked_in_audio": bool(recs) and all(r.get("words_checked_in_audio") for r in recs),
    }


# -- the whole bench ---------------------------------------------------------------------------
@dataclass
class Candidate:
    name: str
    path: Path
    note: str = ""


def timed_candidate(c: Candidate, cache: Path) -> Candidate:
    """``c`` on its model's copy with the durations output; ``c`` itself (noted) where the
    graph has no recognisable durations."""
    try:
        return Candidate(c.name, durations.ensure(c.path, cache), c.note)
    except durations.DurationsError as exc:
        return Candidate(c.name, c.path, f"{c.note} (no word timings: {exc})".strip())


def run_bench(reference: Candidate, candidates: Sequence[Candidate], session_cfg, heldout: Sequence,
              voices, token_lengths: Sequence[int], baseline: str, rounds: int | None = None,
              warmup: int = 1, speed_tokens: int = 120, with_dnsmos: bool = True,
              dev: Sequence | None = None, durations_cache: Path | None = None) -> dict[str, Any]:
    """Size, load time, quality on ``heldout`` (reported) and on ``dev`` (for choosing,
    under ``row["dev"]``; no DNSMOS) for the reference and every candidate, in one process;
    then the warm wall time of ``session.run`` at every length of ``token_lengths`` (and
    ``speed_tokens``), each against ``baseline``'s (:func:`speed_compare`). The comparison
    at ``speed_tokens`` is the one the journal chooses on; the other lengths are reported.
    ``row["vs_baseline"]``: ratio and 95 % interval at ``speed_tokens`` (> 1: faster than
    the baseline); ``row["speedup"]``: the paired speed-up over the reference there.
    With ``durations_cache``, every model runs as its copy with the durations output
    (labkit.optimize.durations.ensure: the same audio, checked) so that every word of
    every utterance is checked in the audio too."""
    if durations_cache is not None:
        reference = timed_candidate(reference, durations_cache)
        candidates = [timed_candidate(c, durations_cache) for c in candidates]
    rows: dict[str, dict] = {}
    sessions: dict[str, Any] = {}
    audio: dict[str, dict] = {}
    for c in [reference, *candidates]:
        row = {"path": str(c.path), "note": c.note, "size_mb": Path(c.path).stat().st_size / 1e6}
        try:
            row["load_s"] = load_seconds(c.path, session_cfg).median
            sessions[c.name] = make_session(c.path, session_cfg)
        except Exception as exc:  # noqa: BLE001 - a variant that does not load is failed
            row.update(ok=False, problems={"load": [f"{type(exc).__name__}: {exc}"]})
        rows[c.name] = row
    ref_sess = sessions[reference.name]
    ref_audio = reference_audio(ref_sess, heldout, voices)
    audio[reference.name] = ref_audio
    for name, sess in sessions.items():
        ev = evaluate(sess, heldout, voices, ref_audio, with_dnsmos=with_dnsmos)
        audio[name] = ev.pop("_audio")
        rows[name].update(ev["summary"])
        rows[name]["per_utterance"] = ev["per_utterance"]
    if dev:
        dev_ref = reference_audio(ref_sess, dev, voices)
        for name, sess in sessions.items():
            ev = evaluate(sess, dev, voices, dev_ref, with_dnsmos=False)
            rows[name]["dev"] = {**ev["summary"], "per_utterance": ev["per_utterance"]}
    lengths = sorted({int(n) for n in token_lengths} | {int(speed_tokens)})
    probes = {n: token_probe(heldout, n, voices) for n in lengths}
    comparisons = speed_compare(sessions, probes, baseline, rounds=rounds, warmup=warmup,
                                criterion_tokens=int(speed_tokens))
    for name in sessions:
        detail = {}
        for n, cmp in comparisons.items():
            audio_s = cmp.kept[name][0] / SAMPLE_RATE
            med = cmp.median(name)
            detail[n] = {"seconds": cmp.entries[name].timing.to_dict(), "audio_s": audio_s,
                         "rtf": med / max(audio_s, 1e-9), "ratio_vs_baseline": cmp.ratio(name),
                         "ci95_vs_baseline": list(cmp.ci95(name)),
                         "speedup_vs_reference": paired_speedup(cmp, reference.name, name)}
        rows[name]["speed_detail"] = detail
        rows[name]["rtf"] = {n: d["rtf"] for n, d in detail.items()}
        rows[name]["speedup_by_len"] = {n: d["speedup_vs_reference"] for n, d in detail.items()}
        at = comparisons[int(speed_tokens)]
        rows[name]["speedup"] = paired_speedup(at, reference.name, name)
        rows[name]["vs_baseline"] = {"tokens": int(speed_tokens), "ratio": at.ratio(name),
                                     "ci95": list(at.ci95(name))}
    for name, row in rows.items():
        row.setdefault("ok", False)
        row.setdefault("speedup", None)
    return {"rows": rows, "audio": audio, "comparisons": comparisons,
            "speed_tokens": int(speed_tokens), "baseline": baseline, "reference": reference.name}


def sensitivity(builder, families: Sequence[str], base_spec: dict, session_cfg, heldout: Sequence,
                voices, ref_audio: dict) -> dict[str, dict]:
    """Quantize one family at a time (``base_spec`` with ``families=[f]``) and measure the
    distance each costs on ``heldout`` (no DNSMOS: quick)."""
    out: dict[str, dict] = {}
    for fam in progress.steps(list(families), "sensitivity families"):
        spec = VariantSpec(**{**base_spec, "name": f"sens-{base_spec.get('recipe')}-{fam}",
                              "families": [fam]}).validate()
        try:
            built = builder.build(spec)
            sess = make_session(built.path, session_cfg)
            ev = evaluate(sess, heldout, voices, ref_audio, with_dnsmos=False)
            s = ev["summary"]
            out[fam] = {"ok": s["ok"], "masked_lsd_db": s["masked_lsd_db"], "lsd_db": s["lsd_db"],
                        "pesq_wb": s["pesq_wb"],
                        "length_changes": s["length_changes"], "problems": s["problems"],
                        "nodes_quantized": built.nodes_quantized}
        except Exception as exc:  # noqa: BLE001 - reported, the family stays float
            out[fam] = {"ok": False, "masked_lsd_db": None, "lsd_db": None,
                        "error": f"{type(exc).__name__}: {exc}"}
    return out


# -- choosing -----------------------------------------------------------------------------------
def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated on (speed ratio: higher is better, lsd: lower is better)."""
    front = []
    for name, (speed, lsd) in points.items():
        dominated = any(s >= speed and l <= lsd and (s > speed or l < lsd)
                        for other, (s, l) in points.items() if other != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: -points[n][0])


@dataclass
class Targets:
    #: the speed the fast pick should reach over the reference (issue #33)
    fast_speedup: float = 1.5


def select(rows: dict[str, dict], baseline: str | None, targets: Targets = Targets()) -> dict:
    """The fastest variant whose quality passed the ruler (``row["quality"]``, from
    :func:`ruler_quality`), and whether it meets the speed target; failed variants and
    those the ruler rejects are listed, never chosen."""
    out: dict[str, Any] = {"failed": sorted(n for n, r in rows.items() if not r.get("ok")),
                           "rejected_by_the_ruler": sorted(
                               n for n, r in rows.items()
                               if (r.get("quality") or {}).get("verdict") == "fail")}
    ok = {n: r for n, r in rows.items() if r.get("ok") and r.get("speedup") is not None
          and (r.get("quality") or {}).get("verdict") == "pass"}
    if not ok:
        out["fast"] = None
        return out
    name = max(ok, key=lambda n: ok[n]["speedup"])
    out["fast"] = {"variant": name, "speedup": ok[name]["speedup"],
                   "meets_speed_target": ok[name]["speedup"] >= targets.fast_speedup,
                   "is_baseline": name == baseline}
    return out


def choose_families(sensitivity: dict[str, dict], budget_db: float) -> dict[str, Any]:
    """Mixed precision from per-family sensitivity {family: {"ok", "masked_lsd_db"}} (the
    ruler's distance, worst utterance): quantize the families that keep their output valid
    and cost least, while the sum of their costs stays within ``budget_db`` (a rough,
    additive model; the mixed variant is measured)."""
    usable = sorted(((f, r["masked_lsd_db"]) for f, r in sensitivity.items()
                     if r.get("ok") and r.get("masked_lsd_db") is not None), key=lambda x: x[1])
    chosen, total = [], 0.0
    for fam, cost in usable:
        if total + cost <= budget_db:
            chosen.append(fam)
            total += cost
    kept = sorted(set(sensitivity) - set(chosen))
    return {"quantize": chosen, "keep_float": kept, "estimated_masked_lsd_db": total,
            "budget_db": budget_db}


# -- candidates for the journal's selection (labkit.lab.selection) --------------------------------------
#: problem string prefix (labkit.quality.check_audio, evaluate, run_bench) -> check name
_CHECKS = (("nan", "NaN"), ("empty", "silence"), ("silence", "silence"), ("clipping", "clipping"),
           ("run failed", "load"), ("words not heard", "words"))


_CHECK_ORDER = ["NaN", "silence", "clipping", "words", "load"]


def failed_checks(row: dict[str, Any]) -> list[str]:
    """Names of the checks a bench row failed (NaN, silence, clipping, words, load), in
    that order, each once; empty when the variant is usable."""
    problems = row.get("problems") or {}
    found = set()
    if "load" in problems:
        found.add("load")
    for key, msgs in problems.items():
        for msg in msgs if isinstance(msgs, list) else [msgs]:
            text = str(msg).lower()
            for prefix, name in _CHECKS:
                if text.startswith(prefix):
                    found.add(name)
    if not found and row.get("ok") is False:
        found.add("load")  # not ok without a named problem: never measured
    return [n for n in _CHECK_ORDER if n in found]


def _by_len(d: dict | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}  # JSON turns int keys into strings


def candidates(rows: dict[str, dict], reference_name: str, comparison: Comparison,
               reference_variant: str = "fp32-recon", baseline_name: str = "int8") -> list[dict[str, Any]]:
    """Bench rows as the journal's candidates: the reference first, then the shipped
    baseline (``"baseline": True`` with the A/A control's interval), then every variant in
    bench order, each with its ratio and 95 % interval against the baseline from
    ``comparison`` (the warm wall time at the stage's representative length). ``ttfa_s``
    is the warm median seconds at the shortest probe length (one chunk: compute time is the
    time to first audio); ``rtf`` the median warm RTF over the probe lengths; ``quality``
    the ruler's verdict (:func:`ruler_quality`: development and held-out sets, like with
    like); ``lsd_db`` / ``pesq_wb`` (development set) and ``heldout_lsd_db`` are the
    standard figures, reported. Variants are selected by their model file
    (``model_path``). A variant that never ran has no ratio and is not ``measured`` on the
    criterion: it cannot be chosen."""
    if reference_name not in rows:
        raise KeyError(f"reference row {reference_name!r} missing; rows are {list(rows)}")
    if baseline_name not in rows:
        raise KeyError(f"baseline row {baseline_name!r} missing; rows are {list(rows)}")
    order = [reference_name, baseline_name]
    order += [n for n in rows if n not in order]
    out = []
    for name in order:
        r = rows[name]
        dev = {} if name == reference_name else (r.get("dev") or {})
        detail = _by_len(r.get("speed_detail"))
        rtf = _by_len(r.get("rtf"))
        shortest = min(detail) if detail else None
        if name == reference_name:
            overrides: dict[str, Any] = {"variant": reference_variant}
            quality = quality_entry(True, basis="the reference itself")
        else:
            overrides = ({"variant": baseline_name} if name == baseline_name
                         else {"variant": name, "model_path": str(Path(r["path"]).resolve())})
            quality = r.get("quality") or quality_entry(None, ["not measured"])
        timed = name in comparison.entries
        c = {
            "name": name,
            "overrides": overrides,
            "measured": ([CRITERION] if timed else [])
                        + (["quality"] if quality.get("verdict") is not None else []),
            "ttfa_s": (detail[shortest]["seconds"]["median"] if shortest is not None else None),
            "rtf": statistics.median(rtf.values()) if rtf else None,
            "quality": quality,
            "lsd_db": 0.0 if name == reference_name else dev.get("lsd_db"),
            "pesq_wb": None if name == reference_name else dev.get("pesq_wb"),
            "heldout_lsd_db": 0.0 if name == reference_name else r.get("lsd_db"),
            # the checks failed on either set (a check that fails on the held-out set fails)
            "failed_checks": [] if name == reference_name else sorted(
                set(failed_checks(r)) | set(failed_checks(r.get("dev") or {})),
                key=_CHECK_ORDER.index),
        }
        if name == baseline_name:
            c.update(comparison.baseline_fields())
        elif timed:
            c.update(comparison.selection_fields(name))
        else:
            c.update(criterion=CRITERION, ratio=None, ci95=None)
        out.append(c)
    return out


# -- quality: the ruler, like with like ------------------------------------------------------------
def ruler_quality(rows: dict[str, dict], reference: Path, audio: dict[str, dict], held: Sequence,
                  dev: Sequence, voices, session_cfg, cache: Path) -> dict[str, Any]:
    """Each variant judged by the ruler on its vocoder at the reference's alignment
    (labkit.measure.vocoder), its durations against the reference's, and the recognizer's
    word error rate of its own held-out output against the reference's; sets
    ``row["ruler"]`` (per set) and ``row["quality"]`` (the candidate's entry: passed only
    when both sets pass). Returns the reference's word error rate. Models are split once
    into ``cache/split`` (labkit.optimize.split), their copies with the durations output
    built into ``cache/durations``."""
    def parts(path: Path):
        return splitting.split_files(durations.ensure(path, cache / "durations"), cache / "split")

    at = vocoder.AtReference(parts(reference), session_cfg)
    texts = {p.utt.id: p.utt.text for p in held}
    ref_wer = vocoder.reference_word_errors(audio[REFERENCE], texts)
    basis = ("the ruler (labkit.quality.ruler) on the vocoder at the reference's alignment, "
             "development and held-out sets; durations token by token; word error rate "
             "(pocketsphinx) on held-out against the reference's")
    for name, row in rows.items():
        if name == REFERENCE or name not in audio:
            continue
        try:
            p = parts(Path(row["path"]))
            held_q = vocoder.judge(at, p, held, voices, audio[name], ref_wer)
            dev_q = vocoder.judge(at, p, dev, voices)
            how = basis
        except (splitting.SplitError, vocoder.NotComparable, durations.DurationsError) as exc:
            # a graph that cannot be cut where the reference's is: its own output, aligned
            held_q = vocoder.judge_whole(audio[REFERENCE], audio[name], texts, ref_wer)
            dev_q = {"summary": {"passed": True, "reasons": [], "failed_utterances": []}}
            how = (f"the ruler on the whole outputs, held-out set only (not cut like the "
                   f"reference: {type(exc).__name__}: {str(exc)[:160]}); word error rate as above")
        row["ruler"] = {"heldout": held_q, "dev": dev_q}
        hs, ds = held_q["summary"], dev_q["summary"]
        reasons = [f"held-out {x}" for x in hs["reasons"]] + [f"dev {x}" for x in ds["reasons"]]
        row["quality"] = quality_entry(
            hs["passed"] and ds["passed"], reasons, how,
            masked_lsd_db=hs.get("worst_masked_lsd_db"),
            masked_lsd_peak_db=hs.get("worst_masked_lsd_peak_db"),
            gap_ms=hs.get("worst_gap_ms"), max_token_shift=hs.get("max_token_shift"),
            tokens_moved=hs.get("tokens_moved"), wer=hs.get("wer"), wer_reference=hs.get("wer_reference"),
            wer_allowed_increase=hs.get("wer_allowed_increase"),
            failed_utterances=hs["failed_utterances"] + ds["failed_utterances"])
    return ref_wer


# -- profile ---------------------------------------------------------------------------------------
def profile(model: Path, session_cfg, feeds: dict, out_dir: Path, runs: int = 2) -> dict[str, Any]:
    """ORT's profiler on warm runs (labkit.measure.profile): time by op type and by module
    family (labkit.optimize.quantize.family_of)."""
    return profiling.profile_session(model, session_cfg, feeds, runs=runs, warmup=1,
                                     out_dir=out_dir, family_of=family_of)


#: op types a QDQ/int8 recipe replaces (float side) and the int8 kernels that replace them
FLOAT_HEAVY_OPS = ("Conv", "MatMul", "FusedMatMul", "FusedConv")
INT8_OPS = ("QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeLinear",
            "QuantizeLinear", "DequantizeLinear", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")


def speed_bound(ref_profile: dict, var_profile: dict | None = None) -> dict[str, Any]:
    """Why the speed-up is what it is, from two ORT profiles (labkit.lab.s03_quantization.profile):
    the share of the reference's kernel time in float Conv/MatMul (what int8 can touch),
    and Amdahl's bound on the whole-run speed-up if that share ran 2x / 4x faster; with a
    variant's profile, the measured kernel-time ratio of what replaced it."""
    total = ref_profile["kernel_seconds"] or 1e-12
    heavy = sum(v for k, v in ref_profile["by_op"].items() if k in FLOAT_HEAVY_OPS)
    p = heavy / total
    out: dict[str, Any] = {"heavy_share": p,
                           "bound_if_2x": 1.0 / (1.0 - p + p / 2.0),
                           "bound_if_4x": 1.0 / (1.0 - p + p / 4.0)}
    if var_profile is not None:
        v_heavy = sum(v for k, v in var_profile["by_op"].items()
                      if k in FLOAT_HEAVY_OPS or k in INT8_OPS)
        out["replaced_kernel_ratio"] = heavy / v_heavy if v_heavy else None
        out["qdq_overhead_s"] = sum(v for k, v in var_profile["by_op"].items()
                                    if k in ("QuantizeLinear", "DequantizeLinear",
                                             "DynamicQuantizeLinear"))
        out["total_ratio"] = total / (var_profile["kernel_seconds"] or 1e-12)
    return out


def share(d: dict[str, float], top: int = 12) -> list[tuple[str, float, float]]:
    total = sum(d.values()) or 1.0
    return [(k, v, v / total) for k, v in list(d.items())[:top]]


# -- listening page --------------------------------------------------------------------------------
def listening_page(out_dir: Path, sentence: str, utt_id: str, clips: dict[str, np.ndarray],
                   figures: dict[str, dict]) -> Path:
    """Write one wav per variant and an HTML table (reference first) to ``out_dir``."""
    import soundfile as sf

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, audio in clips.items():
        wav = out_dir / f"{utt_id}.{name}.wav"
        sf.write(str(wav), np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
        f = figures.get(name, {})
        cells = "".join(f"<td>{_fmt(f.get(k))}</td>" for k in ("lsd_db", "pesq_wb", "dnsmos_ovrl", "speedup"))
        rows.append(f"<tr><td>{html.escape(name)}</td><td><audio controls src='{wav.name}'></audio>"
                    f"</td>{cells}</tr>")
    page = out_dir / "listening.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>Kokoro variants</title>"
        f"<h1>Listening table: {html.escape(utt_id)}</h1><p>{html.escape(sentence)}</p>"
        "<table border=1 cellpadding=4><tr><th>variant</th><th>audio</th><th>LSD dB</th>"
        "<th>PESQ</th><th>DNSMOS</th><th>speed-up</th></tr>" + "".join(rows) + "</table>",
        encoding="utf-8")
    return page


def _fmt(v) -> str:
    return html.escape(fixed(v, 2) if isinstance(v, float) else cell(v))


# -- the stage: run and record --------------------------------------------------------------------
def run(cfg: LabConfig, st, *, reference: str | None = None, baseline: str = "int8",
        variants: Sequence = (), heldout_ids: Sequence[str] | None = None,
        calibration_ids: Sequence[str] | None = None, token_lengths: Sequence[int] = (25, 120, 250),
        speed_tokens: int = 120, rounds: int | None = None, warmup: int = 1,
        with_dnsmos: bool = True, sensitivity_families: Sequence[str] = (),
        sensitivity_spec: dict | None = None, sensitivity_ids: Sequence[str] | None = None,
        mixed_budget_db: float | None = None, profile_tokens: int = 0,
        listen_id: str | None = None) -> dict[str, Any]:
    """The whole stage: the reference and the corpora, the builds, the sensitivity sweep
    and the mixed variant (on the development set), the bench (quality, and speed against
    ``baseline`` through the one instrument), the Pareto front, the listening page, the
    profile and the targets' selection. Files go under the stage's folder (``st.path``)."""
    if not baseline:
        raise ValueError("baseline: the shipped variant (e.g. 'int8') every variant is timed against")
    notes: list[str] = []
    ref = assets.reference(cfg) if reference is None else assets.ModelRef(
        reference, assets.model_path(cfg, reference), "chosen by parameter")
    assets.require(ref.path, "reference model")
    voices = VoiceBank.load(assets.voices_path(cfg))
    # reported figures on the held-out set; choosing (sensitivity, block lists) on the dev set
    held_c = corpora.load("heldout", purpose="report")
    held = corpora.prepare(held_c.select(ids=heldout_ids))
    cal = corpora.prepare(corpora.load("calibration", purpose="calibrate").select(ids=calibration_ids))
    dev = corpora.prepare(corpora.load("dev", purpose="choose").select(ids=sensitivity_ids))
    corpora_info = {
        "heldout": {p.utt.id: p.n_tokens for p in held},
        "calibration": {p.utt.id: p.n_tokens for p in cal},
        "dev": {p.utt.id: p.n_tokens for p in dev},
        "overlap": {d: corpora.overlap(corpora.load(d), held_c) for d in ("calibration", "dev")}}

    builder = quantize.Builder(ref.path, st.path("models"), calibration=cal, voices=voices)
    built = {}
    for item in progress.steps(list(variants), "builds", label=lambda v: str(
            v.get("name", "") if isinstance(v, dict) else v)):
        b = builder.build(item)
        built[b.spec.name] = b

    sens: dict[str, dict] = {}
    plan = None
    spec = dict(sensitivity_spec or {"recipe": "static", "calibration": "minmax"})
    if sensitivity_families:
        ref_sess = make_session(ref.path, cfg.session)
        dev_ref = reference_audio(ref_sess, dev, voices)  # choosing: the development set
        del ref_sess
        sens = sensitivity(builder, sensitivity_families, spec, cfg.session, dev, voices, dev_ref)
        plan = choose_families(sens, ruler.BOUNDS["masked_lsd_db"] if mixed_budget_db is None
                               else mixed_budget_db)
        if plan["quantize"]:
            b = builder.build({**spec, "name": "mixed", "families": plan["quantize"]})
            built[b.spec.name] = b
        else:
            notes.append("no family fits the mixed-precision budget: no mixed variant built")
    else:
        notes.append("sensitivity sweep skipped (sensitivity_families=[])")

    cands = [Candidate(baseline, assets.model_path(cfg, baseline), "shipped")]
    cands += [Candidate(n, b.path, json.dumps(b.spec.to_dict())) for n, b in built.items()
              if n != baseline]
    bench = run_bench(Candidate(REFERENCE, ref.path, ref.note), cands, cfg.session, held, voices,
                      token_lengths, baseline, rounds=rounds, warmup=warmup,
                      speed_tokens=speed_tokens, with_dnsmos=with_dnsmos, dev=dev,
                      # every model as its copy with word timings: each word checked in the audio
                      durations_cache=Path(cfg.resolve(cfg.artifacts_dir)) / "cache" / "durations")
    rows = bench["rows"]
    cache = Path(cfg.resolve(cfg.artifacts_dir)) / "cache"
    ref_wer = ruler_quality(rows, ref.path, bench["audio"], held, dev, voices, cfg.session, cache)
    rows[REFERENCE]["wer"] = ref_wer

    # speed against the ruler's distance (held-out, worst utterance, like with like)
    pts = {n: (r["speedup"], r["quality"]["masked_lsd_db"]) for n, r in rows.items()
           if n != REFERENCE and r.get("speedup") is not None
           and (r.get("quality") or {}).get("masked_lsd_db") is not None}
    front = pareto_front({n: v for n, v in pts.items() if rows[n]["ok"]})

    lid = listen_id or next((p.utt.id for p in held if p.utt.size == "medium"), held[0].utt.id)
    utt = next(p for p in held if p.utt.id == lid)
    clips = {n: a[lid] for n, a in bench["audio"].items() if lid in a}
    page = listening_page(st.path("listening"), utt.utt.text, lid, clips, rows)

    profiles: dict[str, dict] = {}
    bound = None
    if profile_tokens:
        feeds = token_probe(held, profile_tokens, voices)
        timed = sorted((r["vs_baseline"]["ratio"], n) for n, r in rows.items()
                       if n != REFERENCE and r.get("vs_baseline") and r.get("ok"))
        targets_ = {REFERENCE: ref.path, **({timed[-1][1]: Path(rows[timed[-1][1]]["path"])}
                                            if timed else {})}
        profiles = {n: profile(pth, cfg.session, feeds, st.path("profiles"))
                    for n, pth in targets_.items()}
        other = next((p for n, p in profiles.items() if n != REFERENCE), None)
        bound = speed_bound(profiles[REFERENCE], other)

    sel = select({n: r for n, r in rows.items() if n != REFERENCE}, baseline)
    out = {"reference": {"variant": ref.variant, "path": str(ref.path), "note": ref.note},
            "corpora": corpora_info, "builds": {k: v.to_dict() for k, v in built.items()},
            "sensitivity": ({"spec": spec, "families": sens, "mixed_plan": plan,
                             "dev_ids": [p.utt.id for p in dev]} if sensitivity_families else None),
            "rows": rows, "comparisons": bench["comparisons"], "speed_tokens": bench["speed_tokens"],
            "baseline": baseline, "token_lengths": sorted(bench["comparisons"]),
            "pareto_points": pts, "pareto_front": front,
            "listen": {"id": lid, "text": utt.utt.text, "page": str(page)}, "clips": clips,
            "profiles": profiles, "speed_bound": bound, "selection": sel, "notes": notes}
    # what the journal's selection would take from this stage (labkit.lab.selection)
    top = rank(candidates(rows, REFERENCE, bench["comparisons"][bench["speed_tokens"]],
                          reference_variant=ref.variant, baseline_name=baseline), cfg.selection, NAME)
    out["ships"] = top[0]["name"] if top else baseline
    out["_listening"] = side_by_side(out)
    return out


def headline(result: dict[str, Any]) -> dict[str, Any]:
    rows, n, base = result["rows"], result["speed_tokens"], result["baseline"]
    cmp = result["comparisons"][n]
    out: dict[str, Any] = {"reference": result["reference"]["variant"], "baseline": base,
                           f"speed noise band (A/A) @{n} tok": [round(x, 3) for x in cmp.noise_band]}
    for name, r in rows.items():
        vb = r.get("vs_baseline")
        if name != base and vb:
            out[f"{name} speed vs {base} @{n} tok (x)"] = {
                "value": round(vb["ratio"], 3), "ci95": [round(x, 3) for x in vb["ci95"]]}
        if name == REFERENCE:
            continue
        out[f"{name} speed-up over the reference @{n} tok"] = (
            round(r["speedup"], 3) if r.get("speedup") is not None else None)
        q = r.get("quality") or {}
        out[f"{name} ruler (dev and held-out)"] = q.get("verdict") or "not measured"
        for key, label in (("masked_lsd_db", "masked LSD dB"), ("masked_lsd_peak_db", "worst frame dB"),
                           ("gap_ms", "longest gap ms")):
            if q.get(key) is not None:
                out[f"{name} {label} (worst held-out, vocoder at the reference's alignment)"] = round(q[key], 2)
        if q.get("max_token_shift") is not None:
            out[f"{name} durations: largest token shift (frames), tokens moved"] = (
                f"{q['max_token_shift']}, {q['tokens_moved']:.1%}")
        if q.get("wer") is not None:
            out[f"{name} word error rate (held-out; reference {q['wer_reference']:.3f}, "
                f"allowed +{q.get('wer_allowed_increase', vocoder.MAX_WER_INCREASE):.3f})"] = round(q["wer"], 3)
        if r.get("lsd_db") is not None:
            out[f"{name} standard LSD dB (worst held-out, whole output; reported)"] = round(r["lsd_db"], 2)
        out[f"{name} ok"] = bool(r.get("ok"))
    out["fast variant (fastest that passes the ruler)"] = (result["selection"].get("fast") or {}).get(
        "variant", "none")
    return out


def record(st, result: dict[str, Any]) -> None:
    n = result["speed_tokens"]
    st.metrics["reference"] = result["reference"]
    st.metrics["corpora"] = result["corpora"]
    st.metrics["builds"] = result["builds"]
    st.metrics["dnsmos_note"] = dnsmos.NOTE
    if result["sensitivity"] is not None:
        st.metrics["sensitivity"] = result["sensitivity"]
    st.metrics["bench"] = result["rows"]
    st.metrics["comparisons"] = {
        f"warm session.run, {k} tokens{' (the criterion)' if k == n else ''}": c.to_dict()
        for k, c in result["comparisons"].items()}
    st.metrics["pareto_front"] = result["pareto_front"]
    st.metrics["listening_page"] = str(Path(result["listen"]["page"]).relative_to(st.dir))
    if result.get("_listening") is not None:
        st.metrics["listen"] = result["_listening"].to_dict()
        listening.write(result["_listening"], st.dir)
    st.metrics["profile"] = {k: {kk: vv for kk, vv in p.items() if kk != "file"}
                             for k, p in result["profiles"].items()}
    if result["speed_bound"] is not None:
        st.metrics["speed_bound"] = result["speed_bound"]
    st.metrics["selection"] = result["selection"]
    st.metrics["headline"] = headline(result)
    st.metrics["candidates"] = candidates(result["rows"], REFERENCE, result["comparisons"][n],
                                          reference_variant=result["reference"]["variant"],
                                          baseline_name=result["baseline"])
    for text in result["notes"]:
        st.note(text)
    st.metrics["quality_definition"] = ruler.definition()
    st.note(f"speed: every variant against {result['baseline']} on the warm wall time of one "
            f"session.run at {n} tokens (labkit.measure.compare); the other lengths are reported. "
            "Quality: the ruler's verdict on the vocoder at the reference's alignment, on the "
            "development and the held-out set (a variant must pass both); standard figures "
            "are reported beside it")


# -- tables and plots for the notebook ------------------------------------------------------------
def _f(v) -> str:
    return "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def sensitivity_table(result: dict[str, Any]) -> str:
    sens = (result.get("sensitivity") or {}).get("families") or {}
    lines = ["| block | ok | masked LSD dB (the ruler; what the mixed plan adds up) | "
             "standard LSD dB (reported) | PESQ | length changes |", "|---|---|---|---|---|---|"]
    lines += [f"| {fam} | {r.get('ok')} | {_f(r.get('masked_lsd_db'))} | {_f(r.get('lsd_db'))} | "
              f"{_f(r.get('pesq_wb'))} | {_f(r.get('length_changes'))} |" for fam, r in sens.items()]
    return "\n".join(lines) if sens else "(sensitivity sweep not run)"


def bench_table(result: dict[str, Any]) -> str:
    lengths, n, base = result["token_lengths"], result["speed_tokens"], result["baseline"]
    hdr = ("| variant | ok | MB | load s | " + " | ".join(f"RTF@{k}" for k in lengths)
           + f" | vs {base} @{n} | 95 % interval | speed-up over ref | LSD dB dev | LSD dB held-out "
           "worst | held-out mean | time-aligned | PESQ | STOI | DNSMOS | problems |")
    lines = [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for name, r in result["rows"].items():
        rtf = " | ".join(_f((r.get("rtf") or {}).get(k)) for k in lengths)
        vb = r.get("vs_baseline") or {}
        ci = vb.get("ci95")
        lines.append(
            f"| {name} | {'ref' if name == REFERENCE else r['ok']} | {_f(r['size_mb'])} | "
            f"{_f(r.get('load_s'))} | {rtf} | {_f(vb.get('ratio'))} | "
            f"{'—' if not ci else f'[{ci[0]:.3f}, {ci[1]:.3f}]'} | {_f(r.get('speedup'))} | "
            f"{_f((r.get('dev') or {}).get('lsd_db'))} | {_f(r.get('lsd_db'))} | "
            f"{_f(r.get('lsd_db_mean'))} | {_f(r.get('lsd_db_aligned'))} | {_f(r.get('pesq_wb'))} | "
            f"{_f(r.get('stoi'))} | {_f(r.get('dnsmos_ovrl'))} | {len(r.get('problems') or {})} |")
    return "\n".join(lines)


def failures(result: dict[str, Any]) -> dict[str, str]:
    """variant -> its problems (JSON, cut), for the variants that failed a check."""
    return {n: json.dumps(r["problems"])[:400] for n, r in result["rows"].items()
            if n != REFERENCE and r.get("problems")}


def candidates_table(cands: list[dict[str, Any]]) -> str:
    lines = ["| candidate | baseline | ratio | 95 % interval | ttfa s | rtf | ruler | why | LSD dB (dev, reported) | failed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cands:
        ci = c.get("ci95")
        q = c.get("quality") or {}
        lines.append(f"| {c['name']} | {bool(c.get('baseline'))} | {_f(c.get('ratio'))} | "
                     f"{'—' if not ci else f'[{ci[0]:.3f}, {ci[1]:.3f}]'} | {_f(c['ttfa_s'])} | "
                     f"{_f(c['rtf'])} | {q.get('verdict') or 'not measured'} | "
                     f"{'; '.join(q.get('reasons') or [])[:160] or '-'} | {_f(c['lsd_db'])} | "
                     f"{', '.join(c['failed_checks']) or '-'} |")
    return "\n".join(lines)


def profile_tables(result: dict[str, Any]) -> str:
    out = []
    for n, p in result["profiles"].items():
        out.append(f"**{n}**: {p['kernel_seconds']:.2f} s of kernels per run\n")
        for what in ("by_op", "by_family"):
            out += [f"| {what[3:]} | s | share |", "|---|---|---|"]
            out += [f"| {k} | {v:.3f} | {sh:.1%} |" for k, v, sh in share(p[what])]
            out.append("")
    b = result["speed_bound"]
    if b:
        out.append(f"Float Conv/MatMul share of the reference's kernel time: {b['heavy_share']:.1%}; "
                   f"whole-run speed-up if they ran 2x faster: {b['bound_if_2x']:.2f}x, "
                   f"4x faster: {b['bound_if_4x']:.2f}x.")
        if b.get("total_ratio") is not None:
            out.append(f" Fastest variant: those kernels (int8 + Q/DQ) "
                       f"{_f(b.get('replaced_kernel_ratio'))}x faster, Q/DQ overhead "
                       f"{b['qdq_overhead_s']:.3f} s, all kernels {b['total_ratio']:.2f}x.")
    return "\n".join(out) if out else "(profile not run: profile_tokens=0)"


def plot_pareto(result: dict[str, Any], plt, targets: Targets = Targets()):
    """Speed-up over the reference against the ruler's masked LSD (worst held-out utterance,
    the vocoder at the reference's alignment): variants the ruler rejects as x, the front
    joined, the ruler's bound and the speed target dotted."""
    rows, pts, front = result["rows"], result["pareto_points"], result["pareto_front"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, (sp, d) in pts.items():
        passed = (rows[n].get("quality") or {}).get("verdict") == "pass"
        ax.scatter(d, sp, marker="o" if passed else "x", color="C0" if n in front else "C7")
        ax.annotate(n, (d, sp), fontsize=8, xytext=(4, 3), textcoords="offset points")
    fp = sorted((pts[n] for n in front), key=lambda p: p[1])
    ax.plot([p[1] for p in fp], [p[0] for p in fp], "C0--", lw=1)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.axhline(targets.fast_speedup, color="g", lw=0.5, ls=":")
    ax.axvline(ruler.BOUNDS["masked_lsd_db"], color="b", lw=0.5, ls=":")
    ax.set_xlabel("masked LSD to the reference (dB, worst held-out utterance; the ruler's bound dotted)")
    ax.set_ylabel(f"speed-up over the reference (paired, {result['speed_tokens']} tokens)")
    ax.set_title("Kokoro variants: speed vs what a listener can hear change")
    fig.tight_layout()
    return fig


def plot_vs_baseline(result: dict[str, Any], plt):
    """Each variant's speed against the baseline at every length, with its interval."""
    lengths, base = result["token_lengths"], result["baseline"]
    names = [n for n in result["rows"] if n in result["comparisons"][lengths[0]].entries and n != base]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * max(1, len(names)) * len(lengths)))
    ys, labels = [], []
    for i, (k, name) in enumerate((k, n) for k in lengths for n in names):
        c = result["comparisons"][k]
        r, (lo, hi) = c.ratio(name), c.ci95(name)
        ax.errorbar(r, i, xerr=[[r - lo], [hi - r]], fmt="o", color=f"C{lengths.index(k)}")
        ys.append(i)
        labels.append(f"{name} @{k}")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel(f"times faster than {base} (95 % interval; > 1: faster)")
    fig.tight_layout()
    return fig


# -- listen and try it ------------------------------------------------------------------------------
def shipped_variant(result: dict[str, Any]) -> tuple[str | None, bool]:
    """(the variant this stage ships, True) -- what the journal's selection takes from its
    candidates (``result["ships"]``: passed the ruler and every check, faster than the
    baseline beyond the threshold) when that is not the baseline; else (the runner-up,
    False): the fastest variant the ruler passed (the stage's fast pick), or the fastest
    variant that ran without a failed check (None when there is none)."""
    base = result["baseline"]
    ships = result.get("ships")
    if ships and ships != base:
        return ships, True
    fast = ((result.get("selection") or {}).get("fast") or {}).get("variant")
    if fast and fast != base and fast in result["clips"]:
        return fast, False
    others = [(r.get("speedup") or 0.0, n) for n, r in result["rows"].items()
              if n not in (REFERENCE, base) and r.get("ok") and n in result["clips"]]
    return (max(others)[1], False) if others else (None, False)


def side_by_side(result: dict[str, Any]) -> listening.Listening:
    """The held-out listening sentence through the shipped int8 (stock) and through what
    the stage ships (or, when it ships int8, the runner-up), each read by the ruler against
    the reference model's output of the same sentence (whole outputs, aligned)."""
    base, clips = result["baseline"], result["clips"]
    name, ships = shipped_variant(result)
    stock_label, other_label = listening.labels(base, name or "-", not ships)
    takes = {stock_label: clips[base]}
    if name is not None:
        takes[other_label] = clips[name]
    utt = listening.sentence(result["listen"]["id"])
    return listening.listening(
        utt, f"the reference model ({result['reference']['variant']}) reading the same sentence",
        clips[REFERENCE], takes,
        note="Whole outputs, aligned by the ruler; the selection reads each variant's vocoder "
             "at the reference's alignment on every development and held-out utterance.")


def try_controls(result: dict[str, Any]) -> dict[str, Any]:
    """The "Try it" knobs: a variant this run benched (what ships first) and a held-out
    sentence (the listening one first)."""
    name, _ = shipped_variant(result)
    names = [n for n in result["rows"] if n != REFERENCE]
    first = result["listen"]["id"]
    held = corpora.load("heldout", purpose="report")
    utts = sorted(held, key=lambda u: u.id != first)
    return {"variant": list(dict.fromkeys([name or result["baseline"], *names])),
            "utterance": [(f"{u.id}: {u.text[:60]}", u.id) for u in utts]}


def try_variant(result: dict[str, Any], variant: str, utterance: str, cfg: LabConfig) -> list[Any]:
    """Try it: ``variant`` (a model this run benched) reading the held-out ``utterance``
    beside the reference model's reading of it: both players and the ruler's figures (a
    :class:`labkit.lab.listen.Listening`)."""
    rows = result["rows"]
    if variant not in rows:
        raise KeyError(f"variant {variant!r}: this run benched {sorted(rows)}")
    utt = listening.sentence(utterance)
    feeds = listening.prepared(utt).feeds(VoiceBank.load(assets.voices_path(cfg)))
    audio = {n: np.asarray(make_session(Path(rows[n]["path"]), cfg.session).run(None, feeds)[0]).ravel()
             for n in dict.fromkeys([REFERENCE, variant])}
    return [listening.listening(utt, f"the reference model ({result['reference']['variant']})",
                                audio[REFERENCE], {variant: audio[variant]})]


__all__ = ["NAME", "CRITERION", "run", "record", "headline", "token_probe", "load_seconds",
           "speed_compare", "paired_speedup", "reference_audio", "evaluate", "summarize",
           "pareto_front", "select", "ruler_quality", "Targets", "choose_families", "profile",
           "share", "listening_page", "candidates", "failed_checks", "speed_bound",
           "bench_table", "sensitivity_table", "candidates_table", "profile_tables", "failures",
           "plot_pareto", "plot_vs_baseline", "side_by_side", "shipped_variant", "try_variant", "try_controls"]
