"""Listen: the same held-out sentence through the stock configuration and through what a
stage ships, side by side, with the quality ruler's figures under each player.

A stage that changes audio (03 quantization, 05 chunking, 06 sessions, 07 the whole
combination) ends its notebook with one :class:`Listening`: the sentence (:func:`sentence`:
a held-out utterance, nothing was chosen on it), what the figures are read against (the
reference: a stage says which, e.g. the lab's reference model, or the same model reading
the sentence in one call), and one :class:`Take` per configuration, each judged by
:func:`labkit.quality.ruler.judge` against that reference (:func:`judge`).
:func:`html_table` lays the players out side by side (labkit.lab.page shows it) and
:func:`write` keeps the takes as wav files in the stage's folder, where the journal offers
them as players.
"""
from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from labkit import files
from labkit.kokoro import SAMPLE_RATE
from labkit.measure import corpora
from labkit.quality import ruler

#: the ruler's figures shown under each player: key, label, decimals
SHOWN = (("masked_lsd_db", "masked LSD (dB)", 2), ("masked_lsd_peak_db", "worst 5 ms frame (dB)", 2),
         ("gap_ms", "longest gap (ms)", 0), ("level_db", "level (dB)", 2),
         ("length_diff_ms", "length vs reference (ms)", 0))
#: the held-out size band a Listen sentence is taken from: long enough to be cut in pieces
SIZE = "medium"


@dataclass
class Take:
    """One configuration's audio of the sentence and the ruler's reading of it."""

    label: str
    audio: np.ndarray
    #: the ruler's figures against the reference (labkit.quality.ruler.Figures.to_dict())
    figures: dict[str, Any] = field(default_factory=dict)
    #: "pass" or "fail" (the ruler's verdict), None for the reference itself
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    #: other figures a stage reads (stage 05: clicks per minute), shown under the ruler's
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "seconds": round(self.seconds, 3), "verdict": self.verdict,
                "reasons": self.reasons, "extra": self.extra,
                "figures": {k: self.figures.get(k) for k, _, _ in SHOWN}}


@dataclass
class Listening:
    """A "Listen" section: the sentence, the reference the figures are read against, and
    the takes side by side (stock first)."""

    utterance: str
    text: str
    voice: str
    #: what the figures are measured against, in words
    against: str
    takes: list[Take]
    reference: np.ndarray | None = None
    note: str = ""

    def take(self, label: str) -> Take:
        return next(t for t in self.takes if t.label == label)

    def to_dict(self) -> dict[str, Any]:
        """The record's part (no audio)."""
        return {"utterance": self.utterance, "text": self.text, "voice": self.voice,
                "against": self.against, "note": self.note,
                "takes": [t.to_dict() for t in self.takes],
                "definition": ruler.definition()}


def sentence(utt_id: str | None = None) -> corpora.Utterance:
    """The held-out utterance a Listen section plays: ``utt_id``, or the first of the
    held-out set's medium band (one sentence long enough to be cut in pieces)."""
    held = corpora.load("heldout", purpose="report")
    if utt_id is not None:
        return held.select(ids=[utt_id]).utterances[0]
    return held.select(sizes=[SIZE]).utterances[0]


def prepared(utt: corpora.Utterance) -> corpora.Prepared:
    return corpora.prepare([utt])[0]


def whole(engine, utt: corpora.Utterance) -> np.ndarray:
    """``utt`` read by ``engine`` (labkit.engine.runtime.Engine) in one call, unchunked:
    the reference a stage that changes only how the text is cut or run reads against."""
    p = prepared(utt)
    return engine.run_tokens(p.tokens, utt.voice, utt.speed).audio


def streamed(synth, utt: corpora.Utterance) -> np.ndarray:
    """``utt`` through a streaming synthesizer (labkit.engine.pipeline), chunks joined as a
    client plays them."""
    return synth.synthesize(utt.text, voice=utt.voice, speed=utt.speed, lang=utt.lang)


def judge(reference: np.ndarray, label: str, audio: np.ndarray,
          extra: dict[str, Any] | None = None) -> Take:
    """``audio`` as a take, read by the ruler against ``reference`` (aligned, level
    matched; labkit.quality.ruler.judge): its figures and its verdict."""
    fig, v = ruler.judge(reference, audio, standard_figures=False)
    return Take(label, np.asarray(audio, np.float32), fig.to_dict(), v.word, list(v.reasons),
                dict(extra or {}))


