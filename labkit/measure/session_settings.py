"""Session settings timed against each other, on Kokoro's real inputs: the screen (one
change at a time against the default, warm) and cold starts in fresh processes.

* :func:`token_inputs` -- model inputs of about N tokens (development text through G2P);
* :class:`SessionChange` / :func:`screen` -- every candidate session alive at once, timed by
  the one instrument (labkit.measure.compare), each one's audio set against the default's;
* :func:`cold_command` / :func:`cold_summary` / :func:`cold_ceiling` -- one cold start per
  fresh process (``python -m labkit.optimize.convert cold``) and what the starts add up to.

Stage 02 (labkit.lab.s02_ort_conversion) decides what the figures earn.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labkit import progress
from labkit.config import LabConfig, SessionConfig
from labkit.engine import assets, graph_cache
from labkit.engine.g2p import get_g2p
from labkit.engine.phonemized import tokenize
from labkit.engine.voices import VoiceBank
from labkit.engine.sessions import kokoro_feeds, style_row
from labkit.kokoro import VOCAB
from labkit.measure import corpora
from labkit.measure.compare import Comparison, compare
from labkit.quality import lsd_db


def token_inputs(cfg: LabConfig, lengths: list[int], voice: str | None = None) -> dict[int, dict]:
    """Model inputs of about each length (cut at a word boundary) from the development
    corpus's US-English sentences, phonemized by labkit.engine.g2p."""
    corpus = corpora.load("dev", purpose="choose")  # it chooses session settings
    g2p = get_g2p("en-us")
    stream: list[int] = []
    for u in corpus:
        if u.lang == "en-us":
            stream += tokenize(g2p(u.text).phonemes) + [VOCAB[" "]]
    while len(stream) < max(lengths):
        stream = stream + stream
    pack = VoiceBank.load(assets.voices_path(cfg)).pack(voice or cfg.voice)
    out = {}
    for n in lengths:
        toks = stream[:n]
        spaces = [i for i, t in enumerate(toks) if t == VOCAB[" "]]
        if spaces and spaces[-1] > 0.8 * n:
            toks = toks[:spaces[-1]]
        out[n] = kokoro_feeds(toks, style_row(pack, len(toks)))
    return out


@dataclass
class SessionChange:
    """One screened session setting: the default with ``changes`` applied (what the
    journal's selection calls a candidate is built from these in :func:`candidates`)."""

    label: str
    session: SessionConfig
    #: which SessionConfig fields differ from the default (for the table)
    changes: dict = field(default_factory=dict)


def open_session(model_path: Path, session: SessionConfig, cache_dir: Path):
    """A session for ``session`` (its cached graph built first)."""
    graph_cache.cached_model_for(model_path, session, cache_dir)
    return graph_cache.make_cached_session(model_path, session, cache_dir)


def candidates_base(changes: list[SessionChange]) -> SessionConfig:
    """The default settings of a screen (its "default" entry)."""
    return next(c.session for c in changes if c.label == "default")


def runner(sess, feeds):
    """One inference of ``sess`` on ``feeds``: its audio, flat float32."""
    return lambda: np.asarray(sess.run(None, feeds)[0], dtype=np.float32).ravel()


def screen(model_path: Path, changes: list[SessionChange], feeds: dict, cache_dir: Path,
           rounds: int | None, warmup: int, log=progress.say,
           max_rounds: int | None = None, decide_at: float | None = None) -> dict[str, Any]:
    """Every candidate's warm time at one length against the default (the one instrument),
    and its audio's distance from the default's. A candidate whose session cannot be made
    (a rewrite failing its check) is kept with its error."""
    sessions, errors = {}, {}
    for c in changes:
        try:
            sessions[c.label] = open_session(model_path, c.session, cache_dir)
        except Exception as exc:  # noqa: BLE001 - recorded, never hidden
            log(f"{c.label}: {type(exc).__name__}: {exc}")
            errors[c.label] = f"{type(exc).__name__}: {exc}"
    # the A/A control is a second default session: two sessions of the same settings can
    # differ, and every candidate here is a session of its own
    control = runner(open_session(model_path, candidates_base(changes), cache_dir), feeds)
    cmp = compare({k: runner(s, feeds) for k, s in sessions.items()}, "default",
                  warmup=warmup, rounds=rounds, max_rounds=max_rounds, keep=lambda y: y,
                  control=control, decide_at=decide_at)
    audio = {k: v[-1] for k, v in cmp.kept.items()}
    cmp.kept = {}
    rows = {}
    for c in changes:
        if c.label in errors:
            rows[c.label] = {"changes": c.changes, "error": errors[c.label]}
            continue
        rows[c.label] = {"changes": c.changes, "median_s": cmp.median(c.label),
                         "speedup": cmp.ratio(c.label), "ci95": list(cmp.ci95(c.label)),
                         "drift_vs_default_db": lsd_db(audio["default"], audio[c.label],
                                                       allow_length_mismatch=True)}
    return {"comparison": cmp, "rows": rows}


def cold_command(model_path: Path, session_cfg: SessionConfig, cache_dir: Path, tokens: list[int],
                 voices_path: Path, voice: str = "af_heart") -> list[str]:
    """One cold start in a fresh process (``python -m labkit.optimize.convert cold``)."""
    fields = dataclasses.asdict(session_cfg)
    return [sys.executable, "-m", "labkit.optimize.convert", "cold", "--model", str(model_path),
            "--session", json.dumps(fields), "--cache-dir", str(cache_dir),
            "--tokens", ",".join(map(str, tokens)), "--voices", str(voices_path), "--voice", voice]


def cold_summary(cmp: Comparison) -> dict[str, dict[str, float]]:
    """label -> median of each cold-start figure (first audio, create, first run)."""
    out = {}
    for label, runs in cmp.kept.items():
        if label == cmp.control:
            continue
        out[label] = {k: float(np.median([r[f"{k}_s"] for r in runs]))
                      for k in ("first_audio", "create", "first_run", "process_wall")}
    return out


def cold_ceiling(cold: dict) -> float:
    """The most any start-up work could win: the default's first audio over the best's
    first inference alone (as if its session cost nothing to create). First audio is
    create + one inference of the primer, and no graph or session setting removes the
    inference."""
    return cold["default"]["first_audio"] / cold["best"]["first_run"]
