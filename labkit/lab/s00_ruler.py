"""Stage 00_ruler: the quality ruler, calibrated on changes of known audibility.

Every later choice made under a quality bound (stages 02-07) reads the ruler
(labkit.quality.ruler). This stage shows that it can hear, before anything is chosen by it:

1. the reference model speaks development utterances (``dev.yaml`` and ``calibration.yaml``)
   and held-out ones (``heldout.yaml``);
2. the ladder (``labkit/data/ladder.yaml``: delays, gains, noise at graded SNR, clicks,
   dropouts, low-pass filters, a pause, a stretch; each inaudible, borderline or audible)
   is applied to each, and every figure read: the ruler's, the standard LSD, PESQ-WB and
   STOI, and on a few held-out utterances DNSMOS and the recognizer's word error rate;
3. **calibration** (development utterances only): which audible rungs each figure separates
   from every inaudible one, the bound that follows, and whether the shipped bounds
   (``labkit/data/ruler.yaml``) still split the ladder;
4. **validation** (held-out utterances the calibration never saw): the ruler's verdict on
   every rung -- every inaudible rung must pass and every audible one fail;
5. the click detector (labkit.quality.clicks): clicks found among injected ones, and
   transients flagged per minute of clean speech.
"""
from __future__ import annotations

from typing import Any, Sequence, TypedDict

import numpy as np

from labkit.config import LabConfig
from labkit.engine import assets
from labkit.engine.runtime import Engine
from labkit.measure import corpora, dnsmos
from labkit.quality import ladder, recognizer, ruler
from labkit.tables import fixed

NAME = "00_ruler"
#: the figures read on the ladder: the ruler's bounded ones, then the standard ones
STANDARD = ("lsd_db", "pesq_wb", "stoi")
EXTRA = ("dnsmos_ovrl_change", "wer_change")


def speak(engine: Engine, prepared: Sequence) -> dict[str, np.ndarray]:
    return {p.utt.id: np.asarray(engine.run_tokens(p.tokens, p.utt.voice, p.utt.speed).audio, np.float64)
            for p in prepared}


def _figures(extra_for: set[str], texts: dict[str, str]):
    """The measure the ladder reads: the ruler's figures and the standard ones; for the
    utterances in ``extra_for`` also the change of DNSMOS (overall) and of the recognizer's
    word error rate against the unchanged utterance's."""
    base: dict[str, dict] = {}

    def measure(ref: np.ndarray, test: np.ndarray, uid: str) -> dict[str, Any]:
        out = ruler.measure(ref, test, standard_figures=True).to_dict()
        if uid in extra_for:
            if uid not in base:
                base[uid] = {"mos": (dnsmos.score(ref) or {}).get("ovrl"),
                             "wer": recognizer.word_error_rate(ref, texts[uid])["wer"]}
            mos = (dnsmos.score(test) or {}).get("ovrl") if out["ok"] else None
            out["dnsmos_ovrl_change"] = (None if mos is None or base[uid]["mos"] is None
                                         else mos - base[uid]["mos"])
            out["wer_change"] = recognizer.word_error_rate(test, texts[uid])["wer"] - base[uid]["wer"]
        return out
    return measure


class RulerResult(TypedDict):
    """What :func:`run` returns: the notebook's cells read it, :func:`record` writes it."""

    #: the reference model variant the utterances are spoken with
    reference: str
    calibration_ids: list[str]
    validation_ids: list[str]
    extra_ids: list[str]
    #: the ladder's rungs (labkit.quality.ladder.RUNGS), as dicts
    rungs: list[dict[str, Any]]
    #: the bounds the development readings set (labkit.quality.ladder.calibrate)
    calibration: dict[str, Any]
    #: the bounds the ruler ships with, and whether the development readings keep them
    shipped_bounds: dict[str, float]
    shipped_bounds_hold: dict[str, Any]
    #: the held-out check of the bounds, and each figure's separation of audible from not
    validation: dict[str, Any]
    separation: dict[str, dict[str, Any]]
    #: the click detector on development and held-out audio (None: not run)
    detector: dict[str, Any] | None
    calibration_rows: list[dict[str, Any]]
    validation_rows: list[dict[str, Any]]
    #: one held-out utterance through every rung (id, text, rung -> audio; not recorded)
    _listen: dict[str, Any]


