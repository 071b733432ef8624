"""Stage 02: which graph and session settings are fastest, warm and cold.

* :func:`screen_candidates` -- the default session plus one change at a time.
* labkit.measure.session_settings.screen -- every candidate's session alive at once, timed
  by the one instrument (labkit.measure.compare: interleaved rounds, paired ratios,
  bootstrap intervals, an A/A control) on real inputs of ~N tokens
  (labkit.measure.session_settings.token_inputs).
* :func:`combine` -- a change is taken only when its interval lies wholly above the
  journal's threshold (``SelectionConfig.clears``: 1.0 + min_gain) and its drift is small.
* :func:`run_variant` -- the default against the combination of what was taken, at every
  length, warm and cold (fresh processes, ``python -m labkit.optimize.convert cold``),
  profiled.
* :func:`run` / :func:`record` -- what the notebook calls (labkit.lab.protocol).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from labkit import progress
from labkit.host import machine
from labkit.config import ConfigError, LabConfig, SelectionConfig, SessionConfig
from labkit.engine import assets, graph_cache
from labkit.engine.registries import check_session
from labkit.kokoro import SAMPLE_RATE
from labkit.engine.sessions import ineffective_settings, n_tokens
from labkit.measure import profile as profiling
from labkit.measure.compare import compare, compare_cold
from labkit.measure.session_settings import (SessionChange, cold_ceiling, cold_command, cold_summary,
                                            open_session, runner, screen, token_inputs)
from labkit.lab.conversion_result import ConversionResult, VariantRecord
from labkit.lab.loaded_screen import LOADS, screens, settle
from labkit.lab.selection import quality_entry
from labkit.quality import lsd_db, ruler
from labkit.tables import fixed, interval

NAME = "02_ort_conversion"
#: the stage's criterion for the journal: warm seconds per inference, judged at the length
#: where the combination's interval is least favourable
CRITERION = "seconds"


def screen_candidates(base: SessionConfig, levels=(), threads=(), modes=(),
                      toggles=(), rewrites=(), all_rewrites: bool = False,
                      ort_format: bool = True, arch: str | None = None) -> list[SessionChange]:
    """The default plus one change at a time. ``toggles``: boolean SessionConfig fields
    to flip (enable_mem_arena, enable_mem_pattern, denormal_as_zero, allow_spinning). A toggle that does
    nothing on this machine's architecture (``arch``, default platform.machine(): e.g.
    denormal_as_zero on ARM64) is refused: its timing would be noise."""
    arch = arch or machine.current().machine
    noops = ineffective_settings(toggles, arch)
    if noops:
        name, why = next(iter(noops.items()))
        raise ConfigError(f"toggle {name} does nothing on {arch}: {why}; timing it measures "
                          "noise, so drop it from this batch's 02_ort_conversion toggles")
    out = [SessionChange("default", base, {})]

    def add(label, **changes):
        s = dataclasses.replace(base, **changes)
        s.validate()
        check_session(s)  # the rewrites asked for are ones the engine has
        out.append(SessionChange(label, s, changes))

    for level in levels:
        if level != base.graph_optimization_level:
            add(f"level={level}", graph_optimization_level=level)
    for n in threads:
        if n != machine.session_threads(base):
            add(f"threads={n}", intra_op_threads=n)
    for mode in modes:
        if mode != base.execution_mode:
            add(f"mode={mode}", execution_mode=mode,
                inter_op_threads=max(base.inter_op_threads, 2) if mode == "parallel" else 1)
    for name in toggles:
        add(f"{name}={not getattr(base, name)}", **{name: not getattr(base, name)})
    if ort_format:
        add("ort_format", use_ort_format=True)
    for r in rewrites:
        add(f"rewrite={r}", rewrites=[r], use_ort_format=True)
    if all_rewrites and len(rewrites) > 1:
        add("rewrite=all", rewrites=list(rewrites), use_ort_format=True)
    return out


def screened_toggles(toggles, arch: str) -> tuple[list[str], dict[str, str]]:
    """(the toggles worth timing on ``arch``, {toggle: why it is not} for the others)."""
    noops = ineffective_settings(toggles, arch)
    return ([t for t in toggles if t not in noops],
            {name: f"does nothing on {arch}: {why}" for name, why in noops.items()})


def combine(base: SessionConfig, changes: list[SessionChange], rows: dict[str, dict],
            max_lsd_db: float = 1.0, rules: SelectionConfig | None = None
            ) -> tuple[SessionConfig, list[str]]:
    """The default with every change that was earned in the screen: its 95 % interval wholly
    above the journal's threshold (``rules.clears``: 1.0 + min_gain) and its audio's drift from
    the default's (LSD) within ``max_lsd_db``. Changes of one field
    keep the one with the highest low end. Returns the settings and the labels taken."""
    rules = rules or SelectionConfig()
    fields: dict[str, tuple[float, object]] = {}
    taken = []
    for c in changes:
        r = rows.get(c.label, {})
        if c.label == "default" or "ci95" not in r:
            continue
        if not (rules.clears(r["ci95"]) and r["drift_vs_default_db"] <= max_lsd_db):
            continue
        taken.append(c.label)
        for name, value in c.changes.items():
            if name == "rewrites":
                continue
            if name not in fields or r["ci95"][0] > fields[name][0]:
                fields[name] = (r["ci95"][0], value)
    rewrites = [r for c in changes if c.label in taken and c.label.startswith("rewrite=")
                and c.label != "rewrite=all" for r in c.changes["rewrites"]]
    changes = {k: v for k, (_, v) in fields.items()}
    if rewrites:
        changes["rewrites"] = rewrites
        changes["use_ort_format"] = True
    best = dataclasses.replace(base, **changes)
    best.validate()
    return best, taken


def run_variant(cfg: LabConfig, variant: str, *, levels=(), thread_counts=(), modes=(),
                toggles=(), rewrites=(), loaded_toggles=(), load_processes: int = 1,
                token_lengths=(30, 120, 250, 500),
                screen_length: int = 120, rounds: int | None = None, warmup: int = 1,
                cold_rounds: int | None = None, cold_tokens: int = 30,
                profile_tokens: int = 250, max_lsd_db: float = 1.0,
                out_dir: Path | None = None, log=progress.say, max_rounds: int | None = None
                ) -> VariantRecord:
    """Screen one-change candidates at ``screen_length``, combine what was earned (and
    the ``loaded_toggles``, screened idle and beside ``load_processes`` busy processes,
    labkit.lab.loaded_screen), then time default vs best at every length (warm) and in fresh processes (cold), and profile
    both. Returns a JSON-able record (plus ``_audio`` for players)."""
    model = assets.model_path(cfg, variant)
    if not model.exists():
        return {"skipped": f"model file {model} for variant {variant!r} is not provisioned"}
    cache_dir = graph_cache.ort_cache_dir(cfg)
    base = cfg.session
    lengths = sorted(set(token_lengths) | {screen_length, cold_tokens, profile_tokens})
    feeds = token_inputs(cfg, lengths)
    rec: VariantRecord = {"model": str(model), "tokens": {str(n): n_tokens(feeds[n]) for n in lengths}}
    comparisons: dict[str, dict] = {}

    arch = machine.current().machine
    toggles, not_screened = screened_toggles(toggles, arch)
    if not_screened:  # a notebook default made for x86, run on the Mac: said, not timed
        rec["not_screened"] = not_screened
        log(f"[{variant}] not screened on {arch}: {', '.join(not_screened)} (no effect there)")
    log(f"[{variant}] screening at ~{screen_length} tokens")
    cands = screen_candidates(base, levels=levels, threads=thread_counts, modes=modes,
                              toggles=toggles, rewrites=rewrites, all_rewrites=True, arch=arch)
    # rounds end once every interval is decided against the journal's bar (compare.decided)
    decide_at = cfg.selection.threshold
    scr = screen(model, cands, feeds[screen_length], cache_dir, rounds, warmup, log, max_rounds,
                 decide_at)
    comparisons[f"{variant}: screen at {n_tokens(feeds[screen_length])} tokens"] = scr["comparison"].to_dict()
    rec["screen"] = scr["rows"]
    rec["screen_noise_band"] = list(scr["comparison"].noise_band)
    best, taken = combine(base, cands, scr["rows"], max_lsd_db=max_lsd_db, rules=cfg.selection)
    rec["rejected"] = {k: v for k, v in scr["rows"].items() if k != "default" and k not in taken}
    if loaded_toggles:
        flips = screen_candidates(base, toggles=loaded_toggles, ort_format=False, arch=arch)
        two = screens(model, flips, feeds[screen_length], cache_dir, rounds, warmup, log,
                      max_rounds, decide_at, load_processes)
        for load in LOADS:
            comparisons[f"{variant}: loaded toggles at {n_tokens(feeds[screen_length])} tokens, "
                        f"{load}"] = two[load]["comparison"].to_dict()
        best, taken, why = settle(best, taken, flips, two["idle"]["rows"], two["loaded"]["rows"],
                                  max_lsd_db, cfg.selection)
        rec["loaded_screen"] = {**{load: two[load]["rows"] for load in LOADS},
                                "noise_band": {load: list(two[load]["comparison"].noise_band)
                                               for load in LOADS},
                                "processes": load_processes, "verdicts": why}
    rec["taken"] = taken

    log(f"[{variant}] default vs best at {list(token_lengths)} tokens")
    sessions = {"default": open_session(model, base, cache_dir),
                "best": open_session(model, best, cache_dir)}
    second_default = open_session(model, base, cache_dir)  # the A/A control's own session
    rec["warm"], rec["_audio"] = {}, {"default": {}, "best": {}}
    for n in progress.steps(list(token_lengths), "token lengths"):
        cmp = compare({k: runner(s, feeds[n]) for k, s in sessions.items()}, "default",
                      warmup=warmup, rounds=rounds, max_rounds=max_rounds, keep=lambda y: y,
                      control=runner(second_default, feeds[n]), decide_at=decide_at)
        for label in ("default", "best"):
            rec["_audio"][label][n] = cmp.kept[label][-1]
        secs = rec["_audio"]["default"][n].size / SAMPLE_RATE
        rec["warm"][str(n)] = {
            "tokens": n_tokens(feeds[n]), "audio_s": secs,
            "default_s": cmp.median("default"), "best_s": cmp.median("best"),
            "rtf_default": cmp.median("default") / max(secs, 1e-9),
            "rtf_best": cmp.median("best") / max(secs, 1e-9),
            "speedup": cmp.ratio("best"), "ci95": list(cmp.ci95("best")),
            "noise_band": list(cmp.noise_band),
            "drift_vs_default_db": lsd_db(rec["_audio"]["default"][n], rec["_audio"]["best"][n],
                                          allow_length_mismatch=True),
            # what a listener would hear change (labkit.quality.ruler): the selection's check
            "ruler": ruler.verdict(ruler.measure(rec["_audio"]["default"][n], rec["_audio"]["best"][n],
                                                 standard_figures=False)).to_dict()}
        cmp.kept = {}
        comparisons[f"{variant}: default vs best, {n_tokens(feeds[n])} tokens"] = cmp.to_dict()
    del sessions, second_default

    log(f"[{variant}] profiling at ~{profile_tokens} tokens")
    prof_dir = Path(out_dir or cache_dir) / f"profile-{variant}"
    rec["profile"] = {}
    for label, s in (("default", base), ("best", best)):
        path = graph_cache.cached_model_for(model, s, cache_dir)
        rec["profile"][label] = profiling.profile_session(
            path, graph_cache.load_config(s, path != model), feeds[profile_tokens], runs=1, warmup=1,
            out_dir=prof_dir / label)

    log(f"[{variant}] cold starts in fresh processes")
    toks = [int(t) for t in next(iter(feeds[cold_tokens].values()))[0, 1:-1]]
    configs = {"default": base, "best": best}
    if best == base:  # the cold start's own question: does the ORT format help?
        configs["ort_format"] = dataclasses.replace(base, use_ort_format=True)
    for s in configs.values():
        graph_cache.cached_model_for(model, s, cache_dir)
    cold_cmp = compare_cold({k: cold_command(model, s, cache_dir, toks, assets.voices_path(cfg),
                                             cfg.voice) for k, s in configs.items()},
                            "default", rounds=cold_rounds)
    rec["cold"] = cold_summary(cold_cmp)
    rec["cold_ratio"] = {k: {"ratio": cold_cmp.ratio(k), "ci95": list(cold_cmp.ci95(k))}
                         for k in configs if k != "default"}
    rec["cold_ceiling"] = cold_ceiling({"default": rec["cold"]["default"],
                                        "best": rec["cold"]["best"]})
    cold_cmp.kept = {}
    comparisons[f"{variant}: cold start (first audio, fresh processes)"] = cold_cmp.to_dict()
    rec["comparisons"] = comparisons
    rec["best_session"] = dataclasses.asdict(best)
    rec["max_lsd_db"] = max_lsd_db
    rec["targets"] = targets(rec)
    return rec


def targets(rec: dict[str, Any]) -> dict[str, bool]:
    """Each target, met or not, on a variant's record: the best session's cold start at
    least 2x sooner than the default's (fresh processes); faster beyond the noise at every
    warm length (every interval's low end above 1.0); its drift from the default within
    ``rec["max_lsd_db"]`` at every length. Nothing measured is not met."""
    warm = list(rec["warm"].values())
    best = rec["cold_ratio"].get("best")
    return {
        "cold_start_2x": best is not None and best["ratio"] >= 2.0,
        "faster_at_every_length": bool(warm) and min(w["ci95"][0] for w in warm) > 1.0,
        "drift_within": bool(warm) and all(w["drift_vs_default_db"] <= rec["max_lsd_db"] for w in warm),
    }


def run(cfg: LabConfig, st, *, variants=("int8",), levels=(), thread_counts=(), modes=(),
        toggles=(), rewrites=(), loaded_toggles=(), load_processes: int = 1, token_lengths=(30, 120, 250, 500), screen_length: int = 120,
        rounds: int | None = None, warmup: int = 1, cold_rounds: int | None = None,
        cold_tokens: int = 30, profile_tokens: int = 250, max_lsd_db: float = 1.0,
        max_rounds: int | None = None) -> ConversionResult:
    """Every variant through :func:`run_variant`; variant -> its record."""
    return {v: run_variant(cfg, v, levels=levels, thread_counts=thread_counts, modes=modes,
                           toggles=toggles, rewrites=rewrites, loaded_toggles=loaded_toggles,
                           load_processes=load_processes, token_lengths=token_lengths,
                           screen_length=screen_length, rounds=rounds, warmup=warmup,
                           cold_rounds=cold_rounds, cold_tokens=cold_tokens,
                           profile_tokens=profile_tokens, max_lsd_db=max_lsd_db, out_dir=st.dir,
                           max_rounds=max_rounds)
            for v in progress.steps(list(variants), "variants")}


def missed_target_notes(variant: str, r: dict) -> list[str]:
    """Why a target was missed, in the record's own figures."""
    notes = []
    if not r["targets"]["cold_start_2x"] and "best" in r["cold"]:
        c = r["cold"]
        notes.append(
            f"{variant}: cold start {r['cold_ratio']['best']['ratio']:.2f}x, not 2x: first audio is "
            f"session creation ({c['default']['create']:.2f} s default, {c['best']['create']:.2f} s "
            f"best) plus one inference of the primer ({c['best']['first_run']:.2f} s); even a "
            f"session that cost nothing to create would give at most {r['cold_ceiling']:.2f}x")
    if not r["targets"]["faster_at_every_length"]:
        slow = [f"{w['tokens']} tok {w['speedup']:.2f}x {interval(w['ci95'], 2)}"
                for w in r["warm"].values() if not w["ci95"][0] > 1.0]
        notes.append(f"{variant}: the best session is not faster beyond the noise at every length "
                     f"({', '.join(slow)}): " + ("nothing screened was earned, so best is the default"
                                                 if not r["taken"] else "see the screen table"))
    return notes


def candidates(measured: dict, variants: list[str], base: SessionConfig) -> list[dict]:
    """For the journal's selection (labkit.lab.selection): the main variant's default
    session (the baseline) and its combined best session. The best session's ratio and
    interval are those at the length where its interval's low end is lowest (it must be
    faster everywhere); ``quality`` is the ruler's verdict on its audio against the default
    session's at every length, ``lsd_db`` its worst standard-LSD drift (reported)."""
    v = [x for x in variants if x in measured][0]
    r = measured[v]
    warm = r["warm"]
    worst = min(warm, key=lambda n: warm[n]["ci95"][0])
    shortest = min(warm, key=lambda n: warm[n]["tokens"])
    changed = {f"session.{k}": val for k, val in r["best_session"].items() if val != getattr(base, k)}
    measured_on = [CRITERION, "quality", "cold_first_audio_s"]
    common = {"measured": measured_on, "failed_checks": []}
    default = {"name": f"{v} default session", "overrides": {}, "lsd_db": 0.0,
               "quality": quality_entry(True, basis="the default session itself"),
               "ttfa_s": warm[shortest]["default_s"],
               "rtf": float(np.median([w["rtf_default"] for w in warm.values()])),
               "cold_first_audio_s": r["cold"]["default"]["first_audio"],
               "baseline": True, "criterion": CRITERION, "ci95": warm[worst]["noise_band"], **common}
    out = [default]
    if changed:
        out.append({"name": f"{v} best session ({', '.join(r['taken'])})", "overrides": changed,
                    "lsd_db": max(w["drift_vs_default_db"] for w in warm.values()),
                    "quality": quality_entry(
                        all(w["ruler"]["verdict"] == "pass" for w in warm.values()),
                        [f"{w['tokens']} tokens: {x}" for w in warm.values() for x in w["ruler"]["reasons"]],
                        "the ruler on this session's audio against the default session's, at "
                        "every warm length (lsd_db: the standard LSD drift, reported)"),
                    "ttfa_s": warm[shortest]["best_s"],
                    "rtf": float(np.median([w["rtf_best"] for w in warm.values()])),
                    "cold_first_audio_s": r["cold"]["best"]["first_audio"],
                    "criterion": CRITERION, "ratio": warm[worst]["speedup"],
                    "ci95": warm[worst]["ci95"], **common})
    return out


def headline(measured: dict) -> dict:
    out = {}
    for v, r in measured.items():
        for label, c in r["cold_ratio"].items():
            out[f"{v} cold start {label} / default (x)"] = {"value": round(c["ratio"], 3),
                                                            "ci95": [round(x, 3) for x in c["ci95"]]}
        out[f"{v} cold first audio default (s)"] = round(r["cold"]["default"]["first_audio"], 3)
        out[f"{v} cold start ceiling, create free (x)"] = round(r["cold_ceiling"], 3)
        for w in r["warm"].values():
            out[f"{v} warm speedup {w['tokens']} tok (x)"] = {
                "value": round(w["speedup"], 3), "ci95": [round(x, 3) for x in w["ci95"]]}
        out[f"{v} max drift best vs default session (LSD dB)"] = round(
            max(w["drift_vs_default_db"] for w in r["warm"].values()), 3)
        out[f"{v} vocoder share of kernel time"] = round(r["profile"]["default"]["share"]["vocoder"], 3)
        out[f"{v} taken"] = ", ".join(r["taken"]) or "none"
        out[f"{v} screen noise band (A/A)"] = [round(x, 3) for x in r["screen_noise_band"]]
        ls = r.get("loaded_screen", {})
        for label, row in ls.get("loaded", {}).items():
            if label != "default" and "ci95" in row:
                out[f"{v} {label} beside {ls['processes']} busy (x)"] = {
                    "value": round(row["speedup"], 3), "ci95": [round(x, 3) for x in row["ci95"]]}
        for name, ok in r["targets"].items():
            out[f"{v} target {name}"] = "met" if ok else "NOT met"
    return out


def record(st, result: ConversionResult) -> dict:
    """Fill the stage record from :func:`run`'s result (skips noted, candidates, headline,
    comparisons, notes on missed targets); returns the measured variants."""
    measured = {v: r for v, r in result.items() if "skipped" not in r}
    for v, r in result.items():
        if "skipped" in r:
            st.note(f"{v}: skipped: {r['skipped']}")
    if not measured:
        st.skip("no variant could be measured: " + "; ".join(r["skipped"] for r in result.values()))
        return measured
    variants = list(result)
    st.metrics["variants"] = {v: {k: x for k, x in r.items() if not k.startswith("_") and k != "comparisons"}
                              for v, r in measured.items()}
    st.metrics["comparisons"] = {k: c for r in measured.values() for k, c in r["comparisons"].items()}
    st.metrics["candidates"] = candidates(measured, variants, st.cfg.session)
    st.metrics["headline"] = headline(measured)
    for v, r in measured.items():
        for note in missed_target_notes(v, r):
            st.note(note)
    return measured


def plot(measured: dict, plt):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for v, r in measured.items():
        ws = sorted(r["warm"].values(), key=lambda w: w["tokens"])
        toks = [w["tokens"] for w in ws]
        axes[0].errorbar(toks, [w["speedup"] for w in ws],
                         yerr=[[w["speedup"] - w["ci95"][0] for w in ws],
                               [w["ci95"][1] - w["speedup"] for w in ws]], fmt="o-", label=v)
        axes[1].plot(toks, [w["rtf_default"] for w in ws], "o--", label=f"{v} default")
        axes[1].plot(toks, [w["rtf_best"] for w in ws], "o-", label=f"{v} best")
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set(xlabel="tokens", ylabel="default / best (x), 95 % interval",
                title="warm speed-up (paired, interleaved)")
    axes[1].set(xlabel="tokens", ylabel="RTF (median)", title="real-time factor")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def screen_table(r: dict) -> str:
    rows = ["| candidate | median s | speed-up | 95 % interval | drift (LSD dB) | taken | note |",
            "|---|---|---|---|---|---|---|"]
    for label, v in r["screen"].items():
        ci = v.get("ci95")
        rows.append(f"| {label} | {fixed(v.get('median_s'))} | {fixed(v.get('speedup'))} | "
                    f"{'—' if not ci else f'[{ci[0]:.3f}, {ci[1]:.3f}]'} | {fixed(v.get('drift_vs_default_db'))} | "
                    f"{'yes' if label in r['taken'] else ''} | {v.get('error') or ''} |")
    return "\n".join(rows)


def final_table(r: dict) -> str:
    rows = ["| tokens | default s | best s | speed-up | 95 % interval | A/A band | RTF best | drift (LSD dB) |",
            "|---|---|---|---|---|---|---|---|"]
    for w in sorted(r["warm"].values(), key=lambda w: w["tokens"]):
        rows.append(f"| {w['tokens']} | {fixed(w['default_s'])} | {fixed(w['best_s'])} | "
                    f"{fixed(w['speedup'])} | {interval(w['ci95'], 3)} | "
                    f"{interval(w['noise_band'], 3)} | {fixed(w['rtf_best'])} | "
                    f"{fixed(w['drift_vs_default_db'])} |")
    return "\n".join(rows)


def profile_table(r: dict) -> str:
    rows = ["| session | kernel s | vocoder share | top ops |", "|---|---|---|---|"]
    for label, p in r["profile"].items():
        tops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in p["top_ops"][:5])
        rows.append(f"| {label} | {fixed(p['kernel_seconds'])} | {p['share']['vocoder']:.0%} | {tops} |")
    return "\n".join(rows)


