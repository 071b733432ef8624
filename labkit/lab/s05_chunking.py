"""Stage 05: chunking and streaming: first audio fast, no gaps, no audible seams.

Measured by labkit.measure.chunkings:

* :func:`sweep` -- each chunking variant (overrides of ``cfg.chunking``) against the
  configured one on time to first audio, timed by the one instrument
  (labkit.measure.compare: interleaved rounds, paired ratios with intervals, an A/A
  control), then streamed whole to count underruns and check that every word came out;
* :func:`seam_costs` -- the cost at the seams (labkit.measure.seams) of every variant,
  each measured the same way against one shared unchunked reference (so every candidate
  carries a quality figure and none fails selection on "quality not measured");
* :func:`listen_rows` -- what a listener hears (labkit.measure.playback via run_stream): the
  configured chunking and its *contender* (the other schedule: adaptive vs the fixed ramp)
  streamed in interleaved rounds, without and with a competing CPU-bound process
  (labkit.measure.load);
* the first audio of the paragraph against a short phrase (the one instrument), and how
  fast a cancelled stream frees the session (labkit.measure.streaming.cancel_release);
* :func:`run` / :func:`record` -- what the notebook calls (labkit.lab.protocol); the article streamed at the
  stage's choice without and with the competing load; the targets; the candidates the
  journal's selection reads.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from labkit.best_config import model_for
from labkit.config import LabConfig, SelectionConfig
from labkit.engine import chunking, split_runtime
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.lab import listen as listening
from labkit.lab import opening_choice
from labkit.lab.chunking_report import FULL_BATCH
from labkit.lab.chunking_result import ChunkingResult
from labkit.lab.selection import quality_entry, rank
from labkit.lab.stage import public
from labkit.measure import corpora, openings, seams, texts
from labkit.measure.chunkings import (BASELINE, CRITERION, article_rows, click_figures, listen_rows,
                                      phrase_vs_text, seam_costs, sweep)
from labkit.optimize import split as splitting
from labkit.measure.streaming import cancel_release, no_underruns, run_stream, stream_failures

NAME = "05_chunking"
#: targets (issue #17): first audio of the paragraph at most this many times a phrase's
MAX_FIRST_AUDIO_RATIO = 1.2
#: a cancelled stream frees the synthesis session within this many seconds
MAX_CANCEL_RELEASE_S = 0.5
#: the contender of each schedule: the other one, with the primer that suits it
CONTENDERS = {"ramp": {"schedule": "adaptive", "primer_max_words": 5},
              "adaptive": {"schedule": "ramp", "primer_max_words": 8}}


def chunking_label(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or BASELINE


def synthesizers(engine: Engine, variants: list[dict[str, Any]]) -> dict[str, StreamingSynthesizer]:
    """label -> a synthesizer with that variant's chunking; the configured one is "default".
    A variant with ``prosody: sentence`` runs on the split engine of the same model (its
    parts built here once, labkit.optimize.split), every other one on ``engine``."""
    out = {BASELINE: StreamingSynthesizer(engine)}
    split_engine = None
    for overrides in variants:
        if overrides:
            ccfg = dataclasses.replace(engine.cfg.chunking, **overrides)
            eng = engine
            if ccfg.prosody == "sentence":
                if split_engine is None:
                    split_engine = sentence_engine(engine, ccfg)
                eng = split_engine
            out[chunking_label(overrides)] = StreamingSynthesizer(eng, chunking_cfg=ccfg)
    return out


def sentence_engine(engine: Engine, ccfg) -> Any:
    """The split engine (part A, then windows of part B) on ``engine``'s model file, warmed
    up, sharing its voices; the parts are built once into the split cache."""
    cfg = dataclasses.replace(engine.cfg, chunking=ccfg)
    parts = splitting.ensure_for(cfg)
    eng = split_runtime.SplitEngine(cfg, parts, voices=engine.voices, buckets=[],
                                    variant=engine.variant)
    eng.warm_up(repeats=2)
    return eng


def eligible(rows: list[dict[str, Any]], rules: SelectionConfig | None = None) -> list[str]:
    """The variants the sweep found faster to first audio beyond the threshold that
    streamed with no underrun and every word: the ones a listener must hear before any of
    them can be chosen."""
    rules = rules or SelectionConfig()
    return [r["label"] for r in rows if r["label"] != BASELINE and rules.clears(r["ttfa_ci95"])
            and not stream_failures(r)]


def run(cfg: LabConfig, st, *, variants: list[dict[str, Any]], sweep_text: str = "paragraph",
        rounds: int | None = None, stream_repeats: int = 1, article_text: str = "article",
        article_repeats: int = 1, seam_text: str = "paragraph", startup_buffer_s: float = 0.0,
        voices: list[str] = (), listen: bool = True,
        contender: dict[str, Any] | None = None, listener_rounds: int = 2,
        load_processes: int = 1, phrase_text: str = "phrase", cancel_text: str = "article",
        cancel_after_s: float = 0.5, opening_texts: list[str] | tuple[str, ...] = openings.TEXTS,
        opening_rounds: int | None = None, model: str = "configured") -> ChunkingResult:
    """``contender``: chunking overrides streamed beside the configured chunking as a
    listener hears it, with the same targets (but not on the article, which only the
    stage's choice streams); default: the other schedule (:data:`CONTENDERS`).
    ``load_processes``: competing busy processes in the under-load
    scenario (0: none). ``opening_texts``: the opening sweep's texts (empty: left out),
    timed in ``opening_rounds`` (None: the instrument's default). ``model``: "configured",
    or "earned": the model and session settings the stages before picked (best.json,
    labkit.best_config.earned_model), since how small a piece can be and still be ready in
    time depends on the speed of the model that ships with it."""
    cfg, streamed = model_for(cfg, model)
    engine = Engine(cfg)
    engine.warm_up(repeats=2)
    contender = dict(CONTENDERS[cfg.chunking.schedule] if contender is None else contender)
    prev_label = chunking_label(contender)
    synths = synthesizers(engine, [*variants, contender])
    text = texts.named(sweep_text)
    clean = synths[BASELINE].sanitize(text)
    pieces = {label: s.pieces(text) for label, s in synths.items()}
    sw = sweep(synths, text, rounds, stream_repeats, startup_buffer_s, cfg.selection.threshold)
    seam = seam_costs(synths, [BASELINE, prev_label, *[r["label"] for r in sw["rows"]]],
                      texts.named(seam_text))
    # what a listener hears: the configured chunking (what ships unless something earns
    # its place), the contender and every variant the sweep found faster, idle and under
    # load (a variant that was not heard cannot be chosen: candidates)
    heard = listen_rows(synths, [BASELINE, prev_label, *eligible(sw["rows"], cfg.selection)],
                        text, listener_rounds, load_processes, startup_buffer_s)
    label = stage_choice(sw["rows"], seam, cfg.chunking, heard, cfg.selection)
    # how the choice makes its first piece (issue #32): the opening sweep; an option that
    # earns its place and streams the paragraph with no gap idle and under load (heard as a
    # listener hears it, one option at a time), is what the rest of the stage measures and
    # the candidate ships
    def hear(s: StreamingSynthesizer) -> list[dict[str, Any]]:
        return listen_rows({label: s}, [label], text, listener_rounds, load_processes, startup_buffer_s)

    opening = (opening_sweep(synths[label], texts.named(phrase_text), opening_texts,
                             opening_rounds, load_processes, cfg.selection, lambda: split_engine_of(synths, engine), hear,
                             [h for h in heard if h["label"] == label]) if opening_texts else None)
    if opening:
        opening["chosen"] = label
    if opening and opening["shipped"] != opening["configured"]:
        synths[label] = opening["_synths"][opening["shipped"]]
        seam.update(seam_costs(synths, [label], texts.named(seam_text)))
        heard = [h for h in heard if h["label"] != label] + opening["heard"][opening["shipped"]]
    first = {lab: phrase_vs_text(synths[lab], texts.named(phrase_text), text, rounds)
             for lab in dict.fromkeys([label, BASELINE, prev_label])}
    cancel = {"terminate": cancel_release(synths[label], texts.named(cancel_text), cancel_after_s)}
    # the article (about ten minutes of audio, idle and under load) is most of the stage's
    # time: a batch with a time budget may leave it out (article_text empty)
    article = texts.named(article_text) if article_text else ""
    art_rows, art_first = (article_rows(synths[label], article, article_repeats, load_processes,
                                        startup_buffer_s) if article else ([], None))
    voice_rows = {v: run_stream(synths[label], text, voice=v).summary() for v in voices}
    heard_side = side_by_side(engine, synths, label, prev_label) if listen else None
    return {"_listening": heard_side, "_engine": engine, "label": label, "pieces": {k: [p.tokens for p in v] for k, v in pieces.items()},
            "first_pieces": {k: v[0].text for k, v in pieces.items()},
            "coverage_ok": {k: chunking.coverage(clean, v).ok for k, v in pieces.items()},
            "comparison": sw["comparison"], "rows": sw["rows"], "seams": seam,
            "article": art_rows[0] if art_rows else None, "article_rows": art_rows,
            "_article_run": art_first,
            "voices": voice_rows, "listener": heard, "contender": prev_label,
            "first_audio": first, "cancel": cancel, "load_processes": load_processes,
            "chunking": dataclasses.asdict(synths[label].chunking_cfg),
            "openings": opening,
            "model": streamed,
            "texts": {"sweep": sweep_text, "seam": seam_text, "article": article_text,
                      "phrase": phrase_text, "cancel": cancel_text, "openings": list(opening_texts)}}


def split_engine_of(synths: dict[str, StreamingSynthesizer], engine: Engine) -> Any:
    """The split engine a variant with sentence prosody already runs on, else one built."""
    for s in synths.values():
        if s.chunking_cfg.prosody == "sentence":
            return s.engine
    return sentence_engine(engine, dataclasses.replace(engine.cfg.chunking, prosody="sentence"))


def opening_sweep(synth: StreamingSynthesizer, phrase: str, names, rounds: int | None,
                  load_processes: int, rules: SelectionConfig, split_engine: Callable[[], Any] | None,
                  hear: Callable[[StreamingSynthesizer], list[dict[str, Any]]],
                  configured_heard: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The opening sweep on the stage's choice (labkit.measure.openings), its seams, and which
    way of making the first piece ships (labkit.lab.opening_choice), with the settings that
    option differs from the configuration by (``overrides``). ``split_engine``: gives the
    split engine the short first piece runs on where the choice has no sentence prosody.
    ``hear``: a synthesizer -> what a listener heard it stream (one row per load): options
    that earned their place are heard in turn and the first with no gap ships (``heard``:
    opening_choice.confirm), judged beside ``configured_heard``, the choice's own rows."""
    needs = synth.chunking_cfg.prosody != "sentence" and split_engine is not None
    synths = openings.options(synth, split_engine() if needs else None)
    out = openings.sweep(synths, phrase, list(names), rounds, load_processes)
    out["configured_heard"] = list(configured_heard)
    out["seams"] = {lab: {n: public(r) for n, r in reps.items()}
                    for lab, reps in openings.seam_reports(synths, list(names)).items()}
    out["verdicts"] = opening_choice.verdicts(out, rules)
    out["shipped"], out["heard"] = opening_choice.confirm(out, rules, lambda o: hear(synths[o]))
    mine, shipped = (openings.settings(synths[k]) for k in (out["configured"], out["shipped"]))
    out["overrides"] = {k: v for k, v in shipped.items() if mine[k] != v}
    out["_synths"] = synths
    return out


def stage_choice(rows: list[dict[str, Any]], seam: dict[str, dict], base_chunking,
                 listener: list[dict[str, Any]], rules: SelectionConfig) -> str:
    """The label the journal's selection would take from this stage's candidates (the
    same rules, the same figures: the sweep, the seams and what a listener heard), so the
    stage measures its article, cancel and targets on what ships; BASELINE when nothing
    earned its place or the top two tie exactly."""
    cands = candidates(rows, seam, base_chunking, listener)
    top = rank(cands, rules, NAME)
    if not top or (len(top) > 1 and top[0]["ci95"][0] == top[1]["ci95"][0]):
        return BASELINE
    return top[0]["name"].removeprefix("chunking ")


def candidates(rows: list[dict[str, Any]], seam: dict[str, dict], base_chunking,
               listener: list[dict[str, Any]] = (), opening: dict[str, Any] | None = None) -> list[dict]:
    """Every variant for the journal's selection, the default marked as the baseline.
    Chunking moves the audio only at the seams: a variant's ``quality`` is its seams' verdict
    (labkit.measure.seams: no click at any seam, no more clicks per minute than the
    unchunked audio), measured for the default and for every variant the stage streamed
    whole; the others carry none and cannot be chosen. ``lsd_db`` is the old seam excess
    (seam minus mid-piece distance to the unchunked audio), reported. Once a listener
    scenario ran, a variant that was not heard fails a check. ``opening``: the opening
    sweep (:func:`opening_sweep`), whose shipped option's settings the chosen variant
    carries (``chosen``: its label)."""
    base = dataclasses.asdict(base_chunking)
    heard = {h["label"] for h in listener}
    out = []
    for r in rows:
        s = seam.get(r["label"])
        excess = s.get("seam_excess_db") if s else None
        failed = stream_failures(r)
        for h in listener:  # what a listener heard, idle and under load, counts too
            if h["label"] == r["label"] and h["underruns_max"] > 0:
                failed.append(f"underruns as a listener hears it ({'+%d busy' % h['load_processes'] if h['load_processes'] else 'idle'})")
        if listener and r["label"] != BASELINE and r["label"] not in heard:
            failed.append("not heard as a listener (idle and under load)")
        clicks_ = (s or {}).get("clicks") or {}
        q = quality_entry(None if not s else s.get("quality_passed"), (s or {}).get("quality_reasons"),
                          "clicks (labkit.quality.clicks) at the seams and per minute against the "
                          "unchunked audio" if s else "seams not measured",
                          clicks_per_minute=(clicks_.get("chunked") or {}).get("per_minute"),
                          worst_seam_db=clicks_.get("worst_seam_db"))
        overrides = {f"chunking.{k}": v for k, v in r["chunking"].items() if base.get(k) != v}
        if opening and r["label"] == opening.get("chosen"):
            overrides.update(opening["overrides"])
        c = {"name": f"chunking {r['label']}", "overrides": overrides,
             "ttfa_s": r["ttfa_s"], "rtf": r["rtf"], "quality": q,
             "lsd_db": None if excess is None else max(0.0, excess),
             "measured": [CRITERION, "underruns", "words"] + (["quality"] if s else []),
             "failed_checks": failed, "criterion": CRITERION}
        if r["label"] == BASELINE:
            c.update(baseline=True, ci95=r["ttfa_ci95"])
        else:
            c.update(ratio=r["ttfa_ratio"], ci95=r["ttfa_ci95"])
        out.append(c)
    return out


def _listener(result: dict[str, Any], label: str) -> list[dict[str, Any]]:
    return [r for r in result.get("listener", []) if r["label"] == label]


def targets(result: dict[str, Any], label: str | None = None) -> dict[str, bool | None]:
    """The targets, each met or not, of ``label`` (default: the stage's choice, what ships;
    the article is streamed only for the choice, so a contender's article targets are
    not met: not measured). A batch that left the article out (``article_text`` empty)
    gets None for the article targets: not measured here, neither met nor missed."""
    label = label or result["label"]
    if not (result.get("article_rows") or result.get("article")):
        out = targets({**result, "article_rows": [{"underruns_max": 0}]}, label)
        return {k: (None if k.startswith("article") else v) for k, v in out.items()}
    measured_article = label == result["label"]
    art_rows = (result.get("article_rows") or [result["article"]]) if measured_article else []
    clicks_ = result["seams"].get(label, {}).get("clicks") or {}
    heard = _listener(result, label)
    loads = {0} | ({result["load_processes"]} if result.get("load_processes") else set())
    first = result.get("first_audio") or {}
    first = first.get(label) or {}
    cancel = (result.get("cancel") or {}).get("terminate") or {}
    o = result.get("openings")
    opening = (opening_choice.targets(o, o and o["shipped"], result.get("load_processes", 0))
               if measured_article else dict.fromkeys(opening_choice.TARGETS, False if o else None))
    return {**opening, "article_no_underruns": no_underruns(art_rows),
            "article_no_underruns_under_load": (no_underruns([r for r in art_rows if r.get("load_processes")])
                                                if result.get("load_processes") else False),
            "article_all_words": bool(art_rows) and all(bool(r.get("words_present")) for r in art_rows),
            "paragraph_no_underruns_idle_and_under_load": (
                no_underruns(heard) and {r["load_processes"] for r in heard} == loads),
            "first_audio_within_1.2x_phrase": (first.get("ratio") is not None
                                               and first["ratio"] <= MAX_FIRST_AUDIO_RATIO),
            "no_click_at_any_seam": bool(clicks_) and clicks_["clicks_at_seams"] == 0,
            "clicks_per_minute_no_more_than_unchunked": bool(clicks_) and clicks_["no_more_than_unchunked"],
            "cancel_frees_the_session_within_0.5s": (cancel.get("release_s") is not None
                                                     and cancel["release_s"] <= MAX_CANCEL_RELEASE_S
                                                     and not cancel.get("running_after"))}


def headline(result: dict[str, Any]) -> dict[str, Any]:
    label, cmp = result["label"], result["comparison"]
    out: dict[str, Any] = {"chunking": label}
    if result.get("model"):
        out["model streamed"] = "{variant} ({from})".format(**result["model"])
    for r in result["rows"]:
        if r["label"] != BASELINE:
            out[f"TTFA {r['label']} vs default (x)"] = {
                "value": round(r["ttfa_ratio"], 3), "ci95": [round(x, 3) for x in r["ttfa_ci95"]]}
    out["TTFA noise band (A/A)"] = [round(x, 3) for x in cmp.noise_band]
    base = next(r for r in result["rows"] if r["label"] == BASELINE)
    out[f"{result['texts']['sweep']} TTFA default (s)"] = round(base["ttfa_s"], 3)
    out[f"{result['texts']['sweep']} underruns default"] = base["underruns_max"]
    for lab, first in (result.get("first_audio") or {}).items():
        out[f"first audio {result['texts']['sweep']} / {result['texts']['phrase']}, {lab} (x)"] = {
            "value": round(first["ratio"], 3), "ci95": [round(x, 3) for x in first["ci95"]]}
        out[f"first audio {result['texts']['phrase']}, {lab} (s)"] = round(first["phrase_s"], 3)
    for r in result.get("listener", []):
        where = f"{result['texts']['sweep']} {r['label']}" + (
            f" +{r['load_processes']} busy" if r["load_processes"] else " idle")
        out[f"{where}: underruns (worst of {r['repeats']})"] = r["underruns_max"]
        out[f"{where}: silence s (worst)"] = round(r["underrun_s_max"], 2)
        out[f"{where}: first audio s"] = round(r["ttfa_s"], 3)
        out[f"{where}: seams"] = max(r["seams_each"])
    for lab, s in result["seams"].items():
        if lab in (BASELINE, label, result.get("contender")):
            ck = s.get("clicks")
            if ck:
                out[f"clicks per minute {lab} (95 % interval)"] = {
                    "value": round(ck["chunked"]["per_minute"], 2),
                    "ci95": [round(x, 2) for x in ck["chunked"]["ci95"]]}
                out[f"clicks at seams {lab} (of {len(ck['seam_scores_db'])}); worst seam score dB"] = (
                    f"{ck['clicks_at_seams']}; {ck['worst_seam_db']}")
            if s.get("seam_excess_db") is not None:
                out[f"seam excess {lab} (dB, standard LSD, reported)"] = round(s["seam_excess_db"], 2)
            out[f"max join discontinuity {lab}"] = round(s["max_discontinuity_ratio"], 3)
    ck = (result["seams"].get(BASELINE) or {}).get("clicks")
    if ck:
        out["clicks per minute, unchunked audio (95 % interval)"] = {
            "value": round(ck["unchunked"]["per_minute"], 2),
            "ci95": [round(x, 2) for x in ck["unchunked"]["ci95"]]}
    natural = (result["seams"].get(BASELINE) or {}).get("natural_discontinuity")
    if natural:  # the same measure where the unchunked audio has no join
        out["join discontinuity of the unchunked audio (p50 / p90 / p99)"] = " / ".join(
            str(natural[k]) for k in ("p50", "p90", "p99"))
    for art in result.get("article_rows") or ([result["article"]] if result.get("article") else []):
        where = "article" + (f" +{art['load_processes']} busy" if art.get("load_processes") else "")
        out.update({f"{where} underruns after first chunk": art["underruns_max"],
                    f"{where} silence s": round(art["underrun_s_max"], 2),
                    f"{where} words present": art.get("words_present"),
                    f"{where} RTF": round(art["rtf"], 3),
                    f"{where} jitter": round(art["jitter_median"], 3),
                    f"{where} dropout": round(art["dropout_max"], 5)})
    cancel = (result.get("cancel") or {}).get("terminate")
    if cancel:
        out["cancelled stream frees the session (s)"] = round(cancel["release_s"], 3)
    o = result.get("openings")
    if o:
        out["first piece made by (opening sweep)"] = o["shipped"]
        if o.get("heard"):  # the earned options a listener heard, in turn, until one streamed clean
            out["opening options heard on the paragraph: underruns idle / under load (worst)"] = "; ".join(
                f"{option}: " + " / ".join(str(r["underruns_max"]) for r in sorted(rows, key=lambda r: r["load_processes"]))
                for option, rows in o["heard"].items())
        for r in o["rows"]:
            if r["option"] == o["shipped"]:
                where = f"+{r['load_processes']} busy" if r["load_processes"] else "idle"
                out[f"first audio {r['text']} / {result['texts']['phrase']}, {where} (x)"] = {
                    "value": round(r["ratio"], 3), "ci95": [round(x, 3) for x in r["ci95"]]}
    for name, ok in targets(result).items():
        out[f"target {name}"] = ("met" if ok else "NOT met") if ok is not None else (
            "not measured (no opening sweep in this batch)" if name in opening_choice.TARGETS
            else f"not measured (no article in this batch: {FULL_BATCH})")
    if result.get("contender") and result["contender"] != label:
        for name, ok in targets(result, result["contender"]).items():
            if not name.startswith("article") and name not in opening_choice.TARGETS:
                out[f"contender {result['contender']}: target {name}"] = "met" if ok else "NOT met"
    return out


def record(st, result: ChunkingResult) -> None:
    st.metrics["sweep"] = result["rows"]
    st.metrics["comparisons"] = {f"TTFA by chunking ({result['texts']['sweep']})":
                                 result["comparison"].to_dict()}
    st.metrics["pieces"] = result["pieces"]
    st.metrics["seams"] = {k: public(v) for k, v in result["seams"].items()}
    st.metrics["article"] = result["article"]
    st.metrics["article_rows"] = result.get("article_rows", [result["article"]])
    st.metrics["listener"] = result.get("listener", [])
    st.metrics["first_audio"] = {}
    for lab, first in (result.get("first_audio") or {}).items():
        first = dict(first)
        st.metrics["comparisons"][f"first audio: {result['texts']['phrase']} vs "
                                  f"{result['texts']['sweep']}, {lab}"] = first.pop("comparison").to_dict()
        st.metrics["first_audio"][lab] = first
    st.metrics["cancel"] = result.get("cancel", {})
    if result.get("contender"):
        st.metrics["contender"] = {"label": result["contender"],
                                   "targets_met": targets(result, result["contender"])}
    st.metrics["voices"] = result["voices"]
    st.metrics["selection"] = {"chunking": result["chunking"], "label": result["label"]}
    st.metrics["model"] = result.get("model")
    o = result.get("openings")
    if o:
        st.metrics["openings"] = public({k: v for k, v in o.items() if k != "comparisons"})
        for where, cmp in o["comparisons"].items():
            st.metrics["comparisons"][f"first audio by opening length vs {result['texts']['phrase']}, "
                                      f"{where}"] = cmp.to_dict()
        if o["overrides"] and result["label"] == BASELINE:
            st.note(f"the opening sweep earned {o['shipped']} for the configured chunking: it ships "
                    "with " + ", ".join(f"{k}: {v}" for k, v in o["overrides"].items())
                    + " (best.json)")
    st.metrics["candidates"] = candidates(result["rows"], result["seams"], st.cfg.chunking,
                                          result.get("listener", []), o)
    st.metrics["targets_met"] = targets(result)
    if result.get("_listening") is not None:
        st.metrics["listen"] = result["_listening"].to_dict()
        listening.write(result["_listening"], st.dir)
    st.metrics["headline"] = headline(result)
    if result["label"] == BASELINE:
        st.note("no chunking variant earned its place (faster to first audio beyond the "
                f"threshold, {st.cfg.selection.threshold:.2f}, with no failed check: no underrun "
                "in the sweep or as a listener hears it, seams within bound): the configured "
                "chunking stays")


# -- listen and try it -------------------------------------------------------------------------------
def side_by_side(engine: Engine, synths: dict[str, StreamingSynthesizer], label: str,
                 contender: str, utt_id: str | None = None) -> listening.Listening:
    """The held-out listening sentence streamed with the configured chunking (stock) and
    with the stage's choice (or, when the configured one stays, the contender), each read
    by the ruler against the same model reading the sentence unchunked, with each take's
    clicks beside."""
    utt = listening.sentence(utt_id)
    other = label if label != BASELINE else contender
    stock, shipped = listening.labels(f"chunking {BASELINE}", f"chunking {other}", label == BASELINE)
    takes = {stock: listening.streamed(synths[BASELINE], utt),
             shipped: listening.streamed(synths[other], utt)}
    return listening.listening(
        utt, "the same model reading the sentence in one call, unchunked",
        listening.whole(engine, utt), takes, {k: click_figures(a) for k, a in takes.items()},
        note="Chunking moves the audio at the seams and restarts the phrasing; the stage judges "
             "seams by the click detector (no reference needed), not by the distance to the "
             "unchunked audio.")


def try_controls(cfg: LabConfig, text: str) -> dict[str, Any]:
    """The "Try it" knobs, each starting at the configured value."""
    c = cfg.chunking
    return {"text": text, "schedule": list(dict.fromkeys([c.schedule, "ramp", "adaptive"])),
            "primer_max_words": int(c.primer_max_words),
            "prosody": list(dict.fromkeys([c.prosody, "piece", "sentence"]))}


def try_chunking(engine: Engine, text: str, schedule: str, primer_max_words: int, prosody: str,
                 plt) -> list[Any]:
    """Try it: ``text`` streamed with these chunking settings (the rest as configured) on
    ``engine``'s model: the stream's figures (first audio, pieces, underruns, RTF), a
    timeline of each piece's synthesis against its playback (:func:`plot_timeline`), and
    the audio beside the same model reading the text unchunked, with the ruler's figures."""
    ccfg = dataclasses.replace(engine.cfg.chunking, schedule=schedule,
                               primer_max_words=int(primer_max_words), prosody=prosody)
    chunking.validate(ccfg)
    eng = sentence_engine(engine, ccfg) if ccfg.prosody == "sentence" else engine
    synth = StreamingSynthesizer(eng, chunking_cfg=ccfg)
    label = f"schedule={schedule}, primer_max_words={primer_max_words}, prosody={prosody}"
    run_ = run_stream(synth, text, name=label, keep_audio=True)
    pb = run_.playback()
    summary = {"chunking": label, "pieces": len(run_.arrivals), "first audio s": round(run_.ttfa_s, 3),
               "underruns": pb.underruns, "silence s": round(pb.underrun_s, 3),
               "RTF (end to end)": round(run_.rtf, 3), "every word present": run_.words_present,
               "tokens per piece": [c["tokens"] for c in run_.chunks]}
    utt = corpora.Utterance("your text", text, engine.cfg.voice, engine.cfg.lang)
    heard = listening.listening(utt, "the same model reading the text unchunked",
                                seams.unchunked(engine, ccfg, text), {label: run_.audio},
                                {label: click_figures(run_.audio)})
    return [summary, plot_timeline(run_, plt), heard]


def plot_timeline(run_, plt, startup_buffer_s: float = 0.0):
    """Pieces arriving against playback: per piece, a bar from when its synthesis started
    to when it was ready (upper row) and the stretch it plays (lower row, red where the
    listener waits); the first audio is where the first play bar starts."""
    pb = run_.playback(startup_buffer_s)
    fig, ax = plt.subplots(figsize=(10, 2.8))
    for i, (c, arrive, start, dur, stall) in enumerate(zip(run_.chunks, run_.arrivals, pb.starts,
                                                         run_.durations, pb.stalls)):
        began = c.get("started_at")
        began = arrive - c.get("synth_s", 0.0) if began is None else began
        ax.barh(1, arrive - began, left=began, height=0.6, color=f"C{i % 10}", alpha=0.8)
        ax.barh(0, dur, left=start, height=0.6, color=f"C{i % 10}", alpha=0.8)
        ax.text(start + dur / 2, 0, str(c["tokens"]), ha="center", va="center", fontsize=7)
        if stall > 0:
            ax.barh(0, stall, left=start - stall, height=0.6, color="tab:red")
    ax.axvline(run_.ttfa_s, color="k", lw=0.8, ls=":")
    ax.set_yticks([0, 1], ["playback", "synthesis"])
    ax.set_xlabel("seconds since the request (dotted: first audio; red: the listener waits; "
                  "numbers: tokens per piece)")
    fig.tight_layout()
    return fig