def run(cfg: LabConfig, st, *, calibration_ids: Sequence[str] | None = None,
        validation_ids: Sequence[str] | None = None, extra_ids: Sequence[str] = (),
        detector: bool = True) -> RulerResult:
    """``calibration_ids``: development utterances (ids from dev.yaml and calibration.yaml;
    None: all of dev.yaml); ``validation_ids``: held-out ones (None: all); ``extra_ids``:
    held-out utterances that also get DNSMOS and the recognizer (slow)."""
    ref = assets.reference(cfg)
    engine = Engine(cfg, variant=ref.variant)
    dev_c = corpora.load("dev", purpose="choose")
    pool = {u.id: u for u in [*dev_c, *corpora.load("calibration", purpose="calibrate")]}
    unknown = sorted(set(calibration_ids or ()) - set(pool))
    if unknown:
        raise ValueError(f"calibration_ids {unknown}: not in dev.yaml or calibration.yaml")
    dev = corpora.prepare(list(dev_c) if calibration_ids is None
                          else [pool[i] for i in calibration_ids])
    held = corpora.prepare(corpora.load("heldout", purpose="report").select(ids=validation_ids))
    texts = {p.utt.id: p.utt.text for p in held}
    dev_audio, held_audio = speak(engine, dev), speak(engine, held)
    cal_rows = ladder.readings(dev_audio, measure=_figures(set(), {}))
    # the recognizer hears every copy the ladder's measure will ask about at once, across
    # the cores; its transcripts are kept by content, so the measure finds them
    extra = {u: held_audio[u] for u in extra_ids if u in held_audio}
    recognizer.transcribe_all([*extra.values(), *(test for _, _, test in ladder.copies(extra))])
    val_rows = ladder.readings(held_audio, measure=_figures(set(extra_ids), texts))
    cal = ladder.calibrate(cal_rows)
    figures = [*ruler.BOUNDED, *STANDARD, *(EXTRA if extra_ids else ())]
    return RulerResult(
        reference=ref.variant,
        calibration_ids=list(dev_audio), validation_ids=list(held_audio),
        extra_ids=list(extra_ids),
        rungs=[vars(r) for r in ladder.RUNGS],
        calibration=cal,
        shipped_bounds=dict(ruler.BOUNDS),
        shipped_bounds_hold=ladder.bounds_hold(cal_rows, ruler.BOUNDS),
        validation=ladder.validate(val_rows),
        separation={f: ladder.separation(val_rows, f) for f in figures},
        detector=({"development": ladder.validate_detector(dev_audio),
                   "held_out": ladder.validate_detector(held_audio)} if detector else None),
        calibration_rows=cal_rows, validation_rows=val_rows,
        # one held-out utterance through every rung, to listen to
        _listen={"id": held[0].utt.id, "text": held[0].utt.text,
                 "audio": {r.label: ladder.apply(r, held_audio[held[0].utt.id],
                                                 ladder.seed_of(held[0].utt.id, r))
                           for r in ladder.RUNGS}},
    )