def cold_table(r: dict) -> str:
    rows = ["| config | first audio s | create s | first run s | vs default (x) | 95 % interval |",
            "|---|---|---|---|---|---|"]
    for label, c in r["cold"].items():
        ratio = r["cold_ratio"].get(label)
        vs = fixed(ratio["ratio"]) if ratio else "1 (baseline)"
        ci = interval(ratio["ci95"]) if ratio else ""
        rows.append(f"| {label} | {fixed(c['first_audio'])} | {fixed(c['create'])} | "
                    f"{fixed(c['first_run'])} | {vs} | {ci} |")
    return "\n".join(rows)


# -- try it ----------------------------------------------------------------------------------------
#: the session settings "Try it" turns (SessionConfig fields)
TRY_SETTINGS = ("graph_optimization_level", "intra_op_threads", "execution_mode",
                "enable_mem_arena", "enable_mem_pattern", "denormal_as_zero")


def try_controls(cfg: LabConfig, variants, tokens: int) -> dict[str, Any]:
    """The "Try it" knobs (labkit.lab.page.controls), each starting at the configured value."""
    s = cfg.session
    return {"variant": list(variants) or [cfg.variant], "tokens": int(tokens),
            "graph_optimization_level": list(dict.fromkeys(
                [s.graph_optimization_level, "disable", "basic", "extended", "all"])),
            "intra_op_threads": list(dict.fromkeys([s.intra_op_threads, 1, 2, 4])),
            "execution_mode": list(dict.fromkeys([s.execution_mode, "sequential", "parallel"])),
            "enable_mem_arena": s.enable_mem_arena, "enable_mem_pattern": s.enable_mem_pattern,
            "denormal_as_zero": s.denormal_as_zero}


