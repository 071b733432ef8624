"""The variant bench of stage 03: size, load time, warm RTF and quality of each variant
against the reference, measured side by side in one process; the Pareto front; the
selection; the ORT profile that explains the speed; a listening page.

Quality uses labkit.quality. Choosing (the fast / near-lossless picks, the journal's
candidates, the sensitivity sweep) reads figures measured on the development set
(``run_bench(..., dev=...)`` stores them under ``row["dev"]``); the held-out figures in
the row itself are reported only. A variant whose output has NaN, silence, clipping or a
different length than the reference's on any input is *failed*: reported, never selected.
"""
from __future__ import annotations

import html
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labkit import quality
from labkit.engine import words as wordsmod
from labkit.engine.cache import make_session
from labkit.engine.g2p import VOCAB, get_g2p
from labkit.engine.ort import SAMPLE_RATE, kokoro_feeds, style_row
from labkit.engine.runtime import DURATIONS
from labkit.measure import coverage, dnsmos
from labkit.measure import profile as profiling
from labkit.optimize import durations
from labkit.optimize.quantize import VariantSpec, family_of
from labkit.tables import cell, fixed
from labkit.timing import Timing, measure


# -- inputs ----------------------------------------------------------------------------------
def token_probe(prepared: Sequence, n_tokens: int, voices) -> dict[str, np.ndarray]:
    """Feeds of exactly ``n_tokens`` tokens: held-out phonemes concatenated (with a space)
    and cut, voice and speed of the first utterance. For RTF at a chosen length."""
    if not 1 <= n_tokens <= 510:
        raise ValueError(f"n_tokens={n_tokens}: Kokoro takes 1 to 510 tokens")
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


def warm_rtf(session, feeds: dict, repeats: int = 3, warmup: int = 1) -> dict[str, Any]:
    timing, out = measure(lambda: session.run(None, feeds)[0], repeats=repeats, warmup=warmup)
    audio_s = np.size(out) / SAMPLE_RATE
    return {"seconds": timing.to_dict(), "audio_s": audio_s,
            "rtf": timing.median / max(audio_s, 1e-9), "rtf_p90": timing.p90 / max(audio_s, 1e-9)}


def speed_side_by_side(sessions: dict[str, Any], probes: dict[int, dict], repeats: int = 3
                       ) -> dict[str, dict[int, dict]]:
    """Warm RTF of every session at every probe length, interleaved run by run (one
    warm-up each, then reference and variants take turns for every repeat), so load from
    other processes on a shared machine hits them alike."""
    out: dict[str, dict[int, dict]] = {name: {} for name in sessions}
    for n, feeds in probes.items():
        samples: dict[str, list[float]] = {name: [] for name in sessions}
        sizes: dict[str, int] = {}
        for name, sess in sessions.items():
            sizes[name] = int(np.size(sess.run(None, feeds)[0]))  # warm-up
        for _ in range(max(1, repeats)):
            for name, sess in sessions.items():
                t0 = time.perf_counter()
                sess.run(None, feeds)
                samples[name].append(time.perf_counter() - t0)
        for name in sessions:
            timing = Timing.of(samples[name])
            audio_s = sizes[name] / SAMPLE_RATE
            out[name][n] = {"seconds": timing.to_dict(), "audio_s": audio_s,
                            "rtf": timing.median / max(audio_s, 1e-9),
                            "rtf_p90": timing.p90 / max(audio_s, 1e-9)}
    return out


# -- quality ---------------------------------------------------------------------------------
def reference_audio(session, prepared: Sequence, voices) -> dict[str, np.ndarray]:
    return {p.utt.id: np.asarray(session.run(None, p.feeds(voices))[0]).ravel() for p in prepared}


