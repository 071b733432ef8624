"""Stage 05: chunking and streaming: first audio fast, no gaps, no audible seams.

* :func:`sweep` -- each chunking variant (overrides of ``cfg.chunking``) against the
  configured one on time to first audio, timed by the one instrument
  (labkit.measure.compare: interleaved rounds, paired ratios with intervals, an A/A
  control), then streamed whole to count underruns and check that every word came out;
* :func:`seam_costs` -- the cost at the seams (labkit.measure.seams) of the baseline and of
  the variant that earned its place, when one did, each measured the same way;
* :func:`run` / :func:`record` -- what the notebook calls; the article streamed at the
  stage's choice; the candidates the journal's selection reads.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from labkit.config import LabConfig
from labkit.engine import chunking
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.lab.stage import public
from labkit.measure import seams, texts
from labkit.measure.compare import compare
from labkit.measure.streaming import first_audio, run_stream, stream_failures, summarize_runs
from labkit.tables import interval

NAME = "05_chunking"
#: the stage's criterion for the journal: time to first audio
CRITERION = "ttfa_s"
BASELINE = "default"
#: the bound on what the joins add at the seams (seam LSD minus mid-piece LSD, dB)
MAX_SEAM_EXCESS_DB = 2.0


def chunking_label(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or BASELINE


def synthesizers(engine: Engine, variants: list[dict[str, Any]]) -> dict[str, StreamingSynthesizer]:
    """label -> a synthesizer with that variant's chunking; the configured one is "default"."""
    out = {BASELINE: StreamingSynthesizer(engine)}
    for overrides in variants:
        if overrides:
            ccfg = dataclasses.replace(engine.cfg.chunking, **overrides)
            out[chunking_label(overrides)] = StreamingSynthesizer(engine, chunking_cfg=ccfg)
    return out


def sweep(synths: dict[str, StreamingSynthesizer], text: str, rounds: int | None = None,
          stream_repeats: int = 1, startup_buffer_s: float = 0.0) -> dict[str, Any]:
    """TTFA of every variant against the default (paired, interleaved), then each streamed
    whole ``stream_repeats`` times for underruns, words and end-to-end RTF."""
    cmp = compare({k: (lambda s=s: first_audio(s, text)) for k, s in synths.items()}, BASELINE,
                  rounds=rounds, measure=float, criterion=CRITERION)
    rows = []
    for label, synth in synths.items():
        runs = [run_stream(synth, text, name=label) for _ in range(max(1, stream_repeats))]
        row = summarize_runs(runs, startup_buffer_s)
        row.update(label=label, chunking=dataclasses.asdict(synth.chunking_cfg),
                   ttfa_s=cmp.median(label), ttfa_ratio=cmp.ratio(label),
                   ttfa_ci95=list(cmp.ci95(label)), first_piece=runs[0].chunks[0]["text"],
                   tokens=[c["tokens"] for c in runs[0].chunks])
        rows.append(row)
    return {"comparison": cmp, "rows": rows}


