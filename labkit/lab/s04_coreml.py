"""Stage 04: where Kokoro can run on a Mac's accelerators -- three experiments composed.

* The op audit (labkit.lab.accelerator_audit on labkit.optimize.op_audit): which nodes of every
  variant present CoreML's op tables cover, per format, and the partitions that leaves.
* The CoreML sweep over the whole graph (labkit.lab.accelerator_sweep), configuration by
  configuration: cold and cached start, warm latency by token length, placement and
  quality against the reference; the CPU provider is measured the same way, which is all
  this lab does where CoreML does not exist (``coreml_available``, ``skip_reason``).
* The split model (labkit.lab.accelerator_split): part A on the CPU, part B (the vocoder) where the
  accelerators are, checked against the whole graph, and every provider candidate on it.

:func:`run` composes them (a candidate that can crash natively runs in a child process,
each row is checkpointed so a resumed stage goes on from the last one; what they share is
labkit.lab.accelerator_harness); :func:`record` writes the record, :func:`headline` its key figures.
"""
from __future__ import annotations

import shutil
from typing import Any, Iterable, Mapping

from labkit import progress
from labkit.config import LabConfig
from labkit.lab.checkpoint import FINISHED_DIR, Checkpoint
from labkit.lab.accelerator_audit import audit_headline
from labkit.lab.accelerator_harness import STATIC_DIR, reference_audio
from labkit.lab.accelerator_result import CoreMLResult
from labkit.lab.accelerator_split import (candidates, providers_record, run_split, split_candidates,
                                  split_headline)
from labkit.lab.accelerator_sweep import (recommend, run_sweep, screen_then_confirm, summarize,
                                  sweep_headline)
from labkit.optimize import coreml, op_audit
from labkit.optimize.coreml import (CPU, PROVIDER, StaticBudget, SweepPoint, coreml_available,
                                    skip_reason)


NAME = "04_coreml_units"


def run(cfg: LabConfig, st, *, variants: Iterable[str] = ("int8",),
        formats: Iterable[str] = ("MLProgram",), compute_units: Iterable[str] = ("ALL",),
        static_shapes: Iterable[bool] = (False,), token_lengths: Iterable[int] = (25, 115),
        repeats: int = 3, warmup: int = 1, cpu_baseline: bool = True, profile: bool = True,
        short_max_tokens: int = 60, static_budget_gb: float = 4.0,
        split_variants: Iterable[str] = ("fp32-recon",), split_token_lengths: Iterable[int] = (25, 50, 115),
        split_buckets: Iterable[int] | None = None, split_b_rewrites: Iterable[str] = ("reflect_pad",),
        split_repeats: int = 2, plugins: Iterable[str] = ("webgpu", "mlx"),
        candidate_timeout_s: float | None = 900.0, screen_length: int | None = None,
        screen_repeats: int = 1, confirm_top: int = 4, log: Any = progress.say) -> CoreMLResult:
    """The whole stage: the static op audit of every variant present, the reference audio,
    then each configuration (the CPU baseline first, then the CoreML grid; on a machine
    without CoreML each CoreML point is ``skipped`` without touching a session), and the
    recommendation per input length; then the split and its candidates. Static-shape model
    copies are written only within ``static_budget_gb`` (a point past it is skipped, saying
    so) and removed when their sweep ends (and at the end, whatever happened). A CoreML or
    plugin-EP candidate runs in a child process within ``candidate_timeout_s`` (None: in
    this process): a native crash or hang is that candidate's ``failed: <reason>``. With
    ``screen_length``, the grid is screened first and only its ``confirm_top`` leaders are
    measured at every length (labkit.lab.accelerator_sweep.screen_then_confirm), and so are
    the split's candidates on each variant. Every
    configuration's and candidate's row is written as it finishes (``finished/``), so
    ``labkit journal --resume`` goes on from the last one; each CoreML model cache is
    removed once its candidate is measured."""
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
        splits, cand_results = run_split(
            cfg, split_variants, [int(n) for n in split_token_lengths], buckets, split_b_rewrites,
            cands, reference, split_repeats, warmup, st.path("coreml-cache"), budget, log, ck,
            candidate_timeout_s,
            (int(screen_length), screen_repeats, confirm_top) if screen_length else None)
    finally:
        static = budget.to_dict()
        static["freed_gb"] = budget.remove() / 1e9
        shutil.rmtree(st.path("coreml-cache") / STATIC_DIR, ignore_errors=True)
    static["sweep"] = sweep_static
    static["resumed_candidates"] = len(ck.reused)
    rows = summarize(results)
    available = coreml_available()
    return CoreMLResult(
        audits=audits, missing=missing, tables=tables, tables_vs_pinned=op_audit.compare_tables(),
        reference=ref_info, results=results, rows=rows, available=available,
        platform=coreml.platform_name(),
        sweep_status="ok" if available else f"skipped: {skip_reason()}",
        recommendation=recommend(rows, short_max_tokens), static_copies=static, split=splits,
        candidates=cand_results, buckets=buckets, screen=screen,
        providers=providers_record(results, cand_results))


