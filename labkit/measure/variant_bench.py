"""Stage 03's bench of model variants, in one process: for the reference and every
candidate its size, load time and quality on the held-out set (reported) and the
development set (for choosing; labkit.measure.variant_quality), then its speed at every
probe length against the baseline (labkit.measure.variant_speed). One row per variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from labkit import progress
from labkit.engine.graph_cache import make_session
from labkit.kokoro import SAMPLE_RATE
from labkit.measure.variant_quality import evaluate, reference_audio
from labkit.measure.variant_speed import load_seconds, paired_speedup, speed_compare, token_probe

#: the bench row of the reference model
REFERENCE = "reference"


@dataclass
class Candidate:
    """A model the bench measures: its row's name, its file and a note (where it came from)."""

    name: str
    path: Path
    note: str = ""


def run_bench(reference: Candidate, candidates: Sequence[Candidate], session_cfg, heldout: Sequence,
              voices, token_lengths: Sequence[int], baseline: str, rounds: int | None = None,
              warmup: int = 1, speed_tokens: int = 120, with_dnsmos: bool = True,
              dev: Sequence | None = None, untimed: dict[str, str] | None = None) -> dict[str, Any]:
    """Size, load time, quality on ``heldout`` (reported) and on ``dev`` (for choosing,
    under ``row["dev"]``; no DNSMOS) for the reference and every candidate, in one process;
    then the warm wall time of ``session.run`` at every length of ``token_lengths`` (and
    ``speed_tokens``), each against ``baseline``'s (:func:`speed_compare`). The comparison
    at ``speed_tokens`` is the one the journal chooses on; the other lengths are reported.
    ``row["vs_baseline"]``: ratio and 95 % interval at ``speed_tokens`` (> 1: faster than
    the baseline); ``row["speedup"]``: the paired speed-up over the reference there.
    Candidates whose model outputs per-token durations (stage 03 passes each model's copy
    with them) have every word of every utterance checked in the audio too. ``untimed``:
    candidate -> why its speed is not measured here (``row["speed_skipped"]``: ``skipped:
    <why>``; its quality still is)."""
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
    for name, sess in progress.steps(list(sessions.items()), "quality on the held-out set",
                                     label=lambda kv: kv[0]):
        ev = evaluate(sess, heldout, voices, ref_audio, with_dnsmos=with_dnsmos)
        audio[name] = ev.pop("_audio")
        rows[name].update(ev["summary"])
        rows[name]["per_utterance"] = ev["per_utterance"]
    dev_audio: dict[str, dict] = {}
    if dev:
        dev_ref = reference_audio(ref_sess, dev, voices)
        dev_audio[reference.name] = dev_ref
        for name, sess in progress.steps(list(sessions.items()), "quality on the development set",
                                         label=lambda kv: kv[0]):
            ev = evaluate(sess, dev, voices, dev_ref, with_dnsmos=False)
            dev_audio[name] = ev.pop("_audio")
            rows[name]["dev"] = {**ev["summary"], "per_utterance": ev["per_utterance"]}
    lengths = sorted({int(n) for n in token_lengths} | {int(speed_tokens)})
    probes = {n: token_probe(heldout, n, voices) for n in lengths}
    untimed = {n: why for n, why in (untimed or {}).items() if n in sessions}
    for name, why in untimed.items():
        rows[name]["speed_skipped"] = f"skipped: {why}"
    timed = {n: sess for n, sess in sessions.items() if n not in untimed}
    comparisons = speed_compare(timed, probes, baseline, rounds=rounds, warmup=warmup,
                                criterion_tokens=int(speed_tokens))
    for name in timed:
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
    return {"rows": rows, "audio": audio, "dev_audio": dev_audio, "comparisons": comparisons,
            "speed_tokens": int(speed_tokens), "baseline": baseline, "reference": reference.name}