def earned(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The variant whose TTFA interval lies wholly above 1.0 (faster than the default beyond
    the noise) and that streamed with no underrun and every word: the highest low end wins;
    none (or an exact tie) keeps the default."""
    ok = [r for r in rows if r["label"] != BASELINE and r["ttfa_ci95"][0] > 1.0
          and not stream_failures(r)]
    if not ok:
        return None
    best = max(ok, key=lambda r: r["ttfa_ci95"][0])
    ties = [r for r in ok if r["ttfa_ci95"][0] == best["ttfa_ci95"][0]]
    return best if len(ties) == 1 else None


def seam_costs(synths: dict[str, StreamingSynthesizer], labels: list[str], text: str
               ) -> dict[str, dict[str, Any]]:
    """label -> the seam report of that variant on ``text`` (the same measure for each)."""
    return {label: seams.seam_report(synths[label].engine, synths[label].chunking_cfg, text)
            for label in dict.fromkeys(labels)}


def run(cfg: LabConfig, st, *, variants: list[dict[str, Any]], sweep_text: str = "paragraph",
        rounds: int | None = None, stream_repeats: int = 1, article_text: str = "article",
        article_repeats: int = 1, seam_text: str = "paragraph", startup_buffer_s: float = 0.0,
        voices: list[str] = (), listen: bool = True) -> dict[str, Any]:
    engine = Engine(cfg)
    engine.warm_up(repeats=2)
    synths = synthesizers(engine, variants)
    text = texts.named(sweep_text)
    clean = synths[BASELINE].sanitize(text)
    pieces = {label: s.pieces(text) for label, s in synths.items()}
    sw = sweep(synths, text, rounds, stream_repeats, startup_buffer_s)
    chosen = earned(sw["rows"])
    label = chosen["label"] if chosen else BASELINE
    seam = seam_costs(synths, [BASELINE, label], texts.named(seam_text))
    article = texts.named(article_text)
    art_runs = [run_stream(synths[label], article) for _ in range(max(1, article_repeats))]
    art = summarize_runs(art_runs, startup_buffer_s)
    art.update(words=texts.word_count(article),
               max_piece_tokens=max(c["tokens"] for c in art_runs[0].chunks))
    voice_rows = {v: run_stream(synths[label], text, voice=v).summary() for v in voices}
    return {"label": label, "pieces": {k: [p.tokens for p in v] for k, v in pieces.items()},
            "first_pieces": {k: v[0].text for k, v in pieces.items()},
            "coverage_ok": {k: chunking.coverage(clean, v).ok for k, v in pieces.items()},
            "comparison": sw["comparison"], "rows": sw["rows"], "seams": seam,
            "article": art, "_article_run": art_runs[0], "voices": voice_rows,
            "chunking": sw["rows"][[r["label"] for r in sw["rows"]].index(label)]["chunking"],
            "texts": {"sweep": sweep_text, "seam": seam_text, "article": article_text}}


def candidates(rows: list[dict[str, Any]], seam: dict[str, dict], base_chunking) -> list[dict]:
    """Every variant for the journal's selection, the default marked as the baseline.
    Chunking moves the audio only at the seams: a variant's ``lsd_db`` is its seam excess
    (seam minus mid-piece distance to the unchunked audio), measured for the default and
    for the variant that earned its place; the others carry none and cannot be chosen."""
    base = dataclasses.asdict(base_chunking)
    out = []
    for r in rows:
        s = seam.get(r["label"])
        excess = s.get("seam_excess_db") if s else None
        failed = stream_failures(r)
        if excess is not None and excess > MAX_SEAM_EXCESS_DB:
            failed.append(f"seam excess {excess:.2f} dB > {MAX_SEAM_EXCESS_DB} dB")
        c = {"name": f"chunking {r['label']}",
             "overrides": {f"chunking.{k}": v for k, v in r["chunking"].items() if base.get(k) != v},
             "ttfa_s": r["ttfa_s"], "rtf": r["rtf"],
             "lsd_db": None if excess is None else max(0.0, excess),
             "lsd_basis": "seam excess vs the unchunked audio" if s else "seams not measured",
             "measured": [CRITERION, "underruns", "words"] + (["lsd_db"] if s else []),
             "failed_checks": failed, "criterion": CRITERION}
        if r["label"] == BASELINE:
            c.update(baseline=True, lsd_db=0.0 if excess is None else max(0.0, excess),
                     ci95=r["ttfa_ci95"])
        else:
            c.update(ratio=r["ttfa_ratio"], ci95=r["ttfa_ci95"])
        out.append(c)
    return out


#: the stage's targets: (name, headline key, test)
def targets(result: dict[str, Any]) -> dict[str, bool]:
    art = result["article"]
    default_seam = result["seams"][BASELINE]
    chosen_seam = result["seams"][result["label"]]
    excess = chosen_seam.get("seam_excess_db")
    return {"article_no_underruns": art["underruns_max"] == 0,
            "article_all_words": bool(art.get("words_present")),
            "seams_within_bound": excess is not None and excess <= MAX_SEAM_EXCESS_DB,
            "seams_no_worse_than_default": (excess is not None and default_seam.get("seam_excess_db") is not None
                                            and excess <= default_seam["seam_excess_db"] + 1e-9)}


def headline(result: dict[str, Any]) -> dict[str, Any]:
    label, art, cmp = result["label"], result["article"], result["comparison"]
    out: dict[str, Any] = {"chunking": label}
    for r in result["rows"]:
        if r["label"] != BASELINE:
            out[f"TTFA {r['label']} vs default (x)"] = {
                "value": round(r["ttfa_ratio"], 3), "ci95": [round(x, 3) for x in r["ttfa_ci95"]]}
    out["TTFA noise band (A/A)"] = [round(x, 3) for x in cmp.noise_band]
    base = next(r for r in result["rows"] if r["label"] == BASELINE)
    out[f"{result['texts']['sweep']} TTFA default (s)"] = round(base["ttfa_s"], 3)
    out[f"{result['texts']['sweep']} underruns default"] = base["underruns_max"]
    for lab, s in result["seams"].items():
        if s.get("seam_excess_db") is not None:
            out[f"seam excess {lab} (dB)"] = round(s["seam_excess_db"], 2)
        out[f"max join discontinuity {lab}"] = round(s["max_discontinuity_ratio"], 3)
    out.update({"article underruns after first chunk": art["underruns_max"],
                "article words present": art.get("words_present"),
                "article RTF": round(art["rtf"], 3), "article jitter": round(art["jitter_median"], 3),
                "article dropout": round(art["dropout_max"], 5)})
    for name, ok in targets(result).items():
        out[f"target {name}"] = "met" if ok else "NOT met"
    return out


def record(st, result: dict[str, Any]) -> None:
    st.metrics["sweep"] = result["rows"]
    st.metrics["comparisons"] = {f"TTFA by chunking ({result['texts']['sweep']})":
                                 result["comparison"].to_dict()}
    st.metrics["pieces"] = result["pieces"]
    st.metrics["seams"] = {k: public(v) for k, v in result["seams"].items()}
    st.metrics["article"] = result["article"]
    st.metrics["voices"] = result["voices"]
    st.metrics["selection"] = {"chunking": result["chunking"], "label": result["label"]}
    st.metrics["candidates"] = candidates(result["rows"], result["seams"], st.cfg.chunking)
    st.metrics["targets_met"] = targets(result)
    st.metrics["headline"] = headline(result)
    if result["label"] == BASELINE:
        st.note("no chunking variant was faster to first audio beyond the noise (its interval "
                "wholly above 1.0) with no underrun: the configured chunking stays")


def sweep_table(result: dict[str, Any]) -> str:
    rows = ["| variant | chunks | TTFA med s | TTFA vs default | 95 % interval | total s | RTF | "
            "underruns (max) | words |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rows.append(f"| {r['label']} | {r['chunks']} | {r['ttfa_s']:.3f} | {r['ttfa_ratio']:.3f} | "
                    f"{interval(r['ttfa_ci95'], 3)} | {r['total_s']:.2f} | "
                    f"{r['rtf']:.3f} | {r['underruns_max']} | {r.get('words_present')} |")
    return "\n".join(rows)


def plot_sweep(result: dict[str, Any], plt):
    rows = result["rows"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
    labels = [r["label"] for r in rows]
    ax[0].barh(labels, [r["ttfa_ratio"] for r in rows], color="tab:blue",
               xerr=[[r["ttfa_ratio"] - r["ttfa_ci95"][0] for r in rows],
                     [r["ttfa_ci95"][1] - r["ttfa_ratio"] for r in rows]])
    ax[0].axvline(1.0, color="grey", lw=0.8)
    ax[0].set_xlabel("TTFA speed-up vs default (95 % interval)")
    ax[1].barh(labels, [r["rtf"] for r in rows], color="tab:orange")
    ax[1].set_xlabel("end-to-end RTF")
    ax[1].set_yticks([])
    fig.tight_layout()
    return fig


def plot_article_slack(result: dict[str, Any], plt):
    run_ = result["_article_run"]
    pb = run_.playback(0.0)
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(range(len(run_.arrivals)), [s - a for s, a in zip(pb.starts, run_.arrivals)], ".-")
    ax.axhline(0, color="tab:red")
    ax.set_xlabel("chunk")
    ax.set_ylabel("slack: play start - arrival (s)")
    ax.set_title("Article: how far ahead of playback each chunk arrived (below 0 = gap)")
    fig.tight_layout()
    return fig


def plot_seams(result: dict[str, Any], plt):
    fig, axes = plt.subplots(1, len(result["seams"]), figsize=(6 * len(result["seams"]), 3),
                             squeeze=False)
    for ax, (label, s) in zip(axes[0], result["seams"].items()):
        xs = range(len(s["rows"]))
        ax.bar([x - 0.2 for x in xs], [r["seam_lsd_db"] or 0 for r in s["rows"]], 0.4, label="at the seam")
        ax.bar([x + 0.2 for x in xs], [r["control_lsd_db"] or 0 for r in s["rows"]], 0.4,
               label="mid-piece (control)")
        ax.set_xticks(list(xs), [f"{r['position_s']:.1f}s" for r in s["rows"]], rotation=30)
        ax.set_ylabel("LSD vs unchunked (dB)")
        ax.set_title(label)
        ax.legend()
    fig.tight_layout()
    return fig
