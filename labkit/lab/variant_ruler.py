"""Stage 03's quality verdict: each variant judged by the ruler (labkit.quality.ruler) like
with like -- its vocoder at the reference's alignment (labkit.measure.vocoder), its
durations token by token, the recognizer's word error rate of its own output -- on the
development and the held-out set; a variant passes only when both pass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from labkit import progress
from labkit.lab.selection import quality_entry
from labkit.measure import vocoder
from labkit.measure.variant_bench import REFERENCE
from labkit.optimize import durations
from labkit.optimize import split as splitting
from labkit.optimize.split_cut import SplitError


def ruler_quality(rows: dict[str, dict], reference: Path, audio: dict[str, dict], held: Sequence,
                  dev: Sequence, voices, session_cfg, cache: Path,
                  dev_audio: dict[str, dict] | None = None) -> dict[str, Any]:
    """Each variant judged by the ruler on its vocoder at the reference's alignment
    (labkit.measure.vocoder), its durations against the reference's, and the recognizer's
    word error rate of its own held-out output against the reference's; sets
    ``row["ruler"]`` (per set) and ``row["quality"]`` (the candidate's entry: passed only
    when both sets pass). Returns the reference's word error rate. Models are split once
    into ``cache/split`` (labkit.optimize.split), their copies with the durations output
    built into ``cache/durations``; a variant's split is removed once it is judged."""
    at = vocoder.AtReference(splitting.split_files(durations.ensure(reference, cache / "durations"),
                                                   cache / "split"), session_cfg)
    texts = {p.utt.id: p.utt.text for p in held}
    progress.say("the recognizer on the reference, and under each inaudible rung (its jitter)")
    ref_wer = vocoder.reference_word_errors(audio[REFERENCE], texts)
    basis = ("the ruler (labkit.quality.ruler) on the vocoder at the reference's alignment, "
             "development and held-out sets; durations token by token; word error rate "
             "(pocketsphinx) on held-out against the reference's")
    judged = [n for n in rows if n != REFERENCE and n in audio]
    for name in progress.steps(judged, "the ruler, like with like"):
        row = rows[name]
        try:
            timed = durations.ensure(Path(row["path"]), cache / "durations")
            p = splitting.split_files(timed, cache / "split")
            held_q = vocoder.judge(at, p, held, voices, audio[name], ref_wer)
            dev_q = vocoder.judge(at, p, dev, voices)
            how, like = basis, True
            # its parts are judged: removed (issue #31: a split is over twice its model,
            # labkit.lab.plan.SPLIT_MODELS); the reference's stay (every variant is rendered
            # at its alignment)
            row["split_removed_mb"] = round(splitting.remove_split(timed, cache / "split") / 1e6, 1)
        except (SplitError, vocoder.NotComparable, durations.DurationsError) as exc:
            # a graph that cannot be cut where the reference's is: its own output, aligned
            held_q = vocoder.judge_whole(audio[REFERENCE], audio[name], texts, ref_wer)
            if dev_audio and name in dev_audio:
                dev_q, sets = vocoder.judge_whole(dev_audio[REFERENCE], dev_audio[name], {}), \
                    "development and held-out sets"
            else:  # (a bench that read no development set)
                dev_q, sets = {"summary": {"passed": True, "reasons": [], "failed_utterances": []}}, \
                    "held-out set only"
            how, like = (f"the ruler on the whole outputs, {sets} (not cut like the reference: "
                         f"{type(exc).__name__}: {str(exc)[:160]}); word error rate as above"), False
        row["ruler"] = {"heldout": held_q, "dev": dev_q, "like_with_like": like}
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
