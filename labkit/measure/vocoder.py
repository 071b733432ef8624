"""Like with like: a variant's vocoder on the reference's alignment, and its durations apart.

A variant that predicts other durations (quantization moves a phoneme by a frame) makes
audio that every intrusive figure reads as damaged, while the recognizer hears no
difference (FINDINGS: the PyPI int8 model, 13.5 dB standard LSD at the same word error
rate). So a variant is judged twice, each part on its own:

* **the vocoder**: part A of the *reference* (text encoder, durations, F0 and energy
  curves: labkit.optimize.split) gives the boundary tensors; the reference's part B and
  the variant's part B each turn them into audio. The two are the same length, on the
  same alignment and the same harmonic phase (the source is built from the same F0), so
  the ruler (labkit.quality.ruler) compares vocoder against vocoder;
* **the durations**: each model's own predicted frames per token (its part A's
  ``durations`` output), compared token by token: frames that differ, and the share of
  tokens that moved.

:class:`AtReference` holds the reference's parts; :meth:`AtReference.render` gives one
utterance's pair and durations figures for a variant's parts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labkit.config import SessionConfig
from labkit.engine.sessions import new_session
from labkit.engine.runtime import DURATIONS
from labkit.engine.split_runtime import SplitParts
from labkit.quality import ladder, recognizer, ruler

#: a token whose predicted length moves by more than this many frames (25 ms each) fails
#: the durations bound: Klatt (1976) puts the just-noticeable change of a speech segment's
#: duration at about 25 ms; the ladder's "pause +20 ms" is inaudible
MAX_TOKEN_SHIFT_FRAMES = 2
#: a variant's word error rate may exceed the reference's by this much (2 points), or by
#: the recognizer's own jitter on these utterances where that is larger (:func:`wer_bound`)
MAX_WER_INCREASE = 0.02


class NotComparable(ValueError):
    """The variant's part B does not take the reference's part A's tensors."""


@dataclass
class Rendering:
    reference: np.ndarray      # the reference's part B on the reference's part A
    variant: np.ndarray        # the variant's part B on the reference's part A
    frames_ref: int
    frames_differ: int | None  # sum over tokens of |reference - variant| frames
    tokens_moved: float | None  # share of tokens whose frame count differs
    length_diff_frames: int | None  # the variant's own total frames minus the reference's
    max_token_shift: int | None  # the largest |reference - variant| of one token

    def durations_dict(self) -> dict[str, Any]:
        return {"frames": self.frames_ref, "frames_differ": self.frames_differ,
                "tokens_moved": self.tokens_moved, "length_diff_frames": self.length_diff_frames,
                "max_token_shift": self.max_token_shift}


