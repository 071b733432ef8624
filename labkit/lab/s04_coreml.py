"""Stage 04: the CoreML execution provider, configuration by configuration.

For each sweep point (labkit.optimize.coreml): cold start (empty model cache), cached
start, warm latency by token length, placement (labkit.measure.placement) and quality
against the reference. It runs the same way on the CPU provider, which is what this lab
does where CoreML does not exist (``coreml_available``, ``skip_reason``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from labkit import procs, progress, quality, timing
from labkit.lab.selection import quality_entry
from labkit.quality import ruler
from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.engine import assets, runtime, split_runtime
from labkit.engine.voices import VoiceBank
from labkit.engine.phonemized import clean_phonemes, tokenize
from labkit.kokoro import MAX_TOKENS
from labkit.engine.sessions import (PLUGIN_PACKAGES, PluginEPUnavailable, device_info, kokoro_feeds,
                               new_session, plugin_devices, style_row)
from labkit.lab.checkpoint import FINISHED_DIR, Checkpoint
from labkit.measure import profile as profiling
from labkit.measure.placement import capture_ort_log, parse_placement_log
from labkit.optimize import coreml, op_audit
from labkit.optimize import split as splitting
from labkit.optimize.coreml import (CPU, PROVIDER, CoreMLOptionError, StaticBudget,
                                    StaticBudgetError, SweepPoint, coreml_available,
                                    cpu_session_config, session_config, skip_reason, static_model)


NAME = "04_coreml_units"
#: where the static-shape copies go, under the stage's CoreML cache folder
STATIC_DIR = "static-models"


# -- the harness ---------------------------------------------------------------------------
#: a phoneme passage (misaki's US set) cut to the requested token count
PASSAGE = ("ðə nˈɔɹθ wˈɪnd ænd ðə sˈʌn wɜɹ dɪspjˈuːtɪŋ wˌɪʧ wʌz ðə stɹˈɔŋɡɚ, wˌɛn ə tɹˈævəlɚ "
           "kˈeɪm əlˈɔŋ ɹˈæpt ɪn ə wˈɔɹm klˈOk. ðeɪ əɡɹˈiːd ðæt ðə wˈʌn hˌuː fˈɜːst səksˈiːdᵻd ɪn "
           "mˈeɪkɪŋ ðə tɹˈævəlɚ tˈeɪk hɪz klˈOk ˈɔf ʃʊd bi kənsˈɪdɚd stɹˈɔŋɡɚ ðɐn ðɪ ˈʌðɚ. ")


def tokens_of_length(n: int) -> list[int]:
    """``n`` phoneme tokens from :data:`PASSAGE` (repeated as needed), 1..510."""
    if not 1 <= int(n) <= MAX_TOKENS:
        raise ValueError(f"token length {n}: Kokoro takes 1 to {MAX_TOKENS} tokens per call")
    cleaned, _ = clean_phonemes(PASSAGE)
    base = tokenize(cleaned)
    reps = -(-int(n) // len(base))
    return (base * reps)[: int(n)]


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


def reference_audio(cfg: LabConfig, token_lengths: Iterable[int], voice: str | None = None
                    ) -> tuple[dict[int, np.ndarray], dict[str, str]]:
    """The reference variant's audio (CPU provider) for each token length, and what it is."""
    ref = assets.reference(cfg)
    assets.require(ref.path, f"reference model {ref.variant!r}")
    eng = runtime.Engine(cfg, variant=ref.variant, session=cpu_session_config(cfg))
    voice = voice or cfg.voice
    audio = {int(n): eng.run_tokens(tokens_of_length(int(n)), voice).audio for n in token_lengths}
    return audio, {"variant": ref.variant, "path": str(ref.path), "note": ref.note}


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


def point_cache(cache_root: str | os.PathLike, label: str) -> Path:
    """The CoreML model cache folder of one configuration or candidate."""
    return Path(cache_root) / re.sub(r"[^\w.-]+", "_", label)


def remove_cache(folder: Path) -> float:
    """Remove a candidate's model cache once it is measured; returns the MB it held."""
    if not folder.exists():
        return 0.0
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return round(size / 1e6, 1)


def isolate(kind: str, label: str, measure, isolated_call, timeout_s: float | None
            ) -> dict[str, Any]:
    """``measure()`` in process, or -- for a candidate that can crash or hang natively
    (a CoreML or plugin EP session build and its first runs) when ``timeout_s`` is set --
    ``isolated_call()`` through labkit.procs.isolated; a crash, a hang past the timeout or
    an error becomes the row's ``failed: <reason>`` and the sweep goes on."""
    if timeout_s is None:
        return measure()
    try:
        return isolated_call()
    except procs.IsolatedFailure as exc:
        return {"label": label, "status": f"failed: {exc.reason}", "isolated": kind}


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