def listening(utt: corpora.Utterance, against: str, reference: np.ndarray | None,
              takes: dict[str, np.ndarray], extra: dict[str, dict] | None = None,
              note: str = "", reference_take: str | None = None) -> Listening:
    """Every take judged against ``reference`` (label -> audio, stock first). With
    ``reference_take`` the take of that label is the reference (``reference`` None): it is
    played, not judged, and the others are read against it."""
    extra = extra or {}
    if reference_take is not None:
        reference = takes[reference_take]
    out = [Take(label, np.asarray(a, np.float32), extra=dict(extra.get(label) or {}))
           if label == reference_take else judge(reference, label, a, extra.get(label))
           for label, a in takes.items()]
    return Listening(utt.id, utt.text, utt.voice, against, out,
                     None if reference_take is not None else np.asarray(reference, np.float32), note)


# -- on the page and on disk ---------------------------------------------------------------------
def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def audio_tag(audio: np.ndarray, rate: int = SAMPLE_RATE) -> str:
    """A player holding ``audio`` as a WAV data URI in ``<audio src>``: the form JupyterLab
    keeps in a notebook it does not trust (an executed copy), where ``<source src>`` is
    stripped."""
    data = base64.b64encode(wav_bytes(audio, rate)).decode("ascii")
    return f"<audio controls preload='none' src='data:audio/wav;base64,{data}'></audio>"


def _value(v: Any, places: int) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return f"{v:.{places}f}"
    return str(v)


def figure_rows(take: Take) -> list[tuple[str, str]]:
    """(label, value) lines under a player: the verdict, the ruler's figures, the extras."""
    rows = [("ruler", "— (the reference)" if take.verdict is None else take.verdict
             + (f" ({'; '.join(take.reasons)})" if take.reasons else ""))]
    rows += [(label, _value(take.figures.get(k), places)) for k, label, places in SHOWN]
    rows += [(k, _value(v, 2)) for k, v in take.extra.items()]
    rows.append(("duration (s)", f"{take.seconds:.2f}"))
    return rows


def html_table(lst: Listening) -> str:
    """The takes side by side: one column each, its player on top, the figures under it."""
    e = html.escape
    head = "".join(f"<th>{e(t.label)}</th>" for t in lst.takes)
    players = "".join(f"<td>{audio_tag(t.audio)}</td>" for t in lst.takes)
    figures = "".join(
        "<td><table>" + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in figure_rows(t))
        + "</table></td>" for t in lst.takes)
    ref = (f"<p>Reference ({e(lst.against)}): {audio_tag(lst.reference)}</p>"
           if lst.reference is not None else "")
    return (f"<p><b>{e(lst.utterance)}</b> ({e(lst.voice)}): “{e(lst.text)}”</p>"
            f"<table><tr>{head}</tr><tr>{players}</tr><tr>{figures}</tr></table>{ref}"
            f"<p>Figures: the quality ruler (labkit.quality.ruler) against {e(lst.against)}. "
            f"{e(lst.note)}</p>")


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "take"


def write(lst: Listening, out_dir: Path) -> list[Path]:
    """Each take (and the reference) as ``listen-<label>.wav`` in ``out_dir``."""
    out_dir = Path(out_dir)
    pairs: list[tuple[str, np.ndarray]] = [(t.label, t.audio) for t in lst.takes]
    if lst.reference is not None:
        pairs.append(("reference", lst.reference))
    return [files.write_bytes(out_dir / f"listen-{slug(label)}.wav", wav_bytes(a))
            for label, a in pairs]


def labels(stock: str, shipped: str, same: bool) -> tuple[str, str]:
    """The two column titles: ``stock: <what>`` and ``shipped: <what>``, or, where the stage
    ships the stock configuration, the runner-up as ``tried, not shipped: <what>``."""
    return f"stock: {stock}", (f"tried, not shipped: {shipped}" if same else f"shipped: {shipped}")


__all__ = ["Take", "Listening", "sentence", "whole", "streamed", "judge", "listening",
           "html_table", "write", "labels", "figure_rows", "audio_tag", "SHOWN"]