class _Parts:
    def __init__(self, parts: SplitParts, session_cfg: SessionConfig):
        self.parts = parts
        self.a = new_session(parts.a, session_cfg)
        self.b = new_session(parts.b, session_cfg)
        self.a_inputs = {i.name for i in self.a.get_inputs()}
        self.a_outputs = [o.name for o in self.a.get_outputs()]
        self.boundary = list(parts.meta["boundary"])
        self.b_inputs = list(parts.meta["b_inputs"])

    def part_a(self, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray | None]:
        out = dict(zip(self.a_outputs, self.a.run(None, {k: v for k, v in feeds.items()
                                                          if k in self.a_inputs})))
        durations = out.get(DURATIONS)
        return ([np.asarray(out[t]) for t in self.boundary],
                None if durations is None else np.asarray(durations, np.int64).ravel())

    #: for each of this part B's boundary inputs, the index of the reference's tensor
    order: list[int] | None = None

    def part_b(self, bound: list[np.ndarray], feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.order is not None:
            bound = [bound[k] for k in self.order]
        b_feeds = dict(zip(self.boundary, bound))
        b_feeds.update({n: feeds[n] for n in self.b_inputs if n not in b_feeds})
        return np.asarray(self.b.run(None, b_feeds)[0], np.float32).ravel()


def pairing(ref: list[str], var: list[str], ref_shapes: dict | None, var_shapes: dict | None
            ) -> list[int]:
    """For each of the variant's boundary tensors, the index of the reference's tensor that
    feeds it: by name where both graphs use the same names (the quantizer may list them in
    another order: F0 and N swap), else by position when the shapes agree; else
    :class:`NotComparable`."""
    if len(ref) != len(var):
        raise NotComparable(f"the variant's part B reads {len(var)} boundary tensors, the "
                            f"reference's part A gives {len(ref)}")
    if sorted(ref) == sorted(var):
        return [ref.index(name) for name in var]
    if ref_shapes and var_shapes and all(ref_shapes.get(a) == var_shapes.get(b) for a, b in zip(ref, var)):
        return list(range(len(var)))
    raise NotComparable(f"the variant's boundary {var} cannot be paired with the reference's {ref}")


class AtReference:
    """The reference's parts, for rendering variants on its alignment."""

    def __init__(self, reference: SplitParts, session_cfg: SessionConfig | None = None):
        self.session_cfg = session_cfg or SessionConfig()
        self.ref = _Parts(reference, self.session_cfg)
        self._variants: dict[str, _Parts] = {}
        self._ref_out: dict[str, tuple] = {}

    def variant(self, parts: SplitParts) -> _Parts:
        key = str(parts.b)
        if key not in self._variants:
            v = _Parts(parts, self.session_cfg)
            order = pairing(self.ref.boundary, v.boundary, self.ref.parts.meta.get("boundary_shapes"),
                            v.parts.meta.get("boundary_shapes"))
            v.order = order
            self._variants[key] = v
        return self._variants[key]

    def reference(self, feeds: dict[str, np.ndarray], key: str | None = None) -> tuple:
        """(boundary tensors, durations, audio) of the reference for ``feeds``; kept under
        ``key`` for the next call."""
        if key is None or key not in self._ref_out:
            bound, d_ref = self.ref.part_a(feeds)
            out = (bound, d_ref, self.ref.part_b(bound, feeds))
            if key is None:
                return out
            self._ref_out[key] = out
        return self._ref_out[key]

    def render(self, parts: SplitParts, feeds: dict[str, np.ndarray], key: str | None = None
               ) -> Rendering:
        """Both vocoders on the reference's part A for one utterance's ``feeds``, and the
        two models' durations compared (None where a part A has no durations output).
        Boundary tensors pair by name (:func:`pairing`). ``key`` (the utterance's id) keeps the reference's
        side for the next variant."""
        v = self.variant(parts)
        bound, d_ref, reference = self.reference(feeds, key)
        variant = v.part_b(bound, feeds)
        _, d_var = v.part_a(feeds)
        frames = int(bound[0].shape[-1])
        if d_ref is not None and d_var is not None and d_ref.size == d_var.size:
            diff = np.abs(d_ref - d_var)
            moved, differ = float(np.mean(diff > 0)), int(diff.sum())
            length, shift = int(d_var.sum() - d_ref.sum()), int(diff.max())
        else:
            moved = differ = length = shift = None
        return Rendering(reference, variant, frames, differ, moved, length, shift)


def judge(at: AtReference, parts: SplitParts, prepared, voices,
          whole_audio: dict[str, np.ndarray] | None = None,
          reference_wer: dict[str, dict] | None = None) -> dict[str, Any]:
    """A variant on a corpus, like with like: per utterance the ruler's figures and verdict
    of its vocoder at the reference's alignment and its durations against the reference's;
    with ``whole_audio`` (the variant's own output per utterance) and ``reference_wer``
    (:func:`word_errors` of the reference), the recognizer's word error rate of both.
    ``summary``: ``passed`` when every utterance passed the ruler, no token moved more
    than :data:`MAX_TOKEN_SHIFT_FRAMES` and the word error rate is within
    :data:`MAX_WER_INCREASE` of the reference's; ``reasons`` say what failed."""
    per: dict[str, dict[str, Any]] = {}
    for p in prepared:
        r = at.render(parts, p.feeds(voices), key=p.utt.id)
        fig, v = ruler.judge(r.reference, r.variant, standard_figures=False)
        per[p.utt.id] = {"figures": fig.to_dict(), "verdict": v.word, "reasons": v.reasons,
                         "durations": r.durations_dict()}
    wer = None
    if whole_audio is not None and reference_wer is not None:
        wer = word_errors({k: whole_audio[k] for k in per if k in whole_audio},
                          {p.utt.id: p.utt.text for p in prepared})
    return {"per_utterance": per, "wer": wer, "summary": summarize(per, wer, reference_wer)}


def judge_whole(reference: dict[str, np.ndarray], audio: dict[str, np.ndarray], texts: dict[str, str],
                reference_wer: dict[str, dict] | None = None) -> dict[str, Any]:
    """:func:`judge` on the two models' own outputs, for a variant whose graph cannot be cut
    where the reference's is (labkit.optimize.split): the ruler aligns them (time warping
    where the lengths differ); durations are not compared token by token."""
    per = {}
    for k, ref in reference.items():
        fig, v = ruler.judge(ref, audio[k], standard_figures=False)
        per[k] = {"figures": fig.to_dict(), "verdict": v.word, "reasons": v.reasons,
                  "durations": {"frames": None, "frames_differ": None, "tokens_moved": None,
                                "length_diff_frames": None, "max_token_shift": None}}
    wer = word_errors(audio, texts) if reference_wer is not None else None
    return {"per_utterance": per, "wer": wer, "summary": summarize(per, wer, reference_wer)}


def word_errors(audio: dict[str, np.ndarray], texts: dict[str, str]) -> dict[str, Any]:
    """The recognizer on each utterance and over the corpus (errors over words); the
    utterances are recognized at once (labkit.quality.recognizer.transcribe_all)."""
    per = recognizer.word_error_rates(audio, texts)
    return {"per_utterance": per, "corpus": recognizer.corpus_wer(list(per.values()))}


def reference_word_errors(audio: dict[str, np.ndarray], texts: dict[str, str],
                          rungs: list[ladder.Rung] | None = None) -> dict[str, Any]:
    """:func:`word_errors` of the reference, with the recognizer's jitter on the same
    utterances: its corpus word error rate on the reference under each inaudible rung of
    the ladder (labkit.quality.ladder; the unchanged rerun left out). A listener's bound
    cannot be tighter than what the recognizer does to changes nobody hears (the issue's
    table: a 1 ms delay moved pocketsphinx's word error rate by 3 points), so the largest
    increase, ``jitter["band"]``, widens the bound (:func:`wer_bound`). The reference and
    every rung's copies are one batch for the recognizer's workers."""
    inaudible = [r for r in (ladder.RUNGS if rungs is None else rungs)
                 if r.verdict == "inaudible" and r.kind != "identity"]
    keys = list(audio)
    jobs = [(None, k) for k in keys] + [(r, k) for r in inaudible for k in keys]
    heard = recognizer.transcribe_all([audio[k] for k in keys] +
                                      [test for _, _, test in ladder.copies(audio, inaudible)])
    scored = {(r.label if r else None, k): recognizer.scored(h, texts[k]) for (r, k), h in zip(jobs, heard)}
    per = {k: scored[(None, k)] for k in keys}
    out = {"per_utterance": per, "corpus": recognizer.corpus_wer(list(per.values()))}
    by_rung = {r.label: recognizer.corpus_wer([scored[(r.label, k)] for k in keys]) for r in inaudible}
    base = out["corpus"]
    rises = [w - base for w in by_rung.values() if w is not None and base is not None]
    out["jitter"] = {"rungs": by_rung, "band": max([0.0] + rises)}
    return out


def wer_bound(reference_wer: dict[str, Any]) -> float:
    """How far a variant's corpus word error rate may exceed the reference's:
    :data:`MAX_WER_INCREASE`, or the recognizer's jitter on inaudible changes of the same
    utterances where larger (:func:`reference_word_errors`)."""
    return max(MAX_WER_INCREASE, float(reference_wer.get("jitter", {}).get("band", 0.0)))


def summarize(per: dict[str, dict], wer: dict | None, reference_wer: dict | None) -> dict[str, Any]:
    reasons = [f"{k}: {'; '.join(r['reasons'])}" for k, r in per.items() if r["verdict"] != "pass"]
    shifts = [r["durations"]["max_token_shift"] for r in per.values()
              if r["durations"]["max_token_shift"] is not None]
    if shifts and max(shifts) > MAX_TOKEN_SHIFT_FRAMES:
        reasons.append(f"durations: a token moved {max(shifts)} frames "
                       f"(> {MAX_TOKEN_SHIFT_FRAMES})")
    out: dict[str, Any] = {"passed": None, "reasons": reasons, "utterances": len(per),
                           "failed_utterances": sorted(k for k, r in per.items() if r["verdict"] != "pass")}
    for name in ruler.BOUNDED:
        vals = [(abs(r["figures"][name]) if ruler.BOUNDED[name] == "abs" else r["figures"][name], k)
                for k, r in per.items() if r["figures"].get(name) is not None]
        if vals:
            worst = max(vals)
            out[f"worst_{name}"], out[f"worst_{name}_id"] = worst
    out["max_token_shift"] = max(shifts) if shifts else None
    out["tokens_moved"] = (float(np.mean([r["durations"]["tokens_moved"] for r in per.values()]))
                           if per and all(r["durations"]["tokens_moved"] is not None for r in per.values())
                           else None)
    if wer is not None and reference_wer is not None:
        allowed = wer_bound(reference_wer)
        out["wer"], out["wer_reference"], out["wer_allowed_increase"] = \
            wer["corpus"], reference_wer["corpus"], allowed
        if wer["corpus"] is not None and reference_wer["corpus"] is not None and \
                wer["corpus"] > reference_wer["corpus"] + allowed + 1e-9:
            reasons.append(f"word error rate {wer['corpus']:.3f} > the reference's "
                           f"{reference_wer['corpus']:.3f} + {allowed:.3f} (the larger of "
                           f"{MAX_WER_INCREASE} and the recognizer's jitter on inaudible changes)")
    out["passed"] = bool(per) and not reasons
    return out