def screen_then_confirm(points: list[SweepPoint], token_lengths: list[int], repeats: int,
                        screen_length: int, screen_repeats: int, confirm_top: int,
                        sweep: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A cheap screen, then the full measurement of the leaders only: every point at
    ``screen_length`` tokens with ``screen_repeats`` repeats, then the ``confirm_top``
    fastest accelerated points there (and every CPU point: the baselines) at every length
    with ``repeats``. ``sweep(points, lengths, repeats)`` measures (:func:`run_sweep`).
    Returns the rows (a screened-out point keeps its screen row, its status saying by how
    much it trailed the fastest) and what the screen decided."""
    screened = sweep(points, [screen_length], screen_repeats)
    by_label = {r["label"]: r for r in screened}

    def rtf(r):
        return r["by_length"][str(screen_length)]["rtf"]

    ranked = sorted((r for r in screened if r.get("status") == "ok"
                     and r["point"]["provider"] == PROVIDER), key=rtf)
    leaders = {r["label"] for r in ranked[:confirm_top]}
    best = rtf(ranked[0]) if ranked else None
    out_rows = []
    for r in ranked[confirm_top:]:
        k = rtf(r) / best
        r["status"] = (f"screened out: RTF {rtf(r):.3f} at {screen_length} tokens, {k:.2f}x the "
                       f"fastest's ({ranked[0]['label']})")
        out_rows.append({"label": r["label"], "rtf": rtf(r), "x_fastest": round(k, 3)})
    confirm = [p for p in points if p.label in leaders
               or (p.provider != PROVIDER and by_label[p.label].get("status") == "ok")]
    confirmed = {r["label"]: r for r in sweep(confirm, token_lengths, repeats)}
    rows = [confirmed.get(p.label, by_label[p.label]) for p in points]
    return rows, {"screen_length": screen_length, "screen_repeats": screen_repeats,
                  "confirm_top": confirm_top, "screened": len(points),
                  "confirmed": [p.label for p in confirm], "screened_out": out_rows}


def headline(audits: Mapping[str, Any], rows: list[dict[str, Any]],
             sweep_status: str) -> dict[str, Any]:
    """The journal's key figures: audit coverage per variant and format, measured RTF per
    configuration and length, and the sweep's status."""
    out: dict[str, Any] = {"coreml sweep": sweep_status}
    for variant, a in audits.items():
        d = a.to_dict() if hasattr(a, "to_dict") else a
        out[f"{variant} nodes"] = d["nodes"]
        for fmt, fa in d["coreml"].items():
            out[f"{variant} {fmt} table coverage %"] = fa["coverage_pct"]
            out[f"{variant} {fmt} est. partitions"] = fa["estimated_partitions"]
    for r in rows:
        if r.get("status") == "ok":
            out[f"{r['label']} RTF @{r['tokens']} tok"] = r["rtf"]
            if r.get("lsd_db") is not None:
                out[f"{r['label']} LSD dB @{r['tokens']} tok"] = r["lsd_db"]
            if r.get("lsd_db_aligned") is not None:
                out[f"{r['label']} LSD dB time-aligned @{r['tokens']} tok"] = r["lsd_db_aligned"]
    return out



# -- the split: part A on the CPU, part B (the vocoder) where the accelerators are ----------
#: how far (standard LSD, dB) split or bucketed audio may be from the whole graph's
SPLIT_MAX_LSD_DB = 0.1


def split_check(cfg: LabConfig, variant: str, token_lengths: Iterable[int], buckets: list[int],
                b_rewrites: Iterable[str] = ("reflect_pad",), voice: str | None = None,
                max_lsd_db: float = SPLIT_MAX_LSD_DB) -> tuple[Any, dict[str, Any]]:
    """Cut ``variant`` (labkit.optimize.split, cached by model hash), then compare on the
    CPU: split and bucketed audio against the whole graph (standard LSD per input and per
    bucket; ``passed`` when every one is within ``max_lsd_db``) and the op audit of part B
    alone (plain and bucketed), per CoreML format."""
    model = assets.require(assets.model_path(cfg, variant), f"model {variant!r}")
    t0 = time.perf_counter()
    parts = splitting.split_files(model, split_runtime.split_dir(cfg), list(b_rewrites))
    build_s = time.perf_counter() - t0
    voices = VoiceBank.load(assets.voices_path(cfg))
    pack = voices.pack(voice or cfg.voice)
    feeds = [kokoro_feeds(tokens_of_length(n), style_row(pack, n)) for n in token_lengths]
    check = splitting.check_split(model, parts, feeds, buckets, cpu_session_config(cfg))
    audit_b = {}
    for key, path in (("b", parts.b), ("b_bucketed", parts.b_bucketed)):
        a = op_audit.audit(path)
        audit_b[key] = {"nodes": a.nodes, **{fmt: {"coverage_pct": fa.coverage_pct,
                                                   "estimated_partitions": fa.estimated_partitions,
                                                   "largest_partitions": fa.largest_partitions[:5],
                                                   "unsupported_ops": fa.unsupported_ops}
                                             for fmt, fa in a.coreml.items()}}
    meta = parts.meta
    return parts, {
        "status": "ok" if not check["failures"] else f"failed: {check['failures'][0]}",
        "variant": variant, "stages": 2, "boundary": meta["boundary"],
        "b_inputs": meta["b_inputs"], "samples_per_frame": meta["samples_per_frame"],
        "nodes": meta["nodes"], "b_rewrites": meta.get("b_rewrites", {}),
        "masked_norms": meta.get("masked_norms"), "masked_convs": meta.get("masked_convs"),
        "buckets": list(buckets), "max_lsd_db": check["max_lsd_db"],
        "max_lsd_db_limit": max_lsd_db,
        "passed": split_passed(check, max_lsd_db),
        "max_split_lsd_db": check["max_split_lsd_db"],
        "max_lsd_db_by_bucket": check["max_lsd_db_by_bucket"], "by_input": check["by_input"],
        "failures": check["failures"], "audit_b": audit_b, "build_s": round(build_s, 2)}


def split_passed(check: dict[str, Any], max_lsd_db: float) -> bool:
    """The split's gate on labkit.optimize.split.check_split's report: no failure (every
    length matched), a distance measured, and it within ``max_lsd_db``."""
    return (not check["failures"] and check["max_lsd_db"] is not None
            and check["max_lsd_db"] <= max_lsd_db)


@dataclass
class Candidate:
    """One execution-provider candidate: where (``whole`` graph or ``split``: part A on the
    CPU, part B on ``provider``) and how (CoreML's format, units, static shapes)."""

    graph: str
    provider: str  # "CPU", "CoreML", or a plugin's short name (labkit.engine.sessions.PLUGIN_PACKAGES)
    model_format: str | None = None
    compute_units: str | None = None
    static_shapes: bool = False

    @property
    def label(self) -> str:
        parts = [self.graph, self.provider]
        if self.provider == "CoreML":
            parts += [str(self.model_format), str(self.compute_units)]
            if self.static_shapes:
                parts.append("static")
        return "/".join(parts)


def candidates(formats: Iterable[str], compute_units: Iterable[str],
               static_shapes: Iterable[bool], plugins: Iterable[str]) -> list[Candidate]:
    """Every candidate the stage knows beyond the whole-graph CoreML sweep: the split on the
    CPU, CoreML on part B over the grid, and each plugin EP on part B and the whole graph.
    Values are checked first (a bad one fails before anything runs)."""
    plugins = list(plugins)
    bad = [p for p in plugins if p not in PLUGIN_PACKAGES]
    if bad:
        raise ConfigError(f"plugins {bad}: known are {', '.join(PLUGIN_PACKAGES)}")
    out = [Candidate("split", "CPU")]
    for p in coreml.sweep_points(["split"], formats, compute_units, static_shapes):
        out.append(Candidate("split", "CoreML", p.model_format, p.compute_units, p.static_shapes))
    for name in plugins:
        out += [Candidate("split", name), Candidate("whole", name)]
    return out


def provider_available(c: Candidate) -> tuple[str | None, list[dict[str, str]]]:
    """(skip reason or None, the devices a plugin enumerates)."""
    if c.provider == "CPU":
        return None, []
    if c.provider == "CoreML":
        return (None if coreml_available() else skip_reason()), []
    try:
        return None, [device_info(d) for d in plugin_devices(c.provider)]
    except PluginEPUnavailable as exc:
        return exc.reason, []


def candidate_session(cfg: LabConfig, c: Candidate, cache_dir: Path) -> SessionConfig:
    if c.provider == "CPU":
        return cpu_session_config(cfg)
    if c.provider == "CoreML":
        return session_config(cfg, c.model_format, c.compute_units, c.static_shapes,
                              cache_dir=point_cache(cache_dir, c.label))
    s = cpu_session_config(cfg)
    s.plugin_eps = [c.provider]
    s.validate()
    return s


def run_candidate(cfg: LabConfig, c: Candidate, parts, variant: str, token_lengths: list[int],
                  reference: Mapping[int, np.ndarray] | None, repeats: int, warmup: int,
                  cache_dir: Path, static_budget: StaticBudget | None = None) -> dict[str, Any]:
    """Measure one candidate: placement (ORT's log of the accelerated session), warm time
    and RTF by length, LSD to the reference. Skipped where its provider or device is absent."""
    out: dict[str, Any] = {"label": c.label, "candidate": asdict(c), "variant": variant}
    reason, devices = provider_available(c)
    if devices:
        out["devices"] = devices
    if reason is not None:
        out["status"] = f"skipped: {reason}"
        return out
    scfg = candidate_session(cfg, c, cache_dir)

    def verbose(so) -> None:
        so.log_severity_level = 0
        so.log_verbosity_level = 0

    voices = VoiceBank.load(assets.voices_path(cfg))
    t0 = time.perf_counter()
    with capture_ort_log() as log:
        if c.graph == "whole":
            model = assets.require(assets.model_path(cfg, variant), f"model {variant!r}")
            eng = runtime.Engine.from_session(cfg, new_session(model, scfg, configure=verbose),
                                              model, 0.0, voices)
        else:
            static = None
            if c.static_shapes:
                static = splitting.static_bucket_models(parts, cfg.split.buckets,
                                                        cache_dir / STATIC_DIR, budget=static_budget)
            # the CPU runs any length as is; accelerators get the fixed-length buckets
            buckets = [] if c.provider == "CPU" else cfg.split.buckets
            eng = split_runtime.SplitEngine(cfg, parts, voices, a_session=cpu_session_config(cfg),
                                            b_session=scfg, buckets=buckets, static_b=static,
                                            configure_b=verbose, variant=variant)
        first = eng.run_tokens(tokens_of_length(token_lengths[0]), cfg.voice)
    out["create_and_first_run_s"] = round(time.perf_counter() - t0, 4)
    placement = parse_placement_log("".join(log))
    ep = {"CoreML": PROVIDER}.get(c.provider)
    if ep is None and devices:
        ep = devices[0]["ep"]
    out["placement"] = placement.coverage(ep) if ep else {"nodes_on_cpu": "all"}
    del first
    rows = {}
    for n in token_lengths:
        toks = tokens_of_length(n)
        t, syn = timing.measure(lambda: eng.run_tokens(toks, cfg.voice), repeats=repeats,
                                warmup=warmup)
        row: dict[str, Any] = {"warm_s": round(t.median, 4), "warm_p90_s": round(t.p90, 4),
                               "rtf": round(t.median / max(syn.duration, 1e-9), 4)}
        if getattr(eng, "last", None):
            row["parts_s"] = {k: round(v, 4) for k, v in eng.last.items()}
        if reference is not None and n in reference:
            row["lsd_db"] = round(quality.lsd_db(reference[n], syn.audio,
                                                 allow_length_mismatch=True), 3)
            row["ruler"] = ruler.verdict(ruler.measure(reference[n], syn.audio,
                                                       standard_figures=False)).to_dict()
        rows[str(n)] = row
    out.update(status="ok", by_length=rows)
    return out


def run_candidates(cfg: LabConfig, cands: list[Candidate], parts, variant: str,
                   token_lengths: list[int], reference, repeats: int, warmup: int,
                   cache_dir: Path, static_budget: StaticBudget | None = None,
                   log: Any = progress.say, checkpoint: Checkpoint | None = None,
                   timeout_s: float | None = None) -> dict[str, Any]:
    """:func:`run_candidate` for each; one that fails is recorded ``failed: ...`` and the
    others go on. An accelerated candidate (CoreML, a plugin EP) whose provider is here
    runs in a child process within ``timeout_s``; rows go to ``checkpoint`` as they finish
    and a CoreML candidate's model cache is removed once it is measured."""
    out = {}
    for c in progress.steps(list(cands), "split candidates", label=lambda c: c.label):
        def measure(c=c) -> dict[str, Any]:
            try:
                return run_candidate(cfg, c, parts, variant, token_lengths, reference, repeats,
                                     warmup, cache_dir, static_budget)
            except StaticBudgetError as exc:
                return {"label": c.label, "candidate": asdict(c), "status": f"skipped: {exc}"}
            except Exception as exc:  # noqa: BLE001 - recorded, not hidden
                return {"label": c.label, "candidate": asdict(c),
                        "status": f"failed: {type(exc).__name__}: {exc}"}

        def in_child(c=c) -> dict[str, Any]:
            if c.static_shapes and c.graph != "whole":  # the copies are made here, in budget
                try:
                    splitting.static_bucket_models(parts, cfg.split.buckets,
                                                   cache_dir / STATIC_DIR, budget=static_budget)
                except StaticBudgetError as exc:
                    return {"label": c.label, "candidate": asdict(c), "status": f"skipped: {exc}"}
            return procs.isolated(run_candidate, cfg, c, parts, variant, token_lengths,
                                  reference, repeats, warmup, cache_dir, timeout_s=timeout_s)

        def finished(c=c) -> dict[str, Any]:
            risky = c.provider != "CPU" and provider_available(c)[0] is None
            r = isolate(c.provider, c.label, measure, in_child, timeout_s if risky else None)
            r.setdefault("candidate", asdict(c))
            if c.provider == "CoreML":
                r["cache_removed_mb"] = remove_cache(point_cache(cache_dir, c.label))
            return r

        key = {"candidate": asdict(c), "variant": variant, "lengths": token_lengths,
               "repeats": repeats, "warmup": warmup}
        r = checkpoint.run(key, finished) if checkpoint is not None else finished()
        if log:
            log(f"{r['label']}: {r['status']}")
        out[r["label"]] = r
    return out


def providers_record(sweep: list[dict[str, Any]], cands: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.providers: every candidate known, whole-graph sweep and split alike, with its
    status and (where it ran) its figures."""
    out: dict[str, Any] = {}
    for r in sweep:
        label = "whole/" + r["label"].split("/", 1)[1] if "/" in r["label"] else r["label"]
        entry = {"status": r.get("status"), "variant": r.get("point", {}).get("variant")}
        if r.get("status") == "ok":
            entry["by_length"] = {n: {k: row.get(k) for k in ("rtf", "lsd_db")}
                                  for n, row in r["by_length"].items()}
            entry["placement"] = next(iter(r["placement"].values()))["coverage"]
        out.setdefault(label, {})[entry["variant"]] = entry
    for label, r in cands.items():
        entry = {k: v for k, v in r.items() if k not in ("label", "candidate")}
        out.setdefault(label, {})[r.get("variant", "?")] = entry
    return out


def split_candidates(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The split configurations as selection candidates (labkit.lab.selection), beside a
    baseline. Stage 04 measures single runs, not paired interleaved rounds, so no ratio
    interval exists: a candidate without ``ci95`` can never replace the baseline (rule c),
    and the record says so rather than inventing one."""
    out = [{"name": "whole graph", "overrides": {"split.enabled": False}, "baseline": True,
            "criterion": "rtf", "measured": ["rtf", "quality"],
            "quality": quality_entry(True, basis="the whole graph itself")}]
    for label, r in result.get("candidates", {}).items():
        if not label.startswith("split/") or r.get("status") != "ok":
            continue
        c = r["candidate"] if "candidate" in r else {}
        rows = r["by_length"].values()
        lsd = [row["lsd_db"] for row in rows if row.get("lsd_db") is not None]
        over: dict[str, Any] = {"split.enabled": True, "split.buckets": [],
                                "split.b_session": {"providers": ["CPUExecutionProvider"]}}
        if c.get("provider") not in (None, "CPU"):
            over["split.buckets"] = result.get("buckets") or LabConfig().split.buckets
        if c.get("provider") == "CoreML":
            over["split.b_session"] = {
                "providers": [PROVIDER, CPU],
                "provider_options": {PROVIDER: {"ModelFormat": c["model_format"],
                                                "MLComputeUnits": c["compute_units"],
                                                "RequireStaticInputShapes": c["static_shapes"]}}}
        elif c.get("provider") not in (None, "CPU"):
            over["split.b_session"] = {"plugin_eps": [c["provider"]]}
        check = result.get("split", {}).get(r.get("variant"), {})
        failed = [] if check.get("passed") else [
            f"split check: {check.get('status', 'not run')}, max LSD to the whole graph "
            f"{check.get('max_lsd_db')} dB (limit {check.get('max_lsd_db_limit')})"]
        verdicts = [row["ruler"] for row in rows if row.get("ruler")]
        quality_ = quality_entry(
            all(v["verdict"] == "pass" for v in verdicts) if verdicts else None,
            [x for v in verdicts for x in v["reasons"]], "the ruler against the whole graph's audio")
        out.append({"name": label, "overrides": over, "baseline": False, "criterion": "rtf",
                    "measured": ["rtf", "quality"] if verdicts else ["rtf"],
                    "rtf": float(np.median([row["rtf"] for row in rows])), "quality": quality_,
                    "lsd_db": max(lsd) if lsd else None, "failed_checks": failed})
    return out


# -- the stage: run and record ---------------------------------------------------------------
def run(cfg: LabConfig, st, *, variants: Iterable[str] = ("int8",),
        formats: Iterable[str] = ("MLProgram",), compute_units: Iterable[str] = ("ALL",),
        static_shapes: Iterable[bool] = (False,), token_lengths: Iterable[int] = (25, 115),
        repeats: int = 3, warmup: int = 1, cpu_baseline: bool = True, profile: bool = True,
        short_max_tokens: int = 60, static_budget_gb: float = 4.0,
        split_variants: Iterable[str] = ("fp32-recon",), split_token_lengths: Iterable[int] = (25, 50, 115),
        split_buckets: Iterable[int] | None = None, split_b_rewrites: Iterable[str] = ("reflect_pad",),
        split_repeats: int = 2, plugins: Iterable[str] = ("webgpu", "mlx"),
        candidate_timeout_s: float | None = 900.0, screen_length: int | None = None,
        screen_repeats: int = 1, confirm_top: int = 4, log: Any = progress.say) -> dict[str, Any]:
    """The whole stage: the static op audit of every variant present, the reference audio,
    then each configuration (the CPU baseline first, then the CoreML grid; on a machine
    without CoreML each CoreML point is ``skipped`` without touching a session), and the
    recommendation per input length. Static-shape model copies are written only within
    ``static_budget_gb`` (a point past it is skipped, saying so) and removed when their
    sweep ends (and at the end, whatever happened). A CoreML or plugin-EP candidate runs in
    a child process within ``candidate_timeout_s`` (None: in this process): a native crash
    or hang is that candidate's ``failed: <reason>``. With ``screen_length``, the grid is
    screened first and only its ``confirm_top`` leaders are measured at every length
    (:func:`screen_then_confirm`). Every configuration's and candidate's
    row is written as it finishes (``finished/``), so ``labkit journal --resume`` goes on
    from the last one; each CoreML model cache is removed once its candidate is measured."""
    token_lengths = [int(n) for n in token_lengths]
    audits, missing = op_audit.audit_variants(cfg, list(variants))
    tables = op_audit.load_supported()
    reference, ref_info = reference_audio(cfg, sorted(set(token_lengths) | (
        {int(screen_length)} if screen_length else set())))
    points = coreml.sweep_points(list(audits), formats, compute_units, static_shapes)
    if cpu_baseline:
        points = [SweepPoint(v, CPU) for v in audits] + points
    budget = StaticBudget.gb(static_budget_gb)
    buckets = sorted(int(b) for b in (cfg.split.buckets if split_buckets is None else split_buckets))
    cfg = cfg.with_overrides({"split.buckets": buckets})
    cands = candidates(formats, compute_units, static_shapes, plugins)
    split_lengths = [int(n) for n in split_token_lengths]
    splits: dict[str, Any] = {}
    cand_results: dict[str, Any] = {}
    ck = Checkpoint(st.path(FINISHED_DIR))
    screen = None

    def sweep(pts, lengths, reps):
        return run_sweep(cfg, pts, lengths, repeats=reps, warmup=warmup,
                         cache_root=st.path("coreml-cache"), reference=reference,
                         profile_dir=st.path("profiles") if profile else None,
                         static_budget=budget, log=log, checkpoint=ck,
                         timeout_s=candidate_timeout_s)

    try:
        n_coreml = sum(p.provider == PROVIDER for p in points)
        if screen_length and n_coreml > confirm_top and coreml_available():
            results, screen = screen_then_confirm(points, token_lengths, repeats, int(screen_length),
                                                  screen_repeats, confirm_top, sweep)
        else:
            results = sweep(points, token_lengths, repeats)
        sweep_static = budget.to_dict()
        sweep_static["freed_gb"] = budget.remove() / 1e9  # released when the sweep ends
        for variant in split_variants:
            try:
                parts, splits[variant] = split_check(cfg, variant, split_lengths, buckets,
                                                     split_b_rewrites)
            except Exception as exc:  # noqa: BLE001 - recorded, the sweep's numbers are kept
                splits[variant] = {"status": f"failed: {type(exc).__name__}: {exc}",
                                   "variant": variant}
                continue
            unrendered = [n for n in split_lengths if n not in reference]
            split_ref = {**reference, **(reference_audio(cfg, unrendered)[0] if unrendered else {})}
            for label, r in run_candidates(cfg, cands, parts, variant, split_lengths, split_ref,
                                           split_repeats, warmup, st.path("coreml-cache"),
                                           budget, log, checkpoint=ck,
                                           timeout_s=candidate_timeout_s).items():
                cand_results[f"{label}@{variant}" if len(list(split_variants)) > 1 else label] = r
    finally:
        static = budget.to_dict()
        static["freed_gb"] = budget.remove() / 1e9
        shutil.rmtree(st.path("coreml-cache") / STATIC_DIR, ignore_errors=True)
    static["sweep"] = sweep_static
    static["resumed_candidates"] = len(ck.reused)
    rows = summarize(results)
    available = coreml_available()
    return {"audits": audits, "missing": missing, "tables": tables,
            "tables_vs_pinned": op_audit.compare_tables(), "reference": ref_info,
            "results": results, "rows": rows, "available": available,
            "platform": coreml.platform_name(),
            "sweep_status": "ok" if available else f"skipped: {skip_reason()}",
            "recommendation": recommend(rows, short_max_tokens),
            "static_copies": static, "split": splits, "candidates": cand_results, "buckets": buckets,
            "screen": screen,
            "providers": providers_record(results, cand_results)}


def record(st, result: dict[str, Any]) -> None:
    st.metrics["audit"] = {v: a.to_dict() for v, a in result["audits"].items()}
    st.metrics["variants_missing"] = result["missing"]
    st.metrics["coreml_tables"] = {"onnxruntime_version": result["tables"]["onnxruntime_version"],
                                   "source": result["tables"]["source"],
                                   "installed_vs_pinned": result["tables_vs_pinned"]}
    st.metrics["reference"] = result["reference"]
    st.metrics["sweep"] = result["results"]
    st.metrics["rows"] = result["rows"]
    st.metrics["sweep_status"] = result["sweep_status"]
    st.metrics["static_copies"] = result["static_copies"]
    if result.get("screen"):
        sc = result["screen"]
        st.metrics["screen"] = sc
        st.note(f"screened {sc['screened']} configurations at {sc['screen_length']} tokens "
                f"({sc['screen_repeats']} repeat(s)); confirmed {len(sc['confirmed'])} at every "
                "length; screened out: " + ("; ".join(
                    f"{r['label']} ({r['x_fastest']}x the fastest's RTF)"
                    for r in sc["screened_out"]) or "none"))
    st.metrics["recommendation"] = result["recommendation"]
    st.metrics["headline"] = headline(result["audits"], result["rows"], result["sweep_status"])
    split = next(iter(result["split"].values()), None)
    if split is not None:
        st.metrics["split"] = split if len(result["split"]) == 1 else result["split"]
        if split.get("status") == "ok":
            st.metrics["headline"].update(split_headline(split))
    st.metrics["providers"] = result["providers"]
    st.metrics["candidates"] = split_candidates(result)
    failed = [f"{r['label']}: {r['status'][len('failed: '):]}" for r in result["results"]
              + list(result["candidates"].values()) if str(r.get("status", "")).startswith("failed")]
    if failed:  # a crash or hang costs its candidate only; the journal names each
        st.note("failed candidates (the stage went on): " + "; ".join(failed))
    skipped_static = [r["label"] for r in result["results"]
                      if "static_budget_gb" in str(r.get("status", ""))]
    if skipped_static:
        st.note(f"static-shape points skipped for the disk budget: {skipped_static}")
    st.note("stage 04's candidates (the split configurations beside the whole graph) carry "
            "single-run figures, no paired ratio interval: under the selection rules none can "
            "replace the baseline until they are compared in interleaved rounds; the fastest "
            "measured whole-graph configuration per input length is a recommendation only")
    if result["available"]:
        st.metrics["selection"] = result["recommendation"]
    else:
        st.note("op audit and CPU-provider baseline measured; CoreML sweep not run")
        st.skip(skip_reason())


def split_headline(split: dict[str, Any]) -> dict[str, Any]:
    out = {"split stages": split["stages"], "split max LSD dB (vs whole graph)": split["max_lsd_db"],
           f"split within {split['max_lsd_db_limit']} dB": split["passed"]}
    for b, d in split["max_lsd_db_by_bucket"].items():
        out[f"split bucket {b} max LSD dB"] = d
    for key in ("b", "b_bucketed"):
        for fmt in op_audit.FORMATS:
            a = split["audit_b"][key][fmt]
            out[f"part {key} {fmt} table coverage %"] = a["coverage_pct"]
            out[f"part {key} {fmt} est. partitions"] = a["estimated_partitions"]
    return out


def providers_table(result: dict[str, Any]) -> str:
    """One line per provider candidate and variant: status, RTF and LSD by length."""
    lines = ["| candidate | variant | status | RTF by tokens | LSD dB by tokens |", "|---|---|---|---|---|"]
    for label, per in result["providers"].items():
        for variant, e in per.items():
            rows = e.get("by_length") or {}
            rtf = ", ".join(f"{n}: {r.get('rtf')}" for n, r in rows.items())
            lsd = ", ".join(f"{n}: {r.get('lsd_db')}" for n, r in rows.items())
            lines.append(f"| {label} | {variant} | {e.get('status')} | {rtf} | {lsd} |")
    return "\n".join(lines)


def split_text(result: dict[str, Any]) -> str:
    out = []
    for variant, sp in result["split"].items():
        if sp.get("status") != "ok":
            out.append(f"{variant}: {sp.get('status')}")
            continue
        out.append(f"{variant}: {sp['stages']} stages, boundary {sp['boundary']}, "
                   f"{sp['samples_per_frame']} samples per frame, nodes {sp['nodes']}")
        out.append(f"  max LSD to the whole graph: split {sp['max_split_lsd_db']} dB, with buckets "
                   f"{sp['max_lsd_db']} dB; by bucket {sp['max_lsd_db_by_bucket']}")
        for key, a in sp["audit_b"].items():
            out.append(f"  part {key}: " + "; ".join(
                f"{fmt} {a[fmt]['coverage_pct']} % in {a[fmt]['estimated_partitions']} partitions"
                for fmt in op_audit.FORMATS))
    return "\n".join(out)


# -- tables and plots for the notebook ---------------------------------------------------------
def audit_tables(result: dict[str, Any]) -> str:
    out = []
    for variant, a in result["audits"].items():
        extra = ", ".join(k for k in a.opsets if k != "ai.onnx")
        out += [f"### {variant}: {a.nodes} nodes, opsets {a.opsets.get('ai.onnx')} (+ {extra}), "
                f"weights {a.precision_mix}, dynamic axes {a.dynamic_axes}, control flow "
                f"{a.control_flow or 'none'}", "",
                "| format | nodes supported | fallback | est. partitions | largest partitions |",
                "|---|---|---|---|---|"]
        out += [f"| {f} | {fa.supported_nodes} ({fa.coverage_pct} %) | {fa.unsupported_nodes} | "
                f"{fa.estimated_partitions} | {fa.largest_partitions[:5]} |" for f, fa in a.coreml.items()]
        out += ["", "| op | count | MLProgram | NeuralNetwork |", "|---|---|---|---|"]
        out += [f"| {r['op']} | {r['count']} | {r['MLProgram']} | {r['NeuralNetwork']} |"
                for r in a.table()]
        out.append("")
    out += [f"{variant}: not audited ({why})" for variant, why in result["missing"].items()]
    return "\n".join(out)


def audit_checks(result: dict[str, Any]) -> str:
    out = []
    for variant, a in result["audits"].items():
        out += [f"== {variant}", f"watchlist: {json.dumps(a.watchlist)}"]
        out += [f"{name}: {json.dumps(check)}" for name, check in a.checks.items()]
    return "\n".join(out)


def plot_audit(result: dict[str, Any], plt):
    audits = result["audits"]
    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [f"{v}\n{f}" for v, a in audits.items() for f in a.coreml]
    sup = [fa.supported_nodes for a in audits.values() for fa in a.coreml.values()]
    uns = [fa.unsupported_nodes for a in audits.values() for fa in a.coreml.values()]
    ax.bar(labels, sup, label="in CoreML's table")
    ax.bar(labels, uns, bottom=sup, label="CPU fallback")
    ax.set_ylabel("nodes")
    ax.set_title("Static audit: nodes CoreML's op tables cover")
    ax.legend()
    fig.tight_layout()
    return fig


SWEEP_COLUMNS = ["label", "tokens", "status", "warm_median_s", "warm_p90_s", "rtf", "lsd_db",
                 "cold_first_run_s", "second_create_s", "nodes_on_ep", "nodes_on_cpu",
                 "nodes_in_graph", "partitions"]


def sweep_table(result: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(SWEEP_COLUMNS) + " |", "|" + "---|" * len(SWEEP_COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in SWEEP_COLUMNS) + " |"
              for r in result["rows"]]
    return "\n".join(lines)


def starts_text(result: dict[str, Any]) -> str:
    """Start-up, profile and placement of every configuration that ran."""
    out = []
    for r in (r for r in result["results"] if r.get("status") == "ok"):
        for key, start in r["starts"].items():
            out.append(f"{r['label']} {key} {({k: v for k, v in start.items() if k != 'profile'})}")
            prof = start.get("profile")
            if prof:
                out.append("   time share by provider: "
                           f"{({ep: v['time_share'] for ep, v in prof['by_provider'].items()})}"
                           f" | top CPU ops (us): {prof['cpu_top_ops_us']}")
        out.append(f"   placement: {({k: v['coverage'] for k, v in r['placement'].items()})}")
    return "\n".join(out)


def plot_rtf(result: dict[str, Any], plt):
    ok_rows = [r for r in result["rows"] if r.get("status") == "ok"]
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
