"""A batch planned before it runs: per stage, the candidates, session builds, timed runs,
estimated wall time and peak disk (``labkit journal --plan -f FILE [--json] [--cores N]``).

Counted from the batch file (each stage's parameters over its notebook's defaults, read
with papermill) and priced by the constants labkit.lab.costs measured on this machine and
recorded (``artifacts/costs.json``: the warm real-time factor, audio per word and per
token, a session build). ``--cores N`` plans for a machine with N performance cores by
scaling the compute-bound constants (:meth:`Costs.for_cores`: optimistic). The
arithmetic, per stage:

- a timed comparison (labkit.measure.compare) of ``k`` entries plus the A/A control runs
  ``warmup + rounds`` calls of each, ``rounds`` its default (whole Williams squares, at
  least 6) unless the stage sets it; a call costs the audio it makes times the RTF;
- a first-audio call (stage 05's sweeps) costs one run of a first piece
  (:data:`FIRST_PIECE_TOKENS`); a run beside busy processes costs what
  labkit.engine.cpuload.slowdown predicts for the planned cores; a stage streaming the
  model the stages before pick (``model: earned``) is priced at the speed best.json
  recorded for it against the configured model (labkit.best_config.earned_speed);
- every candidate that builds a session costs a session build; a CoreML build is priced
  as a CPU one (its first compile, ~20 s on the Mac, cannot be measured here: said so);
- a notebook's start is the kernel's start-up, measured from the previous run's wall
  times against its records when there is one;
- peak disk: the largest set of files a stage holds at once (quantized models, static
  copies within their budget, one CoreML cache at a time now that each is removed once
  measured).

What it does not count: rounds added on a noisy machine (up to 3x), G2P and text work,
plots and journal writing. The journal records the run's real wall times beside it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import yaml

from labkit.best_config import earned_speed
from labkit.config import REPO_ROOT, LabConfig
from labkit.engine import assets
from labkit.engine.cpuload import slowdown
from labkit.lab import s08_endpoint
from labkit.lab.costs import Costs
from labkit.lab.stage_plan import GiB, StagePlan, model_gb, rounds_for, text_s
from labkit.lab.variant_choice import VERIFY_TRIES
from labkit.measure import corpora, openings
from labkit.measure.compare import default_rounds
from labkit.optimize.families import layers_in
from labkit.optimize.quantize import VariantSpec
from labkit.measure.texts import named

def plan_00(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    texts = list(p.get("texts") or [])
    entries = 4  # kokoro-onnx create, create_stream, pipeline + the A/A control
    k = rounds_for(p, entries)
    runs = len(texts) * entries * k
    return StagePlan("00_baseline", candidates=3, session_builds=3 + int(p.get("load_repeats") or 3),
                     timed_runs=runs, seconds=sum(entries * k * text_s(c, t) for t in texts)
                     + (3 + int(p.get("load_repeats") or 3)) * c.session_s)


#: seconds the ruler takes per (rung, utterance): its figures with PESQ-WB and STOI
#: (time warping where a rung changes the length), and with DNSMOS and the recognizer
RULER_READING_S, RULER_EXTRA_S = 0.6, 2.5


def plan_ruler(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    cal = len(p["calibration_ids"]) if p.get("calibration_ids") else 10
    val = len(p["validation_ids"]) if p.get("validation_ids") else 26
    extra = len(p.get("extra_ids") or [])
    rungs = 26
    return StagePlan("00_ruler", candidates=rungs, session_builds=1, timed_runs=0,
                     seconds=c.session_s + (cal + val) * (text_s(c, "sentence") + rungs * RULER_READING_S)
                     + extra * rungs * RULER_EXTRA_S,
                     notes=["figures, not timings: readings priced at measured seconds each"])


def plan_01(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    texts = list(p.get("timing_texts") or [])
    entries = 5 + bool(p.get("espeak_baseline"))
    listen = int(p.get("listen") or 0)
    return StagePlan("01_g2p_sanitization", candidates=entries - 1, session_builds=1,
                     timed_runs=len(texts) * entries * rounds_for(p, entries),
                     seconds=c.session_s + listen * text_s(c, "sentence"),
                     notes=["G2P timings are not priced (milliseconds to a second each)"])


def plan_02(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    out = StagePlan("02_ort_conversion")
    warmup = int(p.get("warmup") or 1)
    lengths = [int(n) for n in p.get("token_lengths") or []]
    loaded = list(p.get("loaded_toggles") or [])
    busy = int(p.get("load_processes", 1) or 0)
    screen_s = c.run_s(int(p.get("screen_length") or 120))
    for _ in p.get("variants") or []:
        changes = sum(len(p.get(k) or []) for k in ("levels", "thread_counts", "modes", "toggles",
                                                   "rewrites"))
        entries = changes + 2
        k = rounds_for(p, entries)
        screen = entries * (warmup + k)
        out.candidates += changes
        out.session_builds += entries + 3
        out.timed_runs += screen
        out.seconds += (entries + 3) * c.session_s + screen * screen_s
        if loaded:  # their own screen, idle and beside the busy processes (labkit.lab.loaded_screen)
            e2 = len(loaded) + 2
            runs = e2 * (warmup + rounds_for(p, e2))
            slow = slowdown(float(busy), c.threads, c.threads) if busy else 1.0
            out.candidates += len(loaded)
            out.session_builds += 2 * e2
            out.timed_runs += 2 * runs
            out.seconds += 2 * e2 * c.session_s + runs * screen_s * (1.0 + slow)
        k2 = rounds_for(p, 3)
        out.timed_runs += sum(3 * (warmup + k2) for _ in lengths)
        out.seconds += sum(3 * (warmup + k2) * c.run_s(n) for n in lengths)
        cold = int(p.get("cold_rounds") or default_rounds(3))
        out.session_builds += 3 * (1 + cold)
        out.seconds += 3 * (1 + cold) * (c.session_s + 2.0 * c.run_s(int(p.get("cold_tokens") or 30)))
        out.seconds += 4 * c.run_s(int(p.get("profile_tokens") or 250))
    out.notes.append("cold starts priced as a session build and a first run (~2x warm) each")
    return out


#: a model's split (labkit.optimize.split: parts A and B, B bucketed, B windowed) in models
#: (artifacts/cache/split here: fp32-recon's 721 MB for its 325 MB, int8's 213 MB for 88 MB)
SPLIT_MODELS = 2.3


#: stage 03's ruler, per model judged: the copy with durations, the split and its bucketed
#: and phase parts (priced as session builds), then per utterance a run of its vocoder at the
#: reference's alignment, the durations read token by token and, held-out, the recognizer:
#: priced as two warm runs (run-20261204-170456 read 5.1 s per model and utterance, 1.6 runs
#: at its RTF)
RULER_BUILDS = 4
RULER_RUNS = 2


def plan_03(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    variants = list(p.get("variants") or [])
    lengths = [int(n) for n in p.get("token_lengths") or []]
    # no ids: the whole corpus (50 calibration utterances, 26 held-out)
    held = len(p.get("heldout_ids") or []) or len(list(corpora.load("heldout", purpose="report")))
    cal = len(p.get("calibration_ids") or []) or len(list(corpora.load("calibration", purpose="calibrate")))
    given = list(p.get("sensitivity_families") or [])
    # the sweep: one model per family (per layer at layer grain) on the development set,
    # then the mixed set measured as a whole, at most VERIFY_TRIES times
    fams = layers_in(given) if p.get("sensitivity_grain") == "layer" else given
    dev = (len(p.get("sensitivity_ids") or []) or len(list(corpora.load("dev", purpose="choose")))
           if fams else 0)
    checks = VERIFY_TRIES if fams else 0
    whole_dev = len(list(corpora.load("dev", purpose="choose"))) if fams else 0  # what checks read
    # the bench reads every model on the development set too (choosing), and the ruler
    # judges every model but the reference on both sets (labkit.lab.variant_ruler)
    bench_dev = len(p.get("sensitivity_ids") or []) or len(list(corpora.load("dev", purpose="choose")))
    static = [v for v in variants if isinstance(v, dict) and v.get("recipe") == "static"]
    # one calibration pass per method (its cache serves every variant calibrated so); the
    # sensitivity sweep calibrates with MinMax
    methods = {v.get("calibration", "minmax") for v in static} | ({"minmax"} if fams else set())
    entries = len(variants) + 3  # the reference, the baseline, the A/A control
    warmup = int(p.get("warmup") or 1)
    k = rounds_for(p, entries)
    judged = len(variants) + 1  # the baseline and the variants
    runs = (entries * (warmup + k) * len(lengths) + (len(variants) + 2) * (held + bench_dev)
            + len(fams) * dev + checks * whole_dev + judged * (held + bench_dev))
    per_run = c.run_s(120)
    seconds = (entries + len(fams) + checks + judged * RULER_BUILDS) * c.session_s + sum(
        entries * (warmup + k) * c.run_s(n) for n in lengths)
    seconds += ((len(variants) + 2) * (held + bench_dev) + len(fams) * dev
                + checks * whole_dev) * per_run * 2  # fp32 ~2x
    seconds += judged * (held + bench_dev) * per_run * RULER_RUNS
    seconds += len(methods) * cal * per_run * 3  # calibration (the augmented graph)
    disk = stage_03_disk_gb(cfg, variants, str(p.get("baseline") or "int8"), bool(fams))
    return StagePlan("03_quantization", candidates=len(variants) + len(fams),
                     session_builds=entries + len(fams) + checks, timed_runs=runs, seconds=seconds,
                     disk_gb=disk,
                     notes=["quantization builds themselves are not priced (onnxruntime's "
                            "quantizer: tens of seconds each here)",
                            "disk: a model not built yet counted at its recipe's share of the "
                            "reference's size (RECIPE_SIZE)"])


#: a variant's file over the reference's (fp32-recon, 325 MB) by recipe, for a variant not
#: built yet: fp16 stores every float weight in half the bytes (arithmetic); fp16 over the
#: decoder only, measured (fp16-dec: 219 MB); dynamic int8 as the PyPI int8 model, itself a
#: dynamic quantization (92 MB); static QDQ as the largest measured (qdq-layers: 298 MB; its
#: quantized convolutions keep a float copy beside the int8 where a tail reads them, and the
#: text encoder, predictor and float convolutions stay fp32); weight-only rounding keeps fp32
RECIPE_SIZE = {"fp16": 0.5, "fp16-decoder": 0.68, "dynamic": 0.29, "static": 0.92, "weights": 1.0}


def _variant_gb(cfg: LabConfig, item: Any, ref_gb: float) -> float:
    """A stage-03 variant's file: the provisioned one's size where there is one (a preset
    such as fp16-dec, built once into the assets), else its recipe's share of the
    reference's (:data:`RECIPE_SIZE`)."""
    spec = VariantSpec.parse(item)
    path = assets.model_path(cfg, spec.name)
    if isinstance(item, str) and path.exists():
        return path.stat().st_size / GiB
    key = "fp16-decoder" if spec.recipe == "fp16" and spec.fp16_scope == "decoder" else spec.recipe
    return RECIPE_SIZE.get(key, 1.0) * ref_gb