def ladder_table(result: dict[str, Any]) -> str:
    """Per rung: what the ladder says, how many held-out utterances the ruler passed, and
    each figure's range over them."""
    rows = result["validation_rows"]
    figs = [*ruler.BOUNDED, *STANDARD, *[e for e in EXTRA if any(r.get(e) is not None for r in rows)]]
    val = result["validation"]["rungs"]
    lines = ["| change | audible? | ruler passed | " + " | ".join(figs) + " |",
             "|---|---|---|" + "---|" * len(figs)]
    for rung in dict.fromkeys(r["rung"] for r in rows):
        cells = []
        for f in figs:
            vals = [r[f] for r in rows if r["rung"] == rung and r.get(f) is not None]
            cells.append("—" if not vals else f"{fixed(min(vals), 2)}" if min(vals) == max(vals)
                         else f"{fixed(min(vals), 2)}..{fixed(max(vals), 2)}")
        v = val[rung]
        mark = "" if v["as_expected"] is not False else " **(wrong)**"
        lines.append(f"| {rung} | {v['verdict']} | {v['passed']}/{v['n']}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def separation_table(result: dict[str, Any]) -> str:
    """Per figure: its worst reading of an inaudible rung, and the audible rungs it misses
    (reads no worse than that), on the held-out utterances."""
    lines = ["| figure | worst inaudible reading | audible rungs it cannot tell from inaudible |",
             "|---|---|---|"]
    for f, s in result["separation"].items():
        worst = s["worst_inaudible"]
        if worst is not None and f in ladder.HIGHER_IS_BETTER:
            worst = -worst
        lines.append(f"| {f} | {fixed(worst, 3) if worst is not None else '—'} | "
                     f"{', '.join(s['misses']) or 'none: it separates every audible rung'} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], plt):
    """Each bounded figure (and the standard LSD) against the ladder: one dot per held-out
    utterance, coloured by what the ladder says, the bound dashed."""
    rows = result["validation_rows"]
    figs = [*ruler.BOUNDED, "lsd_db", "pesq_wb"]
    rungs = list(dict.fromkeys(r["rung"] for r in rows))
    colour = {"inaudible": "C2", "borderline": "C1", "audible": "C3"}
    fig, axes = plt.subplots(1, len(figs), figsize=(3.2 * len(figs), 0.28 * len(rungs) + 1.5), sharey=True)
    for ax, f in zip(axes, figs):
        for i, rung in enumerate(rungs):
            pts = [(abs(r[f]) if ruler.BOUNDED.get(f) == "abs" else r[f], r["verdict"])
                   for r in rows if r["rung"] == rung and r.get(f) is not None]
            ax.scatter([p[0] for p in pts], [i] * len(pts), s=9, color=[colour[p[1]] for p in pts])
        if f in ruler.BOUNDS:
            ax.axvline(ruler.BOUNDS[f], color="k", ls="--", lw=0.8)
        ax.set_title(f, fontsize=9)
        if f in ("masked_lsd_peak_db", "lsd_db", "gap_ms"):
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(left=0.0)
    axes[0].set_yticks(range(len(rungs)), rungs, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("the ladder as each figure reads it (green inaudible, orange borderline, "
                 "red audible; dashed: the ruler's bound)", fontsize=9)
    fig.tight_layout()
    return fig


def headline(result: dict[str, Any]) -> dict[str, Any]:
    cal, val = result["calibration"], result["validation"]
    out: dict[str, Any] = {
        "ruler calibrated (every audible rung separated on development utterances)":
            "yes" if cal["calibrated"] else f"NO: {cal['unseparated']}",
        "shipped bounds still split the development ladder":
            "yes" if result["shipped_bounds_hold"]["hold"] else
            f"NO: {result['shipped_bounds_hold']['problems'][:3]}",
        f"held-out ({len(result['validation_ids'])} utterances): every inaudible rung passes, "
        "every audible rung fails": "yes" if val["ok"] else f"NO: {val['wrong']}",
    }
    for f, b in result["shipped_bounds"].items():
        derived = cal["bounds"].get(f)
        out[f"bound {f} (shipped; this run's calibration)"] = (
            f"{b:g}; {derived:.3g}" if derived is not None else f"{b:g}; none")
    for f in ("lsd_db", "pesq_wb", "stoi", *EXTRA):
        s = result["separation"].get(f)
        if s:
            out[f"{f} cannot tell from inaudible"] = ", ".join(s["misses"]) or "—"
    det = result.get("detector")
    if det:
        for where, d in det.items():
            out[f"click detector, {where}: clicks found / false per minute"] = (
                f"{d['found']:.0%} of {d['injected']} / {d['false_per_minute']:.2f} "
                f"[{d['false_per_minute_ci95'][0]:.2f}, {d['false_per_minute_ci95'][1]:.2f}]")
    return out


def record(st, result: RulerResult) -> None:
    st.metrics["reference"] = result["reference"]
    st.metrics["ruler"] = ruler.definition()
    st.metrics["rungs"] = result["rungs"]
    st.metrics["corpora"] = {"calibration": result["calibration_ids"],
                             "validation": result["validation_ids"], "extra": result["extra_ids"]}
    st.metrics["calibration"] = result["calibration"]
    st.metrics["shipped_bounds"] = result["shipped_bounds"]
    st.metrics["shipped_bounds_hold"] = result["shipped_bounds_hold"]
    st.metrics["validation"] = result["validation"]
    st.metrics["separation"] = result["separation"]
    st.metrics["detector"] = result["detector"]
    st.metrics["readings"] = {"calibration": result["calibration_rows"],
                              "validation": result["validation_rows"]}
    st.metrics["headline"] = headline(result)
    if not result["validation"]["ok"]:
        st.note(f"the ruler's verdict is wrong on {result['validation']['wrong']} on held-out "
                "utterances: quality bounds in this run are not earned")