def try_session(cfg: LabConfig, variant: str = "int8", tokens: int = 120, rounds: int = 3,
                **settings: Any) -> list[Any]:
    """Try it: the configured session against one with ``settings`` changed (fields of
    :data:`TRY_SETTINGS`), both on the same ~``tokens``-token inputs, timed by the one
    instrument (a few interleaved rounds after a warm-up: the ratio's interval is wide), and
    the changed session's drift from the configured one's audio: the standard LSD (dB,
    reported) and the quality ruler's verdict (what the selection reads)."""
    unknown = sorted(set(settings) - set(TRY_SETTINGS))
    if unknown:
        raise ValueError(f"settings {unknown}: Try it turns {', '.join(TRY_SETTINGS)}")
    model = assets.model_path(cfg, variant)
    assets.require(model, f"model {variant}")
    changed = dataclasses.replace(cfg.session, **settings)
    changed.validate()
    feeds = token_inputs(cfg, [int(tokens)])[int(tokens)]
    cache_dir = graph_cache.ort_cache_dir(cfg)
    runs = {"configured": runner(open_session(model, cfg.session, cache_dir), feeds),
            "changed": runner(open_session(model, changed, cache_dir), feeds)}
    cmp = compare(runs, "configured", rounds=max(1, int(rounds)), warmup=1, keep=lambda y: y)
    a, b = cmp.kept["configured"][-1], cmp.kept["changed"][-1]
    verdict = ruler.verdict(ruler.measure(a, b, standard_figures=False))
    return [{"variant": variant, "tokens": n_tokens(feeds),
             "changed": {k: v for k, v in settings.items() if getattr(cfg.session, k) != v} or "nothing",
             "configured median s": round(cmp.median("configured"), 4),
             "changed median s": round(cmp.median("changed"), 4),
             "speed-up (x)": round(cmp.ratio("changed"), 3),
             "95 % interval": interval(cmp.ci95("changed")),
             "A/A noise band": interval(cmp.noise_band),
             "RTF changed": round(cmp.median("changed") / max(b.size / SAMPLE_RATE, 1e-9), 3),
             "drift: standard LSD dB (reported)": round(lsd_db(a, b, allow_length_mismatch=True), 3),
             "drift: the ruler": verdict.word + (f" ({'; '.join(verdict.reasons)})" if verdict.reasons else "")}]
