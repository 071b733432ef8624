"""Stage 04's first experiment: the CoreML execution provider over the whole graph,
configuration by configuration (labkit.optimize.coreml's sweep points). For each: cold
start (empty model cache), cached start, warm latency by token length, placement
(labkit.measure.placement) and quality against the reference (:func:`run_config`). It runs
the same way on the CPU provider, which is what this lab does where CoreML does not exist
(``coreml_available``, ``skip_reason``). :func:`run_sweep` runs every point (each CoreML
point in a child process, each row checkpointed), :func:`screen_then_confirm` screens a
large grid first, :func:`recommend` names the fastest per input length.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from labkit import procs, progress, quality, timing
from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.engine import assets, runtime
from labkit.engine.voices import VoiceBank
from labkit.engine.sessions import kokoro_feeds, new_session, style_row
from labkit.lab.checkpoint import Checkpoint
from labkit.lab.accelerator_harness import STATIC_DIR, isolate, point_cache, remove_cache, tokens_of_length
from labkit.lab.accelerator_result import CoreMLResult
from labkit.measure import profile as profiling
from labkit.measure.placement import capture_ort_log, parse_placement_log
from labkit.optimize.coreml import (CPU, PROVIDER, CoreMLOptionError, StaticBudget,
                                    StaticBudgetError, SweepPoint, coreml_available,
                                    cpu_session_config, session_config, skip_reason, static_model)
from labkit.quality import ruler


def _make_engine(cfg: LabConfig, model: Path, scfg: SessionConfig, voices, verbose: bool):
    """An Engine on ``model`` with ``scfg``; with ``verbose`` the session is created at
    VERBOSE log level and the log is returned."""
    def verbose_log(so) -> None:
        if verbose:
            so.log_severity_level = 0
            so.log_verbosity_level = 0

    t0 = time.perf_counter()
    with capture_ort_log() as log:
        session = new_session(model, scfg, configure=verbose_log)
    load_s = time.perf_counter() - t0
    eng = runtime.Engine.from_session(cfg, session, model, load_s, voices)
    return eng, "".join(log)


def run_config(cfg: LabConfig, point: SweepPoint, token_lengths: Iterable[int],
               repeats: int = 3, warmup: int = 1, cache_root: str | os.PathLike | None = None,
               reference: Mapping[int, np.ndarray] | None = None, voice: str | None = None,
               profile_dir: str | os.PathLike | None = None,
               static_budget: StaticBudget | None = None) -> dict[str, Any]:
    """Measure one configuration: cold start, cached (second) start, first-run and warm
    latency by token length, placement (from ORT's log) and, where ``reference`` audio is
    given per token length, the log-spectral distance to it.

    For CoreML points: the model cache starts empty (cold start compiles the CoreML
    model), the second session reuses it. Raises :class:`CoreMLOptionError` for a bad
    option before anything runs; returns ``{"status": "skipped: ..."}`` where the provider
    does not exist, or where a static-shape copy would exceed ``static_budget``."""
    lengths = [int(n) for n in token_lengths]
    voice = voice or cfg.voice
    model = assets.require(assets.model_path(cfg, point.variant), f"model {point.variant!r}")
    out: dict[str, Any] = {"label": point.label, "point": asdict(point), "model": str(model)}
    cache_dir = None
    if point.provider == PROVIDER:
        cache_dir = point_cache(cache_root or tempfile.mkdtemp(prefix="coreml-cache-"), point.label)
        scfg = session_config(cfg, point.model_format, point.compute_units, point.static_shapes,
                              cache_dir=cache_dir)
        if not coreml_available():
            out["status"] = f"skipped: {skip_reason()}"
            out["provider_options"] = scfg.provider_options[PROVIDER]
            return out
        if cache_dir.exists():
            shutil.rmtree(cache_dir)  # cold means cold
        cache_dir.mkdir(parents=True, exist_ok=True)
        out["provider_options"] = scfg.provider_options[PROVIDER]
    elif point.provider == CPU:
        scfg = cpu_session_config(cfg)
    else:
        raise ConfigError(f"provider {point.provider!r}: the sweep runs {PROVIDER} or {CPU}")

    voices = VoiceBank.load(assets.voices_path(cfg))
    models = {n: model for n in lengths}
    if point.static_shapes:
        static_dir = Path(cache_root or tempfile.gettempdir()) / STATIC_DIR
        try:
            models = {n: static_model(model, n, static_dir, budget=static_budget) for n in lengths}
        except StaticBudgetError as exc:
            out["status"] = f"skipped: {exc}"
            return out

    per_length: dict[str, Any] = {}
    placements: dict[str, Any] = {}
    starts: dict[str, Any] = {}
    for model_file in dict.fromkeys(models.values()):
        ns = [n for n in lengths if models[n] == model_file]
        key = "all" if len(models) == 1 or not point.static_shapes else str(ns[0])
        cold, log = _make_engine(cfg, model_file, scfg, voices, verbose=True)
        placement = parse_placement_log(log)
        placements[key] = {"coverage": placement.coverage(PROVIDER),
                           "log": placement.to_dict()}
        t0 = time.perf_counter()
        cold.run_tokens(tokens_of_length(ns[0]), voice)
        cold_first = time.perf_counter() - t0
        cold_create = cold.load_seconds
        del cold
        eng, _ = _make_engine(cfg, model_file, scfg, voices, verbose=False)
        t0 = time.perf_counter()
        eng.run_tokens(tokens_of_length(ns[0]), voice)
        second_first = time.perf_counter() - t0
        starts[key] = {"cold_create_s": round(cold_create, 4),
                       "cold_first_run_s": round(cold_first, 4),
                       "second_create_s": round(eng.load_seconds, 4),
                       "second_first_run_s": round(second_first, 4)}
        for n in ns:
            toks = tokens_of_length(n)
            t, syn = timing.measure(lambda: eng.run_tokens(toks, voice), repeats=repeats,
                                    warmup=warmup)
            row: dict[str, Any] = {"tokens": n, "warm_s": t.to_dict(),
                                   "audio_s": round(syn.duration, 4),
                                   "rtf": round(t.median / max(syn.duration, 1e-9), 4)}
            problems = quality.check_audio(syn.audio)
            if problems:
                row["audio_problems"] = problems
            if reference is not None and n in reference:
                row["lsd_db"] = round(quality.lsd_db(reference[n], syn.audio,
                                                     allow_length_mismatch=True), 3)
                row["duration"] = quality.duration_agreement(reference[n], syn.audio)
                if reference[n].size != syn.audio.size:  # timing shift vs spectral change
                    row["lsd_db_aligned"] = round(quality.aligned_lsd_db(reference[n], syn.audio), 3)
                if not problems:  # what a listener would hear change (labkit.quality.ruler)
                    row["ruler"] = ruler.verdict(ruler.measure(reference[n], syn.audio,
                                                               standard_figures=False)).to_dict()
            per_length[str(n)] = row
        if profile_dir is not None:
            starts[key]["profile"] = profile_run(cfg, model_file, scfg, voices, ns[0], voice,
                                                 Path(profile_dir) / re.sub(r"[^\w.-]+", "_", point.label))
        del eng
    out.update(status="ok", starts=starts, placement=placements, by_length=per_length)
    return out


def profile_run(cfg: LabConfig, model: Path, scfg: SessionConfig, voices, n_tokens: int,
                voice: str, prefix: Path) -> dict[str, Any]:
    """One profiled run (separate session: profiling costs time): kernel time per
    provider and the CPU's slowest op types (labkit.measure.profile)."""
    toks = tokens_of_length(n_tokens)
    feeds = kokoro_feeds(toks, style_row(voices.pack(voice), len(toks)))
    prof = profiling.profile_session(model, scfg, feeds, runs=1, warmup=0, out_dir=prefix.parent)
    return {"by_provider": prof["by_provider"], "cpu_top_ops_us": prof["cpu_top_ops_us"],
            "file": prof["trace"]}


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (configuration, token length) for tables and plots."""
    rows = []
    for r in results:
        if not str(r.get("status", "")).startswith("ok"):
            rows.append({"label": r.get("label"), "status": r.get("status")})
            continue
        cov = next(iter(r["placement"].values()))["coverage"]
        start = next(iter(r["starts"].values()))
        for n, row in r["by_length"].items():
            rows.append({"label": r["label"], "tokens": int(n), "status": "ok",
                         "warm_median_s": round(row["warm_s"]["median"], 4),
                         "warm_p90_s": round(row["warm_s"]["p90"], 4), "rtf": row["rtf"],
                         "lsd_db": row.get("lsd_db"),
                         "lsd_db_aligned": row.get("lsd_db_aligned"),
                         "ruler_verdict": (row.get("ruler") or {}).get("verdict"),
                         "cold_first_run_s": start["cold_first_run_s"],
                         "second_create_s": start["second_create_s"],
                         "nodes_on_ep": cov.get("nodes_on_ep"),
                         "nodes_on_cpu": cov.get("nodes_on_cpu"),
                         "nodes_in_graph": cov.get("nodes_in_graph"),
                         "partitions": cov.get("partitions")})
    return rows


def recommend(rows: list[dict[str, Any]], short_max_tokens: int = 60) -> dict[str, Any]:
    """Fastest measured configuration (warm median) for short inputs (<= ``short_max_tokens``)
    and for long ones, among rows the quality ruler did not reject (``ruler_verdict``:
    labkit.quality.ruler against the reference; rows it did not measure stay in)."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("ruler_verdict") != "fail"]
    out: dict[str, Any] = {}
    for band, pred in (("short", lambda n: n <= short_max_tokens),
                       ("long", lambda n: n > short_max_tokens)):
        cands = [r for r in ok if pred(r["tokens"])]
        if not cands:
            out[band] = None
            continue
        by_label: dict[str, list[float]] = {}
        for r in cands:
            by_label.setdefault(r["label"], []).append(r["rtf"])
        best = min(by_label, key=lambda k: float(np.median(by_label[k])))
        out[band] = {"label": best, "median_rtf": round(float(np.median(by_label[best])), 4),
                     "tokens": sorted({r["tokens"] for r in cands if r["label"] == best})}
    return out


def run_sweep(cfg: LabConfig, points: Iterable[SweepPoint], token_lengths: Iterable[int],
              repeats: int = 3, warmup: int = 1, cache_root: str | os.PathLike | None = None,
              reference: Mapping[int, np.ndarray] | None = None,
              profile_dir: str | os.PathLike | None = None,
              static_budget: StaticBudget | None = None,
              log: Any = progress.say, checkpoint: Checkpoint | None = None,
              timeout_s: float | None = None) -> list[dict[str, Any]]:
    """:func:`run_config` for every point; a point that fails is recorded as failed and the
    sweep goes on (one bad compute unit must not lose the others' numbers). A CoreML
    point whose provider exists runs in a child process within ``timeout_s`` (None: in
    process); each point's row is written to ``checkpoint`` as it finishes (a resumed
    stage reads it back) and its model cache is removed once it is measured."""
    results = []
    lengths = list(token_lengths)
    for point in progress.steps(list(points), "configurations", label=lambda p: p.label):
        def measure(point=point) -> dict[str, Any]:
            try:
                return run_config(cfg, point, lengths, repeats=repeats, warmup=warmup,
                                  cache_root=cache_root, reference=reference,
                                  profile_dir=profile_dir, static_budget=static_budget)
            except CoreMLOptionError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, not hidden
                return {"label": point.label, "point": asdict(point),
                        "status": f"failed: {type(exc).__name__}: {exc}"}

        def in_child(point=point) -> dict[str, Any]:
            if point.static_shapes:  # the copies are made here, within the budget
                static_dir = Path(cache_root or tempfile.gettempdir()) / STATIC_DIR
                model = assets.model_path(cfg, point.variant)
                try:
                    for n in lengths:
                        static_model(model, n, static_dir, budget=static_budget)
                except StaticBudgetError as exc:
                    return {"label": point.label, "point": asdict(point), "status": f"skipped: {exc}"}
            return procs.isolated(run_config, cfg, point, lengths, repeats=repeats,
                                  warmup=warmup, cache_root=cache_root, reference=reference,
                                  profile_dir=profile_dir, timeout_s=timeout_s)

        def finished(point=point) -> dict[str, Any]:
            risky = point.provider == PROVIDER and coreml_available()
            r = isolate("coreml", point.label, measure, in_child, timeout_s if risky else None)
            r.setdefault("point", asdict(point))
            if point.provider == PROVIDER and cache_root is not None:
                r["cache_removed_mb"] = remove_cache(point_cache(cache_root, point.label))
            return r

        key = {"point": asdict(point), "lengths": lengths, "repeats": repeats, "warmup": warmup}
        r = checkpoint.run(key, finished) if checkpoint is not None else finished()
        if log:
            log(f"{r['label']}: {r['status']}")
        results.append(r)
    return results


def _provider(row: Mapping[str, Any]) -> str | None:
    """The provider of a sweep row (a whole-graph point's) or a split candidate's row."""
    return (row.get("point") or row.get("candidate") or {}).get("provider")


def _baseline(provider: str | None) -> bool:
    """The CPU rows are every sweep's baselines: never screened out."""
    return provider in (CPU, "CPU")


def screen_then_confirm(points: list, token_lengths: list[int], repeats: int,
                        screen_length: int, screen_repeats: int, confirm_top: int,
                        sweep: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A cheap screen, then the full measurement of the leaders only: every point (a
    whole-graph SweepPoint or a split Candidate: anything with ``label`` and ``provider``)
    at ``screen_length`` tokens with ``screen_repeats`` repeats, then the ``confirm_top``
    fastest accelerated points there (and every CPU point: the baselines) at every length
    with ``repeats``. ``sweep(points, lengths, repeats)`` measures and returns their rows
    (:func:`run_sweep`, labkit.lab.accelerator_split.run_candidates). Returns the rows (a
    screened-out point keeps its screen row, its status saying by how much it trailed the
    fastest) and what the screen decided."""
    screened = sweep(points, [screen_length], screen_repeats)
    by_label = {r["label"]: r for r in screened}

    def rtf(r):
        return r["by_length"][str(screen_length)]["rtf"]

    ranked = sorted((r for r in screened if r.get("status") == "ok"
                     and not _baseline(_provider(r))), key=rtf)
    leaders = {r["label"] for r in ranked[:confirm_top]}
    best = rtf(ranked[0]) if ranked else None
    out_rows = []
    for r in ranked[confirm_top:]:
        k = rtf(r) / best
        r["status"] = (f"screened out: RTF {rtf(r):.3f} at {screen_length} tokens, {k:.2f}x the "
                       f"fastest's ({ranked[0]['label']})")
        out_rows.append({"label": r["label"], "rtf": rtf(r), "x_fastest": round(k, 3)})
    confirm = [p for p in points if p.label in leaders
               or (_baseline(p.provider) and by_label[p.label].get("status") == "ok")]
    confirmed = {r["label"]: r for r in sweep(confirm, token_lengths, repeats)}
    rows = [confirmed.get(p.label, by_label[p.label]) for p in points]
    return rows, {"screen_length": screen_length, "screen_repeats": screen_repeats,
                  "confirm_top": confirm_top, "screened": len(points),
                  "confirmed": [p.label for p in confirm], "screened_out": out_rows}



# -- the notebook's tables and plot -----------------------------------------------------------
SWEEP_COLUMNS = ["label", "tokens", "status", "warm_median_s", "warm_p90_s", "rtf", "lsd_db",
                 "cold_first_run_s", "second_create_s", "nodes_on_ep", "nodes_on_cpu",
                 "nodes_in_graph", "partitions"]


def sweep_table(result: CoreMLResult) -> str:
    lines = ["| " + " | ".join(SWEEP_COLUMNS) + " |", "|" + "---|" * len(SWEEP_COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in SWEEP_COLUMNS) + " |"
              for r in result.rows]
    return "\n".join(lines)


def starts_text(result: CoreMLResult) -> str:
    """Start-up, profile and placement of every configuration that ran."""
    out = []
    for r in (r for r in result.results if r.get("status") == "ok"):
        for key, start in r["starts"].items():
            out.append(f"{r['label']} {key} {({k: v for k, v in start.items() if k != 'profile'})}")
            prof = start.get("profile")
            if prof:
                out.append("   time share by provider: "
                           f"{({ep: v['time_share'] for ep, v in prof['by_provider'].items()})}"
                           f" | top CPU ops (us): {prof['cpu_top_ops_us']}")
        out.append(f"   placement: {({k: v['coverage'] for k, v in r['placement'].items()})}")
    return "\n".join(out)


def plot_rtf(result: CoreMLResult, plt):
    ok_rows = [r for r in result.rows if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label in dict.fromkeys(r["label"] for r in ok_rows):
        pts = sorted((r["tokens"], r["rtf"]) for r in ok_rows if r["label"] == label)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xlabel("phoneme tokens")
    ax.set_ylabel("RTF (lower is faster)")
    ax.set_title("Warm RTF by input length")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig



def sweep_headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Measured RTF (and LSD to the reference) per configuration and length."""
    out: dict[str, Any] = {}
    for r in rows:
        if r.get("status") == "ok":
            out[f"{r['label']} RTF @{r['tokens']} tok"] = r["rtf"]
            if r.get("lsd_db") is not None:
                out[f"{r['label']} LSD dB @{r['tokens']} tok"] = r["lsd_db"]
            if r.get("lsd_db_aligned") is not None:
                out[f"{r['label']} LSD dB time-aligned @{r['tokens']} tok"] = r["lsd_db_aligned"]
    return out