def headline(audits: Mapping[str, Any], rows: list[dict[str, Any]],
             sweep_status: str) -> dict[str, Any]:
    """The journal's key figures: audit coverage per variant and format, measured RTF per
    configuration and length, and the sweep's status."""
    return {"coreml sweep": sweep_status, **audit_headline(audits), **sweep_headline(rows)}


def record(st, result: CoreMLResult) -> None:
    st.metrics["audit"] = {v: a.to_dict() for v, a in result.audits.items()}
    st.metrics["variants_missing"] = result.missing
    st.metrics["coreml_tables"] = {"onnxruntime_version": result.tables["onnxruntime_version"],
                                   "source": result.tables["source"],
                                   "installed_vs_pinned": result.tables_vs_pinned}
    st.metrics["reference"] = result.reference
    st.metrics["sweep"] = result.results
    st.metrics["rows"] = result.rows
    st.metrics["sweep_status"] = result.sweep_status
    st.metrics["static_copies"] = result.static_copies
    if result.screen:
        sc = result.screen
        st.metrics["screen"] = sc
        st.note(f"screened {sc['screened']} configurations at {sc['screen_length']} tokens "
                f"({sc['screen_repeats']} repeat(s)); confirmed {len(sc['confirmed'])} at every "
                "length; screened out: " + ("; ".join(
                    f"{r['label']} ({r['x_fastest']}x the fastest's RTF)"
                    for r in sc["screened_out"]) or "none"))
    st.metrics["recommendation"] = result.recommendation
    st.metrics["headline"] = headline(result.audits, result.rows, result.sweep_status)
    split = next(iter(result.split.values()), None)
    if split is not None:
        st.metrics["split"] = split if len(result.split) == 1 else result.split
        if split.get("status") == "ok":
            st.metrics["headline"].update(split_headline(split))
    st.metrics["providers"] = result.providers
    st.metrics["candidates"] = split_candidates(result.candidates, result.split, result.buckets)
    failed = [f"{r['label']}: {r['status'][len('failed: '):]}" for r in result.results
              + list(result.candidates.values()) if str(r.get("status", "")).startswith("failed")]
    if failed:  # a crash or hang costs its candidate only; the journal names each
        st.note("failed candidates (the stage went on): " + "; ".join(failed))
    skipped_static = [r["label"] for r in result.results
                      if "static_budget_gb" in str(r.get("status", ""))]
    if skipped_static:
        st.note(f"static-shape points skipped for the disk budget: {skipped_static}")
    st.note("stage 04's candidates (the split configurations beside the whole graph) carry "
            "single-run figures, no paired ratio interval: under the selection rules none can "
            "replace the baseline until they are compared in interleaved rounds; the fastest "
            "measured whole-graph configuration per input length is a recommendation only")
    if result.available:
        st.metrics["selection"] = result.recommendation
    else:
        st.note("op audit and CPU-provider baseline measured; CoreML sweep not run")
        st.skip(skip_reason())