def stage_03_disk_gb(cfg: LabConfig, variants: list, baseline: str, mixed: bool) -> float:
    """Stage 03's peak disk, the larger of its two phases:

    * building: the pre-processed reference (removed once the builds are done,
      labkit.optimize.quantize.Builder.release), the variants (and the mixed one), and one
      static model more (a sensitivity model, each removed once read, or a rewritten
      variant's intermediate);
    * judging: the variants, every timed model's copy with the durations output (the
      variants', the reference's, the baseline's: the stage removes those of the variants
      that did not pass the ruler when it ends), the reference's split and one variant's
      at a time (each removed once judged: variant_ruler.ruler_quality)."""
    ref_gb = model_gb(cfg, "fp32-recon")
    static_gb = RECIPE_SIZE["static"] * ref_gb
    sizes = [_variant_gb(cfg, v, ref_gb) for v in variants] + ([static_gb] if mixed else [])
    built = sum(sizes)
    building = ref_gb + built + static_gb
    judging = built + (built + ref_gb + model_gb(cfg, baseline)) + SPLIT_MODELS * (
        ref_gb + max(sizes, default=0.0))
    return max(building, judging)


def plan_04(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    variants = list(p.get("variants") or [])
    formats, units = list(p.get("formats") or []), list(p.get("compute_units") or [])
    statics = list(p.get("static_shapes") or [False])
    lengths = [int(n) for n in p.get("token_lengths") or []]
    reps, warmup = int(p.get("repeats") or 3), int(p.get("warmup") or 1)
    out = StagePlan("04_coreml_units")
    if not p.get("_accelerators"):
        units = []  # here every CoreML point is skipped before it builds a session
        out.notes.append("CoreML and plugin EPs absent here: their points are skipped, not "
                         "planned (plan the Mac with --cores)")
    points = len(variants) * len(formats) * len(units) * len(statics)
    screen = int(p["screen_length"]) if p.get("screen_length") else None
    top = int(p.get("confirm_top") or 4)
    if screen and points > top:
        s_reps = int(p.get("screen_repeats") or 1)
        out.session_builds += points * 2
        out.timed_runs += points * (warmup + s_reps + 2)
        out.seconds += points * (2 * c.session_s + (warmup + s_reps + 2) * c.run_s(screen))
        out.notes.append(f"{points} CoreML points screened at {screen} tokens, {top} confirmed")
        statics_of = [(any(statics), top)]
    else:
        statics_of = [(st, len(variants) * len(formats) * len(units)) for st in statics]
    out.candidates += points
    for st, n in statics_of:
        files = len(lengths) if st else 1
        out.session_builds += n * files * 2  # cold and second start per model file
        out.timed_runs += n * (len(lengths) * (warmup + reps) + files * 2)
        out.seconds += n * (files * 2 * c.session_s + sum(
            (warmup + reps + 2) * c.run_s(m) for m in lengths))
    if p.get("cpu_baseline", True):
        out.candidates += len(variants)
        out.session_builds += 2 * len(variants)
        out.timed_runs += len(variants) * len(lengths) * (warmup + reps)
        out.seconds += len(variants) * (2 * c.session_s + sum((warmup + reps + 2) * c.run_s(n)
                                                               for n in lengths))
    split_lengths = [int(n) for n in p.get("split_token_lengths") or []]
    split_reps = int(p.get("split_repeats") or 2)
    # the split on the CPU; CoreML on part B over the grid; each plugin on part B and whole
    n_accel = len(formats) * len(units) * len(statics) + (
        2 * len(p.get("plugins") or []) if p.get("_accelerators") else 0)
    n_split = 1 + n_accel
    n_full = n_split
    if screen and n_accel > top:  # accelerator_split.run_split: screened like the grid
        s_reps = int(p.get("screen_repeats") or 1)
        n_full = 1 + top
        out.notes.append(f"{n_split} split candidates a variant screened at {screen} tokens, "
                         f"{top} confirmed beside the CPU's")
    for _ in p.get("split_variants") or []:
        out.candidates += n_split
        if n_full < n_split:
            out.session_builds += n_split * 2
            out.timed_runs += n_split * (warmup + s_reps)
            out.seconds += n_split * (2 * c.session_s + (warmup + s_reps + 1) * c.run_s(screen))
        out.session_builds += n_full * 2
        out.timed_runs += n_full * len(split_lengths) * (warmup + split_reps)
        out.seconds += n_full * (2 * c.session_s + sum((warmup + split_reps + 1) * c.run_s(n)
                                                      for n in split_lengths))
    biggest = max((model_gb(cfg, v) for v in variants), default=0.0)
    budget = float(p.get("static_budget_gb") or 4.0)
    static_gb = min(budget, biggest * len(lengths)) if any(statics) else 0.0
    out.disk_gb = static_gb + biggest  # the copies within their budget + one CoreML cache
    out.notes.append("CoreML session builds priced as CPU ones (a first compile on the Mac "
                     "takes longer: measure it there with this stage's cold start)")
    return out


#: a first-audio call (stage 05's sweeps time the first chunk only): priced as one run of a
#: first piece this long (a primer of a few words, lifted toward ~25 tokens under load)
FIRST_PIECE_TOKENS = 25


def plan_05(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    """Stage 05 as labkit.lab.s05_chunking.run does it: timed comparisons of first audio
    (each call a first chunk, not a whole text), the variants and the contender streamed
    whole, their seams, the listener rows and the article idle and beside
    ``load_processes`` busy processes (each loaded run slowed as
    labkit.engine.cpuload.slowdown predicts for the planned machine's cores), and the
    opening sweep's first chunks, seams and the option it hears."""
    variants = list(p.get("variants") or [{}])
    synths = len(variants) + 1  # the variants and the contender
    k = rounds_for(p, synths + 1)
    notes = []
    if p.get("model") == "earned":  # the model the stages before pick: as fast as it last ran
        speed, why = earned_speed(cfg)
        c = replace(c, rtf=c.rtf / speed)
        notes.append(f"streams the model the stages before pick, priced at {why}")
    first_s = c.run_s(FIRST_PIECE_TOKENS)
    sweep_s = text_s(c, p.get("sweep_text") or "paragraph")
    busy = int(p.get("load_processes", 1) or 0)
    slow = slowdown(float(busy), c.threads, c.threads) if busy else 0.0
    loads = 1 + slow  # a run idle, and one beside the busy processes
    heard = int(p.get("listener_rounds") or 2)
    article = named(p["article_text"]) if p.get("article_text") else ""
    seconds = (synths * c.session_s
               + synths * k * first_s                                  # the first-audio sweep
               + synths * int(p.get("stream_repeats") or 1) * sweep_s  # each streamed whole
               + (synths + 1) * sweep_s                                # their seams (+ unchunked)
               + synths * heard * loads * sweep_s                      # the listener rows
               + 3 * 2 * default_rounds(2) * first_s                   # phrase vs text, 3 labels
               + 2 * sweep_s                                           # side by side
               + loads * int(p.get("article_repeats") or 1) * c.synth_s(article))
    runs = synths * k + synths + synths * heard * (1 + bool(busy)) + bool(article) * (1 + bool(busy))
    o_texts = list(p.get("opening_texts", openings.TEXTS) or [])
    if o_texts:
        # per load and text, in rounds of its own: the phrase, its A/A and each option on
        # the text, to a first chunk; each text unchunked and through every way of cutting
        # it for the seams; the option that earns its place heard on the paragraph
        options = 1 + len(openings.TRIED)
        cuts = 1 + len({json.dumps(ch, sort_keys=True) for ch, _ in openings.TRIED})
        o_entries = 2 + options
        o_calls = len(o_texts) * o_entries * rounds_for(p, o_entries, "opening_rounds")
        seconds += (loads * o_calls * first_s
                    + sum((1 + cuts) * text_s(c, t) for t in o_texts)
                    + heard * loads * sweep_s + 2 * sweep_s)
        runs += (1 + bool(busy)) * o_calls + heard * (1 + bool(busy))
    if busy:
        notes.append(f"runs beside {busy} busy process(es) priced {slow:.2f}x slower "
                     f"({c.threads} threads on {c.threads} cores)")
    return StagePlan("05_chunking", candidates=len(variants), session_builds=synths,
                     timed_runs=runs, seconds=seconds, notes=notes)


def plan_06(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    cands = list(p.get("candidates") or [])
    if not p.get("_accelerators"):  # layouts naming CoreML are skipped before they build
        cands = [x for x in cands if "CoreMLExecutionProvider" not in json.dumps(x)]
    texts = list(p.get("texts") or [])
    builds = sum(int(x.get("sessions", 1)) for x in cands) + 1
    out = StagePlan("06_dual_sessions", candidates=len(cands), session_builds=builds,
                    seconds=builds * c.session_s)
    top, screen = int(p.get("confirm_top") or 2), p.get("screen_text")
    if screen and len(cands) - 1 > top:  # s06.screen_layouts: everyone briefly, then the leaders
        s_rounds = int(p.get("screen_rounds") or 2)
        out.timed_runs += (len(cands) + 1) * s_rounds
        out.seconds += (len(cands) + 1) * s_rounds * text_s(c, screen)
        out.notes.append(f"{len(cands)} layouts screened on {screen}, {top} confirmed beside the first")
        cands = cands[:top + 1]
    entries = len(cands) + 1
    k = rounds_for(p, entries)
    out.timed_runs += len(texts) * entries * k
    out.seconds += sum(entries * k * text_s(c, t) for t in texts)
    return out


def plan_07(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    entries = 3
    k = rounds_for(p, entries)
    held = len(p.get("heldout_ids") or []) or 10
    text = p.get("text") or "paragraph"
    return StagePlan("07_verify", candidates=2, session_builds=4,
                     timed_runs=entries * k * 2 + 3 * held,
                     seconds=4 * c.session_s + entries * k * (text_s(c, text)
                                                              + c.run_s(int(p.get("speed_tokens") or 120)))
                     + 3 * held * c.run_s(120) * 2)


def plan_08(p: dict, c: Costs, cfg: LabConfig) -> StagePlan:
    runners = tuple(p.get("runner_names") or ("pipeline", "http", "http repeat"))
    b = s08_endpoint.plan(c, list(p.get("texts") or []), int(p.get("soak_requests") or 0),
                          cfg.serve.max_input_chars, runners, p.get("rounds"))
    return StagePlan("08_endpoint", candidates=len(b["runners"]) - 1, session_builds=3,
                     timed_runs=sum(r["calls"] for r in b["texts"]) + b["soak_requests"],
                     seconds=b["minutes"] * 60)


PLANNERS: dict[str, Callable[[dict, Costs, LabConfig], StagePlan]] = {
    "00_ruler": plan_ruler, "00": plan_00, "01": plan_01, "02": plan_02, "03": plan_03, "04": plan_04, "05": plan_05,
    "06": plan_06, "07": plan_07, "08": plan_08}


def notebook_defaults(notebook: str | Path) -> dict[str, Any]:
    """The notebook's parameters cell, evaluated (papermill reads it)."""
    import papermill as pm

    out = {}
    for name, info in pm.inspect_notebook(str(REPO_ROOT / notebook)).items():
        try:
            out[name] = yaml.safe_load(info["default"].replace("True", "true").replace(
                "False", "false").replace("None", "null"))
        except yaml.YAMLError:
            out[name] = None
    return out


def kernel_seconds(cfg: LabConfig, run_dir: Path | None) -> float | None:
    """A notebook's start and display work: the median of (batch wall time - the record's
    own started..finished) over the stages of ``run_dir``, or None."""
    if run_dir is None:
        return None
    try:
        wall = json.loads((run_dir / "wall_times.json").read_text())
    except (OSError, ValueError):
        return None
    gaps = []
    for stage, seconds in wall.items():
        try:
            rec = json.loads((run_dir / stage / "metrics.json").read_text())
            inside = (dt.datetime.fromisoformat(rec["finished"])
                      - dt.datetime.fromisoformat(rec["started"])).total_seconds()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        gaps.append(max(0.0, float(seconds) - inside))
    return statistics.median(gaps) if gaps else None


def plan_batch(stages: list[tuple[str, str, dict]], costs: Costs, cfg: LabConfig,
               kernel_s: float | None = None, accelerators: bool = False) -> dict[str, Any]:
    """``stages``: (name, notebook, parameters from the batch file). Returns the plan:
    ``{"stages": [...], "total": {"minutes": M, "disk_gb": G}, "costs": {...}}``.
    ``accelerators``: plan the CoreML and plugin-EP candidates as run (the Mac), not as
    skipped (here)."""
    rows = []
    for name, notebook, params in stages:
        p = {**notebook_defaults(notebook), **params, "_accelerators": accelerators}
        planner = PLANNERS.get(name) or PLANNERS.get(name[:2])
        sp = planner(p, costs, cfg) if planner else StagePlan(name, notes=["no cost model"])
        sp.stage = name
        if kernel_s:
            sp.seconds += kernel_s
        rows.append(sp.to_dict())
    total_min = sum(r["seconds"] for r in rows) / 60
    return {"stages": rows,
            "total": {"minutes": round(total_min, 1),
                      "disk_gb": round(max((r["disk_gb"] for r in rows), default=0.0), 2)},
            "costs": costs.to_dict(), "kernel_s": kernel_s}


#: where ``labkit journal --plan`` keeps each batch's latest plan, under artifacts/
PLANS_DIR = "plans"


def plan_name(batch_name: str) -> str:
    """Where ``labkit journal --plan`` keeps a batch's latest plan, under artifacts/plans/."""
    return f"{PLANS_DIR}/{batch_name}.json"


def batch_sha(path: str | Path) -> str:
    """The batch file's identity: a plan is its run's only when made from the same file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plan_lines(plan: dict[str, Any], source: str) -> list[str]:
    lines = [f"{'stage':<22}{'cand.':>6}{'builds':>8}{'timed runs':>12}{'minutes':>9}{'disk GB':>9}"]
    for r in plan["stages"]:
        lines.append(f"{r['stage']:<22}{r['candidates']:>6}{r['session_builds']:>8}"
                     f"{r['timed_runs']:>12}{r['minutes']:>9.1f}{r['disk_gb']:>9.2f}")
    t = plan["total"]
    lines.append(f"{'total':<22}{'':>6}{'':>8}{'':>12}{t['minutes']:>9.1f}{t['disk_gb']:>9.2f}"
                 "  (disk: the largest stage's peak)")
    c = plan["costs"]
    lines.append(f"costs: RTF {c['rtf']:.2f} at {c['threads']} threads, a session build "
                 f"{c['session_s']:.1f} s, {c['audio_s_per_token'] * 1000:.0f} ms of audio per "
                 f"token; {source}"
                 + (f"; notebook start {plan['kernel_s']:.0f} s (the previous run)"
                    if plan.get("kernel_s") else "; notebook start not measured yet"))
    for r in plan["stages"]:
        for n in r["notes"]:
            lines.append(f"  {r['stage']}: {n}")
    return lines