def utterance_words(p, frames: np.ndarray) -> list[dict[str, Any]]:
    """[{"word", "start", "end"}] of a prepared utterance from the model's per-token frames."""
    phonemized = get_g2p(p.utt.lang)(p.utt.text)
    spans = wordsmod.spans_for(p.utt.text, p.phonemes, phonemized)
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
        rec = quality.compare(ref_audio[p.utt.id], out, mos=dnsmos.score if with_dnsmos else None)
        if rec["duration"]["diff_s"] != 0:
            rec["ok"] = False
            rec["problems"].append(f"length change: {rec['duration']['diff_s']:+.3f} s")
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
              voices, token_lengths: Sequence[int], repeats: int = 3, with_dnsmos: bool = True,
              speed_min_tokens: int = 120, dev: Sequence | None = None,
              durations_cache: Path | None = None) -> dict[str, Any]:
    """Size, load time, quality on ``heldout`` (reported) and on ``dev`` (for choosing,
    under ``row["dev"]``; no DNSMOS) and warm RTF at ``token_lengths`` for the reference
    and every candidate, in one process. ``speedup`` = median over the lengths
    >= ``speed_min_tokens`` of reference RTF / candidate RTF (same session settings).
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
    probes = {n: token_probe(heldout, n, voices) for n in token_lengths}
    speed = speed_side_by_side(sessions, probes, repeats=repeats)
    for name, per_len in speed.items():
        rows[name]["rtf"] = {n: r["rtf"] for n, r in per_len.items()}
        rows[name]["speed_detail"] = per_len
        ratios = [speed[reference.name][n]["rtf"] / r["rtf"] for n, r in per_len.items()
                  if n >= speed_min_tokens] or [
            speed[reference.name][n]["rtf"] / r["rtf"] for n, r in per_len.items()]
        rows[name]["speedup"] = statistics.median(ratios)
        rows[name]["speedup_by_len"] = {n: speed[reference.name][n]["rtf"] / r["rtf"]
                                        for n, r in per_len.items()}
    for name, row in rows.items():
        row.setdefault("ok", False)
        row.setdefault("speedup", None)
    return {"rows": rows, "audio": audio}


def sensitivity(builder, families: Sequence[str], base_spec: dict, session_cfg, heldout: Sequence,
                voices, ref_audio: dict) -> dict[str, dict]:
    """Quantize one family at a time (``base_spec`` with ``families=[f]``) and measure the
    distance each costs on ``heldout`` (no DNSMOS: quick)."""
    out: dict[str, dict] = {}
    for fam in families:
        spec = VariantSpec(**{**base_spec, "name": f"sens-{base_spec.get('recipe')}-{fam}",
                              "families": [fam]}).validate()
        try:
            built = builder.build(spec)
            sess = make_session(built.path, session_cfg)
            ev = evaluate(sess, heldout, voices, ref_audio, with_dnsmos=False)
            s = ev["summary"]
            out[fam] = {"ok": s["ok"], "lsd_db": s["lsd_db"], "pesq_wb": s["pesq_wb"],
                        "length_changes": s["length_changes"], "problems": s["problems"],
                        "nodes_quantized": built.nodes_quantized}
        except Exception as exc:  # noqa: BLE001 - reported, the family stays float
            out[fam] = {"ok": False, "lsd_db": None, "error": f"{type(exc).__name__}: {exc}"}
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
    fast_speedup: float = 1.5
    fast_max_lsd_db: float = 2.0
    lossless_max_lsd_db: float = 1.0


def choosing_figures(row: dict[str, Any], basis: str = "dev") -> dict[str, Any]:
    """The figures a choice may read from a bench row: its development-set figures
    (``basis="dev"``; a row without them cannot be chosen on, KeyError) with the speed
    from the row, or the row itself (``basis="row"``, for rows measured on one set)."""
    if basis == "row":
        return row
    if basis != "dev":
        raise ValueError(f"basis {basis!r}: 'dev' or 'row'")
    if "dev" not in row:
        raise KeyError("bench row has no development-set figures: run_bench(..., dev=...) "
                       "measures them; held-out figures are never chosen on")
    return {**row["dev"], "ok": bool(row.get("ok")) and bool(row["dev"].get("ok")),
            "speedup": row.get("speedup")}


def select(rows: dict[str, dict], baseline: str | None, targets: Targets = Targets(),
           basis: str = "dev") -> dict:
    """Pick the fast variant and the near-lossless variant from bench rows
    {name: {"ok", "speedup", "lsd_db", "pesq_wb", "dnsmos_ovrl"}}, reading the quality
    figures through :func:`choosing_figures` (the development set by default). Failed
    variants are never chosen; each choice says which targets it meets."""
    rows = {n: choosing_figures(r, basis) for n, r in rows.items()}
    ok = {n: r for n, r in rows.items() if r.get("ok") and r.get("lsd_db") is not None}
    base = rows.get(baseline) if baseline else None
    out: dict[str, Any] = {"failed": sorted(n for n, r in rows.items() if not r.get("ok")),
                           "basis": basis}

    def no_worse(r):
        if not base:
            return None
        checks = []
        for k in ("pesq_wb", "dnsmos_ovrl"):
            if r.get(k) is not None and base.get(k) is not None:
                checks.append(r[k] >= base[k] - 1e-9)
        return all(checks) if checks else None

    fast = [n for n, r in ok.items() if r["lsd_db"] <= targets.fast_max_lsd_db]
    if fast:
        name = max(fast, key=lambda n: ok[n]["speedup"])
        r = ok[name]
        out["fast"] = {"variant": name, "lsd_db": r["lsd_db"], "speedup": r["speedup"],
                       "meets_speed_target": r["speedup"] >= targets.fast_speedup,
                       "no_worse_than_baseline": no_worse(r)}
    else:
        out["fast"] = None
    lossless = [n for n, r in ok.items() if r["lsd_db"] <= targets.lossless_max_lsd_db]
    if lossless:
        name = max(lossless, key=lambda n: ok[n]["speedup"])
        r = ok[name]
        out["near_lossless"] = {"variant": name, "lsd_db": r["lsd_db"], "speedup": r["speedup"],
                                "faster_than_reference": r["speedup"] > 1.0}
    else:
        out["near_lossless"] = None
    return out


def choose_families(sensitivity: dict[str, dict], budget_db: float) -> dict[str, Any]:
    """Mixed precision from per-family sensitivity {family: {"ok", "lsd_db"}}: quantize the
    families that keep their output valid and cost least, while the sum of their costs
    stays within ``budget_db`` (a rough, additive model; the mixed variant is measured)."""
    usable = sorted(((f, r["lsd_db"]) for f, r in sensitivity.items()
                     if r.get("ok") and r.get("lsd_db") is not None), key=lambda x: x[1])
    chosen, total = [], 0.0
    for fam, cost in usable:
        if total + cost <= budget_db:
            chosen.append(fam)
            total += cost
    kept = sorted(set(sensitivity) - set(chosen))
    return {"quantize": chosen, "keep_float": kept, "estimated_lsd_db": total,
            "budget_db": budget_db}


# -- candidates for the journal's selection (labkit.lab.selection) --------------------------------------
#: problem string prefix (labkit.quality.check_audio, evaluate, run_bench) -> check name
_CHECKS = (("nan", "NaN"), ("empty", "silence"), ("silence", "silence"), ("clipping", "clipping"),
           ("length", "length"), ("run failed", "load"), ("words not heard", "words"))


_CHECK_ORDER = ["NaN", "silence", "clipping", "length", "words", "load"]


def failed_checks(row: dict[str, Any]) -> list[str]:
    """Names of the checks a bench row failed (NaN, silence, clipping, length, words, load), in
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
    if row.get("length_changes"):
        found.add("length")
    if not found and row.get("ok") is False:
        found.add("load")  # not ok without a named problem: never measured
    return [n for n in _CHECK_ORDER if n in found]


