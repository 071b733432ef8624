"""Stage 01's report: the notebook's tables and cost figure from a
:class:`~labkit.lab.s01_g2p_sanitization.SanitizationResult`, and its "try it" box
(:func:`try_view`: the sanitized text, the report, the phonemes per piece, the audio).
"""
from __future__ import annotations

import json
from typing import Any

from labkit.config import LabConfig
from labkit.engine.phonemize import phonemize_json
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.kokoro import SAMPLE_RATE
from labkit.lab.s01_g2p_sanitization import MAX_COST_RATIO, SanitizationResult
from labkit.tables import interval, markdown


def corpus_table(result: SanitizationResult) -> str:
    """Per corpus case: the input, what the sanitizer made of it, the rules that fired, problems."""
    rows = [dict(r, input=repr(r["input"])[:70], sanitized=r.get("sanitized", r.get("refused", ""))[:90],
                 rules=", ".join(r.get("rules", {})), problems="; ".join(r["problems"]))
            for r in result.summary["results"]]
    return markdown(rows, ["id", "ok", "input", "sanitized", "rules", "fallbacks",
                           "dropped_at_tokenization", "problems"])


def languages_table(result: SanitizationResult) -> str:
    """Per language: its voice, the G2P that read it, cases matching the G2P alone, tones."""
    rows = [{"language": lang, "voice": r["voice"], "engine": r.get("engine") or "-",
             "passed": f"{r['passed']}/{r['cases']}",
             "tones": f"{r['tones_passed']}/{r['tone_cases']}" if "tone_cases" in r else "",
             "unavailable": r["unavailable"] or ""}
            for lang, r in result.languages["languages"].items()]
    return markdown(rows, ["language", "voice", "engine", "passed", "tones", "unavailable"])


def language_cases_table(result: SanitizationResult) -> str:
    """Per language case: the input, the phonemes made, problems."""
    rows = [dict(r, problems="; ".join(r["problems"])) for r in result.languages["results"]]
    return markdown(rows, ["id", "ok", "input", "phonemes", "problems"])


def saved_table(result: SanitizationResult) -> str:
    """Per corpus case: G2P on the raw input against the sanitized one."""
    return markdown(result.raw_vs_sanitized)


def cost_table(result: SanitizationResult) -> str:
    """Per timed text: the medians, labkit / misaki with its interval, the A/A band."""
    rows = [dict(r, ci95=interval(r['labkit_over_misaki_ci95']),
                 noise=interval(r['noise_band']))
            for r in result.cost["rows"]]
    cols = ["text", "words", "pieces", "g2p_calls", "misaki_s", "labkit_s", "first_piece_s",
            "sanitize_s", "espeak_s",
            "labkit_over_misaki", "ci95", "noise", "rounds"]
    return markdown(rows, cols, headers=["text", "words", "pieces", "texts phonemized", "misaki alone s",
                                         "sanitize + per-piece G2P s", "until the first piece s",
                                         "sanitize s",
                                         "espeak (kokoro-onnx) s", "labkit / misaki",
                                         "95 % interval", "A/A band", "rounds"])


def plot_cost(result: SanitizationResult, plt):
    """Median times per text (log scale) and labkit / misaki with its interval, against the
    target."""
    rows = result.cost["rows"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
    labels = [f"{r['text']} ({r['words']} w)" for r in rows]
    keys = [k for k in ("misaki_s", "labkit_s", "first_piece_s", "sanitize_s", "espeak_s") if rows and k in rows[0]]
    width = 0.8 / max(1, len(keys))
    for i, k in enumerate(keys):
        ax[0].bar([j + i * width for j in range(len(rows))], [r[k] * 1e3 for r in rows], width, label=k)
    ax[0].set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], labels)
    ax[0].set_ylabel("median ms")
    ax[0].set_yscale("log")
    ax[0].legend()
    ax[1].barh(labels, [r["labkit_over_misaki"] for r in rows],
               xerr=[[r["labkit_over_misaki"] - r["labkit_over_misaki_ci95"][0] for r in rows],
                     [r["labkit_over_misaki_ci95"][1] - r["labkit_over_misaki"] for r in rows]])
    ax[1].axvline(1.0, color="grey", lw=0.8)
    ax[1].axvline(MAX_COST_RATIO, color="tab:red", lw=0.8, ls="--")
    ax[1].set_xlabel("labkit / misaki (95 % interval); red: the target")
    fig.tight_layout()
    return fig


def try_text(text: str, cfg: LabConfig, synth: StreamingSynthesizer) -> dict[str, Any]:
    """The "try it" box: the sanitized text, the report and the phonemes per piece as
    text, and the audio; a refusal comes back as ``{"refused": message}``."""
    try:
        out = phonemize_json(text, cfg)
    except ValueError as exc:  # InputTooLong is a ValueError too
        return {"refused": str(exc)}
    lines = [out["text"], json.dumps(out["report"], ensure_ascii=False, indent=1)[:2000]]
    lines += [f"{p['boundary']} | {p['phonemes']}" for p in out["pieces"]]
    return {"text": "\n".join(lines), "audio": synth.synthesize(text)}


def try_view(text: str, cfg: LabConfig, synth: StreamingSynthesizer) -> list[Any]:
    """The "try it" box's action (labkit.lab.page.try_it): :func:`try_text` as what the box
    shows -- the text, then a player; a refusal as its message."""
    from IPython.display import Audio  # notebook-only third-party dependency

    r = try_text(text, cfg, synth)
    if "refused" in r:
        return [f"refused: {r['refused']}"]
    return [r["text"], Audio(r["audio"], rate=SAMPLE_RATE)]
