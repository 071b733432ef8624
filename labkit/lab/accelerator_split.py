"""Stage 04's second experiment: the split model -- part A on the CPU, part B (the
vocoder) where the accelerators are. :func:`split_check` cuts a variant
(labkit.optimize.split) and checks split and bucketed audio against the whole graph and
audits part B's ops; then every provider candidate (the split on the CPU, CoreML on part B
over the grid, each plugin EP on part B and on the whole graph) is measured
(:func:`run_candidates`: each in a child process where it can crash, each row
checkpointed) and offered to the journal's selection (:func:`split_candidates`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from labkit import procs, progress, quality, timing
from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.engine import assets, runtime, split_runtime
from labkit.engine.voices import VoiceBank
from labkit.engine.sessions import (PLUGIN_PACKAGES, PluginEPUnavailable, device_info, kokoro_feeds,
                                    new_session, plugin_devices, style_row)
from labkit.lab.checkpoint import Checkpoint
from labkit.lab.accelerator_harness import (STATIC_DIR, isolate, point_cache, reference_audio, remove_cache,
                                     tokens_of_length)
from labkit.lab.accelerator_result import CoreMLResult
from labkit.lab.accelerator_sweep import screen_then_confirm
from labkit.lab.selection import quality_entry
from labkit.measure.placement import capture_ort_log, parse_placement_log
from labkit.optimize import coreml, op_audit
from labkit.optimize import split as splitting
from labkit.optimize.coreml import (CPU, PROVIDER, StaticBudget, StaticBudgetError,
                                    coreml_available, cpu_session_config, session_config, skip_reason)
from labkit.quality import ruler


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


def split_candidates(cands: Mapping[str, dict], split: Mapping[str, dict],
                     buckets: list[int] | None = None) -> list[dict[str, Any]]:
    """The measured split configurations ``cands`` (label -> :func:`run_candidate`'s row)
    as selection candidates (labkit.lab.selection), beside a baseline, each failed where
    its variant's check in ``split`` did not pass; ``buckets``: those they ran with. Stage 04 measures single runs, not paired interleaved rounds, so no ratio
    interval exists: a candidate without ``ci95`` can never replace the baseline (rule c),
    and the record says so rather than inventing one."""
    out = [{"name": "whole graph", "overrides": {"split.enabled": False}, "baseline": True,
            "criterion": "rtf", "measured": ["rtf", "quality"],
            "quality": quality_entry(True, basis="the whole graph itself")}]
    for label, r in cands.items():
        if not label.startswith("split/") or r.get("status") != "ok":
            continue
        c = r["candidate"] if "candidate" in r else {}
        rows = r["by_length"].values()
        lsd = [row["lsd_db"] for row in rows if row.get("lsd_db") is not None]
        over: dict[str, Any] = {"split.enabled": True, "split.buckets": [],
                                "split.b_session": {"providers": ["CPUExecutionProvider"]}}
        if c.get("provider") not in (None, "CPU"):
            over["split.buckets"] = buckets or LabConfig().split.buckets
        if c.get("provider") == "CoreML":
            over["split.b_session"] = {
                "providers": [PROVIDER, CPU],
                "provider_options": {PROVIDER: {"ModelFormat": c["model_format"],
                                                "MLComputeUnits": c["compute_units"],
                                                "RequireStaticInputShapes": c["static_shapes"]}}}
        elif c.get("provider") not in (None, "CPU"):
            over["split.b_session"] = {"plugin_eps": [c["provider"]]}
        check = split.get(r.get("variant"), {})
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



# -- the notebook's text and tables -----------------------------------------------------------
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


def providers_table(result: CoreMLResult) -> str:
    """One line per provider candidate and variant: status, RTF and LSD by length."""
    lines = ["| candidate | variant | status | RTF by tokens | LSD dB by tokens |", "|---|---|---|---|---|"]
    for label, per in result.providers.items():
        for variant, e in per.items():
            rows = e.get("by_length") or {}
            rtf = ", ".join(f"{n}: {r.get('rtf')}" for n, r in rows.items())
            lsd = ", ".join(f"{n}: {r.get('lsd_db')}" for n, r in rows.items())
            lines.append(f"| {label} | {variant} | {e.get('status')} | {rtf} | {lsd} |")
    return "\n".join(lines)


def split_text(result: CoreMLResult) -> str:
    out = []
    for variant, sp in result.split.items():
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



# -- the experiment -------------------------------------------------------------------------------
def run_split(cfg: LabConfig, split_variants: Iterable[str], lengths: list[int], buckets: list[int],
              b_rewrites: Iterable[str], cands: list[Candidate], reference: dict[int, np.ndarray],
              repeats: int, warmup: int, cache_dir: Path, budget: StaticBudget | None,
              log: Any, checkpoint: Checkpoint | None, timeout_s: float | None,
              screen: tuple[int, int, int] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """For each variant: :func:`split_check`, then every candidate on its parts
    (:func:`run_candidates`), against ``reference`` (the lengths it lacks rendered here).
    A variant that cannot be cut is recorded ``failed: ...`` and the others go on.
    ``screen``: (length, repeats, top): where more than ``top`` accelerated candidates
    have their provider here, all are screened at one length and only the ``top`` fastest
    (and the CPU's) measured at every length (labkit.lab.accelerator_sweep.screen_then_confirm);
    what it decided is under ``splits[variant]["screen"]``.
    Returns (variant -> its check, candidate label -> its row; labels carry ``@variant``
    where more than one variant is split)."""
    splits: dict[str, Any] = {}
    cand_results: dict[str, Any] = {}
    for variant in split_variants:
        try:
            parts, splits[variant] = split_check(cfg, variant, lengths, buckets, b_rewrites)
        except Exception as exc:  # noqa: BLE001 - recorded, the sweep's numbers are kept
            splits[variant] = {"status": f"failed: {type(exc).__name__}: {exc}",
                               "variant": variant}
            continue
        wanted = sorted(set(lengths) | ({screen[0]} if screen else set()))
        unrendered = [n for n in wanted if n not in reference]
        split_ref = {**reference, **(reference_audio(cfg, unrendered)[0] if unrendered else {})}

        def sweep(cs, ls, reps, parts=parts, variant=variant, split_ref=split_ref):
            return list(run_candidates(cfg, cs, parts, variant, ls, split_ref, reps, warmup,
                                       cache_dir, budget, log, checkpoint=checkpoint,
                                       timeout_s=timeout_s).values())

        here = [c for c in cands if c.provider != "CPU" and provider_available(c)[0] is None]
        if screen and len(here) > screen[2]:
            rows, splits[variant]["screen"] = screen_then_confirm(cands, lengths, repeats, screen[0],
                                                                  screen[1], screen[2], sweep)
        else:
            rows = sweep(cands, lengths, repeats)
        for r in rows:
            label = r["label"]
            cand_results[f"{label}@{variant}" if len(list(split_variants)) > 1 else label] = r
    return splits, cand_results