def _by_len(d: dict | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}  # JSON turns int keys into strings


def candidates(rows: dict[str, dict], reference_name: str, reference_variant: str = "fp32-recon",
               baseline_name: str | None = "int8", basis: str = "dev") -> list[dict[str, Any]]:
    """Bench rows as the journal's candidates: the reference first, then the shipped
    baseline, then every variant in bench order. ``ttfa_s`` is the warm median seconds at
    the shortest probe length (the whole utterance is one chunk, so compute time is the
    time to first audio); ``rtf`` the median warm RTF over the probe lengths; ``lsd_db``
    the worst utterance's standard LSD and ``pesq_wb`` the mean against the reference (0.0 / None for the
    reference itself), both on the set :func:`choosing_figures` names (the journal chooses on
    them); ``heldout_lsd_db`` / ``heldout_lsd_db_mean`` are the reported held-out figures
    beside them; variants are selected by their model file (``model_path``)."""
    if reference_name not in rows:
        raise KeyError(f"reference row {reference_name!r} missing; rows are {list(rows)}")
    order = [reference_name] + ([baseline_name] if baseline_name in rows else [])
    order += [n for n in rows if n not in order]
    out = []
    for name in order:
        r = rows[name]
        q = {} if name == reference_name else choosing_figures(r, basis)
        detail = _by_len(r.get("speed_detail"))
        rtf = _by_len(r.get("rtf"))
        shortest = min(detail) if detail else None
        if name == reference_name:
            overrides: dict[str, Any] = {"variant": reference_variant}
        elif name == baseline_name:
            overrides = {"variant": baseline_name}
        else:
            overrides = {"variant": name, "model_path": str(Path(r["path"]).resolve())}
        out.append({
            "name": name,
            "overrides": overrides,
            "ttfa_s": (detail[shortest]["seconds"]["median"] if shortest is not None else None),
            "rtf": statistics.median(rtf.values()) if rtf else None,
            "lsd_db": 0.0 if name == reference_name else q.get("lsd_db"),
            "pesq_wb": None if name == reference_name else q.get("pesq_wb"),
            "heldout_lsd_db": 0.0 if name == reference_name else r.get("lsd_db"),
            "heldout_lsd_db_mean": 0.0 if name == reference_name else r.get("lsd_db_mean"),
            "failed_checks": [] if name == reference_name else sorted(
                set(failed_checks(r)) | set(failed_checks(q)), key=_CHECK_ORDER.index),
        })
    return out


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


__all__ = ["token_probe", "load_seconds", "warm_rtf", "speed_side_by_side", "reference_audio",
           "evaluate", "summarize", "pareto_front", "select", "choosing_figures", "Targets", "choose_families",
           "profile", "share", "listening_page", "candidates", "failed_checks", "speed_bound", "field"]
