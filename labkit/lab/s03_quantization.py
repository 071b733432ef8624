"""Stage 03: quantization and the quality bench.

:func:`run` builds the variants (labkit.optimize.quantize), sweeps the per-block
sensitivity on the development set and builds the mixed-precision variant from it
(labkit.lab.variant_choice), then benches the reference, the shipped baseline (``int8``)
and every variant (labkit.measure.variant_bench): size, load time, quality against the
reference, and speed -- the warm wall time of one ``session.run`` on the same feeds, every
variant against the baseline through the one instrument (labkit.measure.variant_speed on
labkit.measure.compare: interleaved rounds, paired ratios with a bootstrap 95 % interval,
an A/A control). The comparison at ``speed_tokens`` (120 by default) is the stage's
criterion (labkit.measure.variant_speed.CRITERION); the other lengths are reported. Then
the Pareto front, a listening page, the ORT profile that explains the speed
(labkit.measure.profile) and the targets' selection; :func:`record` fills the record and
the journal's candidates. The notebook's tables, plots and listening are
labkit.lab.quantization_report's.

Quality is the ruler's (labkit.quality.ruler), like with like (labkit.lab.variant_ruler on
labkit.measure.vocoder): each variant's vocoder on the reference's part A, so a variant
that predicts other durations is not read as damaged; its durations are compared token by
token (a bound of their own) and the recognizer's word error rate of its own output is
held against the reference's. A variant passes when every utterance of the development set
and of the held-out set passes; the standard figures (LSD, PESQ, STOI, DNSMOS) are
reported beside. A variant whose output has NaN, silence or clipping on any input is
*failed*: reported, never selected.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from labkit import progress
from labkit.config import LabConfig
from labkit.engine import assets
from labkit.engine.graph_cache import make_session
from labkit.engine.voices import VoiceBank
from labkit.host import machine
from labkit.lab import listen as listening
from labkit.lab.report import listening_page
from labkit.lab.quantization_report import side_by_side, stopped_by
from labkit.lab.quantization_result import QuantizationResult
from labkit.lab.selection import rank
from labkit.lab.variant_choice import (candidates, choose_families, pareto_front, select,
                                       sensitivity, time_shares, verified_set,
                                       VERIFY_TRIES, error_parts)
from labkit.lab.variant_ruler import ruler_quality
from labkit.measure import corpora, dnsmos, vocoder
from labkit.measure import peak
from labkit.measure import profile as profiling
from labkit.measure.variant_bench import REFERENCE, Candidate, run_bench
from labkit.measure.variant_quality import evaluate, reference_audio
from labkit.measure.variant_speed import token_probe
from labkit.optimize import durations
from labkit.optimize import quantize
from labkit.optimize.families import family_of, fine_family_of, layer_of, layers_in
from labkit.quality import ruler


NAME = "03_quantization"


# -- the experiment's steps -------------------------------------------------------------------
def timed_candidate(c: Candidate, cache: Path) -> Candidate:
    """``c`` on its model's copy with the durations output; ``c`` itself (noted) where the
    graph has no recognisable durations."""
    try:
        return Candidate(c.name, durations.ensure(c.path, cache), c.note)
    except durations.DurationsError as exc:
        return Candidate(c.name, c.path, f"{c.note} (no word timings: {exc})".strip())


#: the probe length the sensitivity sweep's time shares are profiled at
SHARE_TOKENS = 120


#: the sensitivity sweep's grain: the families as given, or every convolution inside them
GRAINS = ("block", "layer")


def speed_skips(built: dict, m: machine.Facts | None = None) -> dict[str, str]:
    """variant -> why its speed is not measured on this machine: an fp16 variant is timed
    only where the CPU computes in fp16 (the Mac; issue #33). Elsewhere it runs as fp32
    with conversions, which says nothing of its speed there; its quality is measured."""
    why = machine.fp16_speed_skip(m)
    return {n: why for n, b in built.items() if b.spec.recipe == "fp16"} if why else {}


def build_variants(builder, variants: Sequence, sensitivity_families: Sequence[str], spec: dict,
                   session_cfg, dev: Sequence, voices, reference: Path,
                   mixed_budget_db: float | None, notes: list[str],
                   grain: str = "block", verify_tries: int = VERIFY_TRIES,
                   verify_on: Sequence | None = None) -> tuple[dict, dict, dict | None]:
    """The variants as given, then the sensitivity sweep on the development set and the
    mixed-precision variant it plans (within ``mixed_budget_db``, the ruler's bound by
    default, and the ruler's worst-frame bound), verified as a whole on the development
    set and cut back or grown where the estimate missed (:func:`variant_choice.verified_set`):
    (builds by name, the sweep's per-family costs, the plan). ``grain``: ``"block"`` sweeps
    the families as given; ``"layer"`` sweeps every convolution inside them
    (labkit.optimize.families.LAYERS), its time share from the profile by layer.
    ``verify_on``: the development utterances the set is measured on as a whole (the
    whole development set, by default ``dev``): more than the sweep's few, since a worst
    frame found on four sentences did not hold on the held-out twelve."""
    if grain not in GRAINS:
        raise ValueError(f"sensitivity_grain={grain!r}: allowed are {GRAINS}")
    built = {}
    for item in progress.steps(list(variants), "builds", label=lambda v: str(
            v.get("name", "") if isinstance(v, dict) else v)):
        b = builder.build(item)
        built[b.spec.name] = b
    sens: dict[str, dict] = {}
    plan = None
    if sensitivity_families:
        swept = layers_in(sensitivity_families) if grain == "layer" else list(sensitivity_families)
        ref_sess = make_session(reference, session_cfg)
        dev_ref = reference_audio(ref_sess, dev, voices)  # choosing: the development set
        checked = list(verify_on) if verify_on else list(dev)
        known = {p.utt.id for p in dev}
        check_ref = {**dev_ref, **reference_audio(ref_sess, [p for p in checked if p.utt.id not in known],
                                                  voices)}
        del ref_sess
        # each block's (layer's) share of the reference's kernel time (issue #33: what
        # quantizing it can save), from ORT's profile on the development set at 120 tokens
        prof = profiling.profile_session(reference, session_cfg, token_probe(dev, SHARE_TOKENS, voices),
                                         runs=1, warmup=1, out_dir=builder.out_dir / "_work" / "profile",
                                         family_of=layer_of if grain == "layer" else fine_family_of)
        sens = sensitivity(builder, swept, spec, session_cfg, dev, voices, dev_ref,
                           shares=time_shares(prof, swept))
        budget = ruler.BOUNDS["masked_lsd_db"] if mixed_budget_db is None else mixed_budget_db
        plan = choose_families(sens, budget, ruler.BOUNDS["masked_lsd_peak_db"])

        def measure(families: list[str]) -> dict[str, Any]:
            b = builder.build({**spec, "name": "mixed", "families": families})
            sess = make_session(b.path, session_cfg)
            s = evaluate(sess, checked, voices, check_ref, with_dnsmos=False)["summary"]
            del sess
            m, pk = s["masked_lsd_db"], s["masked_lsd_peak_db"]
            return {"utterances": len(checked), "masked_lsd_db": m, "masked_lsd_peak_db": pk,
                    "passed": bool(s["ok"]) and m is not None and m <= budget
                    and pk is not None and pk <= ruler.BOUNDS["masked_lsd_peak_db"]}

        if plan["quantize"]:
            plan["verified"] = verified_set(plan["order"], len(plan["quantize"]), measure, verify_tries)
            plan["quantize"] = plan["verified"]["quantize"]
            plan["keep_float"] = sorted(set(sens) - set(plan["quantize"]))
            stop = plan["verified"]["stops_at"]
            if stop and spec.get("recipe") == "static":
                # what stops it, in parts: its weights, its input, its output
                plan["stops_at_parts"] = error_parts(builder, stop, spec, session_cfg, dev,
                                                     voices, dev_ref, sens[stop])
        if plan["quantize"]:
            b = builder.build({**spec, "name": "mixed", "families": plan["quantize"]})
            built[b.spec.name] = b
        else:
            notes.append("no family fits the mixed-precision budget: no mixed variant built")
    else:
        notes.append("sensitivity sweep skipped (sensitivity_families=[])")
    return built, sens, plan


def profile_fastest(rows: dict[str, dict], reference: Path, session_cfg, feeds: dict,
                    out_dir: Path) -> tuple[dict[str, dict], dict[str, Any]]:
    """ORT's profiler on warm runs of the reference, of the fastest variant that ran and of
    the fastest the ruler passes, where that is another (what ships: where its time goes is
    what the next rewrite has to remove; labkit.measure.profile: time by op type and by module
    family, labkit.optimize.families.family_of), and the speed bound the reference's and the
    fastest one's profiles give."""
    timed = sorted((r["vs_baseline"]["ratio"], n) for n, r in rows.items()
                   if n != REFERENCE and r.get("vs_baseline") and r.get("ok"))
    passing = [n for _, n in timed if (rows[n].get("quality") or {}).get("verdict") == "pass"]
    picks = dict.fromkeys(([timed[-1][1]] if timed else []) + passing[-1:])
    models = {REFERENCE: reference, **{n: Path(rows[n]["path"]) for n in picks}}
    profiles = {n: profiling.profile_session(pth, session_cfg, feeds, runs=2, warmup=1,
                                             out_dir=out_dir, family_of=family_of)
                for n, pth in models.items()}
    other = next((p for n, p in profiles.items() if n != REFERENCE), None)
    bound = profiling.speed_bound(profiles[REFERENCE], other)
    # against the physical limit (issue #33): the convolutions' achieved rate per arithmetic
    # over this machine's measured GEMM peak for it, at the same threads
    bound["gemm_peak"] = peak.gemm_peak(session_cfg)
    for p in profiles.values():
        p["conv_of_peak"] = peak.of_peak(p["conv_work"], bound["gemm_peak"])
    return profiles, bound


# -- the stage: run and record --------------------------------------------------------------------
def run(cfg: LabConfig, st, *, reference: str | None = None, baseline: str = "int8",
        variants: Sequence = (), heldout_ids: Sequence[str] | None = None,
        calibration_ids: Sequence[str] | None = None, token_lengths: Sequence[int] = (25, 120, 250),
        speed_tokens: int = 120, rounds: int | None = None, warmup: int = 1,
        with_dnsmos: bool = True, sensitivity_families: Sequence[str] = (),
        sensitivity_spec: dict | None = None, sensitivity_ids: Sequence[str] | None = None,
        mixed_budget_db: float | None = None, sensitivity_grain: str = "block", profile_tokens: int = 0,
        listen_id: str | None = None) -> QuantizationResult:
    """The whole stage: the reference and the corpora, the builds, the sensitivity sweep
    and the mixed variant (on the development set), the bench (quality, and speed against
    ``baseline`` through the one instrument), the Pareto front, the listening page, the
    profile and the targets' selection. Files go under the stage's folder (``st.path``)."""
    if not baseline:
        raise ValueError("baseline: the shipped variant (e.g. 'int8') every variant is timed against")
    notes: list[str] = []
    ref = assets.reference(cfg) if reference is None else assets.ModelRef(
        reference, assets.model_path(cfg, reference), "chosen by parameter")
    assets.require(ref.path, "reference model")
    voices = VoiceBank.load(assets.voices_path(cfg))
    # reported figures on the held-out set; choosing (sensitivity, block lists) on the dev set
    held_c = corpora.load("heldout", purpose="report")
    held = corpora.prepare(held_c.select(ids=heldout_ids))
    cal = corpora.prepare(corpora.load("calibration", purpose="calibrate").select(ids=calibration_ids))
    dev_c = corpora.load("dev", purpose="choose")
    dev = corpora.prepare(dev_c.select(ids=sensitivity_ids))
    # a mixed set is measured as a whole on the whole development set
    dev_all = dev if sensitivity_ids is None else corpora.prepare(dev_c.select())
    corpora_info = {
        "heldout": {p.utt.id: p.n_tokens for p in held},
        "calibration": {p.utt.id: p.n_tokens for p in cal},
        "dev": {p.utt.id: p.n_tokens for p in dev},
        "overlap": {d: corpora.overlap(corpora.load(d), held_c) for d in ("calibration", "dev")}}

    builder = quantize.Builder(ref.path, st.path("models"), calibration=cal, voices=voices)
    spec = dict(sensitivity_spec or {"recipe": "static", "calibration": "minmax"})
    built, sens, plan = build_variants(builder, variants, sensitivity_families, spec, cfg.session,
                                       dev, voices, ref.path, mixed_budget_db, notes, grain=sensitivity_grain,
                                       verify_on=dev_all)
    freed = builder.release()

    # every model as its copy with word timings: each word checked in the audio
    cache = Path(cfg.resolve(cfg.artifacts_dir)) / "cache"
    cands = [Candidate(baseline, assets.model_path(cfg, baseline), "shipped")]
    cands += [Candidate(n, b.path, json.dumps(b.spec.to_dict())) for n, b in built.items()
              if n != baseline]
    untimed = speed_skips(built)
    if untimed:
        notes.append(f"speed of {', '.join(untimed)} not measured: {next(iter(untimed.values()))} "
                     "(quality measured)")
    bench = run_bench(timed_candidate(Candidate(REFERENCE, ref.path, ref.note), cache / "durations"),
                      [timed_candidate(c, cache / "durations") for c in cands], cfg.session, held,
                      voices, token_lengths, baseline, rounds=rounds, warmup=warmup,
                      speed_tokens=speed_tokens, with_dnsmos=with_dnsmos, dev=dev, untimed=untimed)
    rows = bench["rows"]
    ref_wer = ruler_quality(rows, ref.path, bench["audio"], held, dev, voices, cfg.session, cache,
                            dev_audio=bench["dev_audio"])
    rows[REFERENCE]["wer"] = ref_wer

    # speed against the ruler's distance (held-out, worst utterance, like with like)
    pts = {n: (r["speedup"], r["quality"]["masked_lsd_db"]) for n, r in rows.items()
           if n != REFERENCE and r.get("speedup") is not None
           and (r.get("quality") or {}).get("masked_lsd_db") is not None}
    front = pareto_front({n: v for n, v in pts.items() if rows[n]["ok"]})

    lid = listen_id or next((p.utt.id for p in held if p.utt.size == "medium"), held[0].utt.id)
    utt = next(p for p in held if p.utt.id == lid)
    clips = {n: a[lid] for n, a in bench["audio"].items() if lid in a}
    page = listening_page(st.path("listening"), utt.utt.text, lid, clips, rows)

    profiles, bound = ({}, None) if not profile_tokens else profile_fastest(
        rows, ref.path, cfg.session, token_probe(held, profile_tokens, voices), st.path("profiles"))

    result = QuantizationResult(
        reference={"variant": ref.variant, "path": str(ref.path), "note": ref.note},
        baseline=baseline, corpora=corpora_info, builds={k: v.to_dict() for k, v in built.items()},
        sensitivity=({"spec": spec, "grain": sensitivity_grain, "families": sens, "mixed_plan": plan,
                      "dev_ids": [p.utt.id for p in dev]} if sensitivity_families else None),
        rows=rows, comparisons=bench["comparisons"], speed_tokens=bench["speed_tokens"],
        token_lengths=sorted(bench["comparisons"]), pareto_points=pts, pareto_front=front,
        listen={"id": lid, "text": utt.utt.text, "page": str(page)}, clips=clips,
        profiles=profiles, speed_bound=bound,
        selection=select({n: r for n, r in rows.items() if n != REFERENCE}, baseline), notes=notes)
    # what the journal's selection would take from this stage (labkit.lab.selection)
    top = rank(candidates(rows, REFERENCE, bench["comparisons"][bench["speed_tokens"]],
                          reference_variant=ref.variant, baseline_name=baseline), cfg.selection, NAME)
    result.ships = top[0]["name"] if top else baseline
    # a variant runs from its copy with the durations output (best.json's model_path); the
    # copies of those that did not pass the ruler can never ship (labkit.lab.selection) and
    # are removed (issue #31: keyed by this run's files, no later run reads them)
    failed = cannot_ship(rows, [n for n in built if n != baseline])
    freed += sum(durations.discard(built[n].path, cache / "durations") for n in failed)
    notes.append(f"removed {freed / 1e6:.0f} MB the stage reads no more: the pre-processed "
                 "reference" + (f" and the copies with durations of {', '.join(failed)}" if failed else ""))
    result.listening = side_by_side(result)
    return result


def cannot_ship(rows: dict[str, dict], names: Sequence[str]) -> list[str]:
    """Of ``names``, the variants whose rows did not pass the ruler (failed, or not judged):
    the selection never ships them (labkit.lab.selection.check_failures). A row's ``ok``
    only says the variant ran."""
    return [n for n in names if ((rows.get(n) or {}).get("quality") or {}).get("verdict") != "pass"]


def headline(result: QuantizationResult) -> dict[str, Any]:
    rows, n, base = result.rows, result.speed_tokens, result.baseline
    cmp = result.comparisons[n]
    out: dict[str, Any] = {"reference": result.reference["variant"], "baseline": base,
                           f"speed noise band (A/A) @{n} tok": [round(x, 3) for x in cmp.noise_band]}
    for name, r in rows.items():
        vb = r.get("vs_baseline")
        if name != base and vb:
            out[f"{name} speed vs {base} @{n} tok (x)"] = {
                "value": round(vb["ratio"], 3), "ci95": [round(x, 3) for x in vb["ci95"]]}
        if name == REFERENCE:
            continue
        out[f"{name} speed-up over the reference @{n} tok"] = (
            round(r["speedup"], 3) if r.get("speedup") is not None else r.get("speed_skipped"))
        q = r.get("quality") or {}
        out[f"{name} ruler (dev and held-out)"] = q.get("verdict") or "not measured"
        # a graph not cut like the reference is judged on its whole outputs
        read = ("vocoder at the reference's alignment"
                if (r.get("ruler") or {}).get("like_with_like", True) else "whole output")
        for key, label in (("masked_lsd_db", "masked LSD dB"), ("masked_lsd_peak_db", "worst frame dB"),
                           ("gap_ms", "longest gap ms")):
            if q.get(key) is not None:
                out[f"{name} {label} (worst held-out, {read})"] = round(q[key], 2)
        if q.get("max_token_shift") is not None:
            out[f"{name} durations: largest token shift (frames), tokens moved"] = (
                f"{q['max_token_shift']}, {q['tokens_moved']:.1%}")
        if q.get("wer") is not None:
            out[f"{name} word error rate (held-out; reference {q['wer_reference']:.3f}, "
                f"allowed +{q.get('wer_allowed_increase', vocoder.MAX_WER_INCREASE):.3f})"] = round(q["wer"], 3)
        if r.get("lsd_db") is not None:
            out[f"{name} standard LSD dB (worst held-out, whole output; reported)"] = round(r["lsd_db"], 2)
        out[f"{name} ok"] = bool(r.get("ok"))
    out.update(mixed_headline(result))
    stop = stopped_by(result)
    if stop:  # issue #33's fallback: the layers that stop the fast pick, from the bench
        out[f"what stops {stop['on_top_of']}: the layers {stop['variant']} adds, which fail the ruler"] = (
            ", ".join(stop["adds"]))
    out["fast variant (fastest that passes the ruler)"] = (result.selection.get("fast") or {}).get(
        "variant", "none")
    out.update(conv_rates(result))
    return out


def mixed_headline(result: QuantizationResult) -> dict[str, Any]:
    """The mixed set the sensitivity sweep planned: how many families (layers) it
    quantizes, its estimate beside what the set measured as a whole, and the family whose
    addition was measured to fail it (issue #33: what stops the speed)."""
    sens = result.sensitivity or {}
    plan = sens.get("mixed_plan") or {}
    if not plan:
        return {}
    grain = sens.get("grain", "block")
    v = plan.get("verified") or {}
    passed = [t for t in v.get("trail") or [] if t.get("passed")]
    out: dict[str, Any] = {
        f"mixed: {grain}s quantized of {len(sens.get('families') or {})} swept": len(plan.get("quantize") or [])}
    if plan.get("estimated_time_share") is not None:
        out["mixed: planned share of the kernel time, estimated masked LSD dB"] = [
            round(plan["estimated_time_share"], 3), round(plan["estimated_masked_lsd_db"], 2)]
    if passed:
        last = max(passed, key=lambda t: t["families"])
        out["mixed: measured as a whole (dev): masked LSD dB, worst frame dB"] = [
            round(last[k], 2) if last.get(k) is not None else None
            for k in ("masked_lsd_db", "masked_lsd_peak_db")]
    if v.get("stops_at"):
        out[f"mixed: the {grain} that stops it (adding it failed the ruler)"] = v["stops_at"]
    for part, r in (plan.get("stops_at_parts") or {}).items():
        if r.get("masked_lsd_db") is not None:
            out[f"mixed: what stops it, masked LSD dB with its {part} in int8"] = round(r["masked_lsd_db"], 3)
    return out


def conv_rates(result: QuantizationResult) -> dict[str, str]:
    """Per profiled model and arithmetic: the convolutions' achieved rate and its share of
    this machine's measured GEMM peak for that arithmetic (labkit.measure.peak)."""
    gemm = (result.speed_bound or {}).get("gemm_peak")
    if not gemm:
        return {}
    out = {}
    for name, p in result.profiles.items():
        for kind, w in (p.get("conv_work") or {}).items():
            unit = "GFLOP/s" if kind == "fp32" else "GOP/s"
            share = (p.get("conv_of_peak") or {}).get(kind)
            out[f"{name} convolutions, {kind}: {unit} (share of this machine's {kind} GEMM, "
                f"{gemm[kind]['gops_per_s']:.0f} {unit})"] = (
                f"{w['gops_per_s']:.1f} ({share:.0%})" if share is not None else f"{w['gops_per_s']:.1f}")
    return out


def record(st, result: QuantizationResult) -> None:
    n = result.speed_tokens
    st.metrics["reference"] = result.reference
    st.metrics["corpora"] = result.corpora
    st.metrics["builds"] = result.builds
    st.metrics["dnsmos_note"] = dnsmos.NOTE
    if result.sensitivity is not None:
        st.metrics["sensitivity"] = result.sensitivity
    st.metrics["bench"] = result.rows
    st.metrics["comparisons"] = {
        f"warm session.run, {k} tokens{' (the criterion)' if k == n else ''}": c.to_dict()
        for k, c in result.comparisons.items()}
    st.metrics["pareto_front"] = result.pareto_front
    st.metrics["listening_page"] = str(Path(result.listen["page"]).relative_to(st.dir))
    if result.listening is not None:
        st.metrics["listen"] = result.listening.to_dict()
        listening.write(result.listening, st.dir)
    st.metrics["profile"] = {k: {kk: vv for kk, vv in p.items() if kk != "file"}
                             for k, p in result.profiles.items()}
    if result.speed_bound is not None:
        st.metrics["speed_bound"] = result.speed_bound
    st.metrics["selection"] = result.selection
    st.metrics["headline"] = headline(result)
    st.metrics["candidates"] = candidates(result.rows, REFERENCE, result.comparisons[n],
                                          reference_variant=result.reference["variant"],
                                          baseline_name=result.baseline)
    for text in result.notes:
        st.note(text)
    st.metrics["quality_definition"] = ruler.definition()
    st.note(f"speed: every variant against {result.baseline} on the warm wall time of one "
            f"session.run at {n} tokens (labkit.measure.compare); the other lengths are reported. "
            "Quality: the ruler's verdict on the vocoder at the reference's alignment, on the "
            "development and the held-out set (a variant must pass both); standard figures "
            "are reported beside it")
