"""Stage 02's measurements: session settings side by side, warm and cold.

* :func:`token_inputs` -- real inputs of ~N tokens (held-out text through G2P).
* :func:`screen_candidates` -- the default session plus one change at a time.
* :func:`warm_side_by_side` -- every candidate's session alive at once, runs interleaved
  round-robin (this machine is shared and noisy: a ratio from interleaved runs is
  trustworthy, two separate medians are not).
* :func:`cold_side_by_side` -- fresh processes (``python -m labkit.optimize.convert cold``),
  alternating configurations: session creation + first inference.
* :func:`combine` / :func:`selection` -- the winning settings and their ratios.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labkit.optimize import convert
from labkit.config import REPO_ROOT, LabConfig, SessionConfig
from labkit.timing import Timing

SAMPLE_RATE = 24_000
#: a candidate must beat the default by more than this (relative) to count as faster
NOISE_BAND = 0.02
#: a second, identical default session in the screen: its distance from the default is the
#: screen's own noise, and a change must beat it to be taken
CONTROL = "default again (A/A control)"


@dataclass
class Candidate:
    label: str
    session: SessionConfig
    #: which SessionConfig fields differ from the default (for the table)
    changes: dict = field(default_factory=dict)


def token_inputs(cfg: LabConfig, lengths: list[int], voice: str | None = None) -> dict[int, dict]:
    """Model inputs of about each length (cut at a word boundary) from the development
    corpus's US-English sentences, phonemized by labkit.engine.g2p."""
    from labkit.measure import corpora
    from labkit.engine.g2p import VOCAB, get_g2p, tokenize
    from labkit.engine.runtime import VoiceBank
    from labkit.engine import assets

    corpus = corpora.load("dev", purpose="choose")  # it chooses session settings
    g2p = get_g2p("en-us")
    stream: list[int] = []
    for u in corpus:
        if u.lang == "en-us":
            stream += tokenize(g2p(u.text).phonemes) + [VOCAB[" "]]
    while len(stream) < max(lengths):
        stream = stream + stream
    pack = VoiceBank.load(assets.voices_path(cfg)).pack(voice or cfg.voice)
    out = {}
    for n in lengths:
        toks = stream[:n]
        spaces = [i for i, t in enumerate(toks) if t == VOCAB[" "]]
        if spaces and spaces[-1] > 0.8 * n:
            toks = toks[:spaces[-1]]
        out[n] = {"tokens": np.array([[0, *toks, 0]], dtype=np.int64),
                  "style": pack[len(toks) - 1].reshape(1, -1).astype(np.float32),
                  "speed": np.array([1.0], dtype=np.float32)}
    return out


def n_tokens(feeds: dict) -> int:
    return int(feeds["tokens"].shape[1]) - 2


def screen_candidates(base: SessionConfig, levels=(), threads=(), modes=(),
                      toggles=(), rewrites=(), all_rewrites: bool = False,
                      ort_format: bool = True) -> list[Candidate]:
    """The default plus one change at a time. ``toggles``: boolean SessionConfig fields
    to flip (enable_mem_arena, enable_mem_pattern, denormal_as_zero)."""
    out = [Candidate("default", base, {}), Candidate(CONTROL, base, {})]

    def add(label, **changes):
        s = dataclasses.replace(base, **changes)
        s.validate()
        out.append(Candidate(label, s, changes))

    for level in levels:
        if level != base.graph_optimization_level:
            add(f"level={level}", graph_optimization_level=level)
    for n in threads:
        if n != base.intra_op_threads:
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


@dataclass
class Opened:
    candidate: Candidate
    session: object
    create_s: float
    error: str = ""


def open_sessions(model_path: Path, candidates: list[Candidate], cache_dir: Path,
                  log=print) -> list[Opened]:
    """One session per candidate (cached graphs built first, outside the timing);
    a candidate that cannot be built (a rewrite failing its check) is kept with its error."""
    out = []
    for c in candidates:
        try:
            convert.cached_model_for(model_path, c.session, cache_dir)  # build, untimed
            t0 = time.perf_counter()
            sess = convert.make_cached_session(model_path, c.session, cache_dir)
            out.append(Opened(c, sess, time.perf_counter() - t0))
        except Exception as exc:  # recorded, never hidden
            log(f"{c.label}: {type(exc).__name__}: {exc}")
            out.append(Opened(c, None, float("nan"), f"{type(exc).__name__}: {exc}"))
    return out


def warm_side_by_side(opened: list[Opened], feeds_by_len: dict[int, dict],
                      repeats: int = 3, warmup: int = 1) -> dict:
    """label -> n_tokens -> {timing, audio_s, rtf} and the last audio (``audio``).
    Each round runs every (length, candidate) once, candidates in rotating order."""
    live = [o for o in opened if o.session is not None]
    samples = {o.candidate.label: {n: [] for n in feeds_by_len} for o in live}
    audio: dict[str, dict[int, np.ndarray]] = {o.candidate.label: {} for o in live}
    for r in range(warmup + repeats):
        for n, feeds in feeds_by_len.items():
            k = r % max(len(live), 1)
            for o in live[k:] + live[:k]:
                t0 = time.perf_counter()
                y = o.session.run(None, feeds)[0]
                dt = time.perf_counter() - t0
                if r >= warmup:
                    samples[o.candidate.label][n].append(dt)
                audio[o.candidate.label][n] = np.asarray(y, dtype=np.float32).ravel()
    out = {}
    for label, by_n in samples.items():
        out[label] = {}
        for n, s in by_n.items():
            t = Timing.of(s)
            secs = audio[label][n].size / SAMPLE_RATE
            out[label][n] = {"timing": t.to_dict(), "audio_s": secs,
                             "rtf": t.median / max(secs, 1e-9),
                             "tokens": n_tokens(feeds_by_len[n])}
    return {"results": out, "audio": audio}


def lsd_table(audio: dict[str, dict[int, np.ndarray]], ref_label: str = "default") -> dict:
    """label -> n -> log-spectral distance (dB) to the reference label's audio; lengths
    that differ are truncated to the shorter (recorded as ``length_diff``)."""
    from labkit.quality import lsd_db

    out = {}
    for label, by_n in audio.items():
        out[label] = {}
        for n, y in by_n.items():
            ref = audio[ref_label][n]
            out[label][n] = {"drift_vs_default_db": lsd_db(ref, y, allow_length_mismatch=True),
                             "length_diff": int(y.size) - int(ref.size)}
    return out


def speedups(results: dict, ref_label: str = "default") -> dict:
    """label -> n -> default median / candidate median (> 1 is faster)."""
    out = {}
    for label, by_n in results.items():
        out[label] = {n: results[ref_label][n]["timing"]["median"] / r["timing"]["median"]
                      for n, r in by_n.items()}
    return out


def screen_noise(speed: dict) -> float:
    """How far the A/A control (a second default session) landed from the default: the
    noise of this screen, measured rather than assumed."""
    return max((abs(v - 1.0) for v in speed.get(CONTROL, {}).values()), default=0.0)


def combine(base: SessionConfig, candidates: list[Candidate], speed: dict, lsd: dict,
            max_lsd_db: float = 1.0, band: float = NOISE_BAND) -> tuple[SessionConfig, list[str]]:
    """The default with every change that screened faster than the default by more than
    the noise (``band``, or the A/A control's distance from the default where larger) at
    every screened length and stayed within ``max_lsd_db``; ORT format is kept when within
    ``max_lsd_db`` (it is for the cold start). Conflicting changes of one field keep the
    fastest. Returns the settings and the labels taken."""
    fields: dict[str, tuple[float, object]] = {}
    taken = []
    by_label = {c.label: c for c in candidates}
    band = max(band, screen_noise(speed))
    for label, by_n in speed.items():
        c = by_label.get(label)
        if c is None or label in ("default", CONTROL) or label not in lsd:
            continue
        worst_lsd = max(v["drift_vs_default_db"] for v in lsd[label].values())
        worst_speed = min(by_n.values())
        keep = worst_lsd <= max_lsd_db and (worst_speed > 1.0 + band or label == "ort_format")
        if not keep:
            continue
        taken.append(label)
        for name, value in c.changes.items():
            if name == "rewrites":
                continue
            if name not in fields or worst_speed > fields[name][0]:
                fields[name] = (worst_speed, value)
    rewrites = [r for label in taken if label.startswith("rewrite=") and label != "rewrite=all"
                for r in by_label[label].changes["rewrites"]]
    changes = {k: v for k, (_, v) in fields.items()}
    if rewrites:
        changes["rewrites"] = rewrites
        changes["use_ort_format"] = True
    best = dataclasses.replace(base, **changes)
    best.validate()
    return best, taken


# -- cold starts in fresh processes -----------------------------------------------------
def cold_once(model_path: Path, session_cfg: SessionConfig, cache_dir: Path, tokens: list[int],
              voices_path: Path, voice: str = "af_heart", timeout: float = 300) -> dict:
    fields = {k: v for k, v in dataclasses.asdict(session_cfg).items()}
    cmd = [sys.executable, "-m", "labkit.optimize.convert", "cold", "--model", str(model_path),
           "--session", json.dumps(fields), "--cache-dir", str(cache_dir),
           "--tokens", ",".join(map(str, tokens)), "--voices", str(voices_path),
           "--voice", voice]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cold start failed: {proc.stderr.strip()[-800:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def cold_side_by_side(model_path: Path, configs: dict[str, SessionConfig], cache_dir: Path,
                      tokens: list[int], voices_path: Path, voice: str = "af_heart",
                      repeats: int = 3) -> dict:
    """label -> {first_audio: Timing, create: Timing, first_run: Timing, process_wall: Timing}.
    Cached graphs are built before timing starts; configurations alternate."""
    for s in configs.values():
        convert.cached_model_for(model_path, s, cache_dir)
    samples = {label: [] for label in configs}
    for r in range(repeats):
        labels = list(configs)
        if r % 2:
            labels.reverse()
        for label in labels:
            samples[label].append(cold_once(model_path, configs[label], cache_dir, tokens,
                                            voices_path, voice))
    out = {}
    for label, runs in samples.items():
        out[label] = {key: Timing.of([run[f"{key}_s"] for run in runs]).to_dict()
                      for key in ("first_audio", "create", "first_run", "process_wall")}
    return out


def selection(best: SessionConfig, variant: str, speed_by_n: dict, lsd_by_n: dict,
              cold_ratio: float | None) -> dict:
    fields = {k: v for k, v in dataclasses.asdict(best).items()}
    return {"variant": variant, "session": fields,
            "drift_vs_default_db": max(v["drift_vs_default_db"] for v in lsd_by_n.values()),
            "drift_vs_default_db_by_tokens": {str(n): v["drift_vs_default_db"] for n, v in lsd_by_n.items()},
            "speedup_by_tokens": {str(n): v for n, v in speed_by_n.items()},
            "cold_start_speedup": cold_ratio}


# -- one variant, end to end (what the notebook calls) -------------------------------------
def run_variant(cfg: LabConfig, variant: str, *, levels=(), thread_counts=(), modes=(),
                toggles=(), rewrites=(), token_lengths=(30, 120, 250, 500),
                screen_length: int = 120, screen_repeats: int = 2, repeats: int = 3,
                warmup: int = 1, cold_repeats: int = 3, cold_tokens: int = 30,
                profile_tokens: int = 250, max_lsd_db: float = 1.0,
                cache_dir: Path | None = None, out_dir: Path | None = None, log=print) -> dict:
    """Screen one-change candidates at ``screen_length``, combine the winners, then
    measure default vs best side by side at every length, cold (fresh processes), and
    profile both. Returns a JSON-able record (plus ``_audio`` for players)."""
    from labkit.engine import assets
    from labkit.measure import profile as profiling
    from labkit.engine.runtime import ort_cache_dir

    model = assets.model_path(cfg, variant)
    if not model.exists():
        return {"skipped": f"model file {model} for variant {variant!r} is not provisioned"}
    cache_dir = Path(cache_dir or ort_cache_dir(cfg))
    base = cfg.session
    lengths = sorted(set(token_lengths) | {screen_length, cold_tokens, profile_tokens})
    feeds = token_inputs(cfg, lengths)
    rec: dict = {"model": str(model), "tokens": {str(n): n_tokens(feeds[n]) for n in lengths}}

    log(f"[{variant}] screening at ~{screen_length} tokens")
    cands = screen_candidates(base, levels=levels, threads=thread_counts, modes=modes,
                              toggles=toggles, rewrites=rewrites, all_rewrites=True)
    opened = open_sessions(model, cands, cache_dir, log=log)
    screen = warm_side_by_side(opened, {screen_length: feeds[screen_length]},
                               repeats=screen_repeats, warmup=warmup)
    s_speed = speedups(screen["results"])
    s_lsd = lsd_table(screen["audio"])
    rec["screen"] = {
        c.label: {"changes": c.changes, "create_s": o.create_s, "error": o.error or None,
                  **({"median_s": screen["results"][c.label][screen_length]["timing"]["median"],
                      "speedup": s_speed[c.label][screen_length],
                      "drift_vs_default_db": s_lsd[c.label][screen_length]["drift_vs_default_db"]} if not o.error else {})}
        for o, c in ((o, o.candidate) for o in opened)}
    best, taken = combine(base, cands, s_speed, s_lsd, max_lsd_db=max_lsd_db)
    rec["taken"] = taken
    rec["screen_noise"] = screen_noise(s_speed)
    rec["rejected"] = {label: v for label, v in rec["screen"].items()
                       if label not in ("default", CONTROL) and label not in taken}
    del opened, screen

    log(f"[{variant}] default vs best at {list(token_lengths)} tokens")
    final = open_sessions(model, [Candidate("default", base), Candidate("best", best)],
                          cache_dir, log=log)
    warm = warm_side_by_side(final, {n: feeds[n] for n in token_lengths},
                             repeats=repeats, warmup=warmup)
    f_speed = speedups(warm["results"])
    f_lsd = lsd_table(warm["audio"])
    rec["warm"] = warm["results"]
    rec["speedup"] = f_speed["best"]
    rec["lsd"] = f_lsd["best"]
    rec["_audio"] = warm["audio"]

    log(f"[{variant}] profiling at ~{profile_tokens} tokens")
    prof_dir = Path(out_dir or cache_dir) / f"profile-{variant}"
    rec["profile"] = {}
    for o in final:
        label = o.candidate.label
        path = convert.cached_model_for(model, o.candidate.session, cache_dir)
        s = convert.load_config(o.candidate.session, path != model)
        rec["profile"][label] = profiling.profile_engine_session(
            path, s, feeds[profile_tokens], runs=1, warmup=1, out_dir=prof_dir / label)
    del final

    log(f"[{variant}] cold starts in fresh processes x{cold_repeats}")
    toks = [int(t) for t in feeds[cold_tokens]["tokens"][0, 1:-1]]
    cold = cold_side_by_side(model, {"default": base, "best": best}, cache_dir, toks,
                             assets.voices_path(cfg), cfg.voice, repeats=cold_repeats)
    rec["cold"] = cold
    rec["cold_speedup"] = cold["default"]["first_audio"]["median"] / cold["best"]["first_audio"]["median"]
    rec["cold_ceiling"] = cold_ceiling(cold)
    rec["best_session"] = dataclasses.asdict(best)
    rec["selection"] = selection(best, variant, f_speed["best"], f_lsd["best"], rec["cold_speedup"])
    rec["targets"] = {
        "cold_start_2x": rec["cold_speedup"] >= 2.0,
        "faster_at_every_length": all(v > 1.0 for v in f_speed["best"].values()),
        "drift_within": all(v["drift_vs_default_db"] <= max_lsd_db for v in f_lsd["best"].values()),
    }
    return rec


def cold_ceiling(cold: dict) -> float:
    """The most any start-up work could win: the default's first audio over the best's
    first inference alone (as if its session cost nothing to create). First audio is
    create + one inference of the primer, and no graph or session setting removes the
    inference."""
    return cold["default"]["first_audio"]["median"] / cold["best"]["first_run"]["median"]


def missed_target_notes(variant: str, r: dict) -> list[str]:
    """Why a target was missed, in the record's own figures."""
    notes = []
    if not r["targets"]["cold_start_2x"]:
        c = r["cold"]
        notes.append(
            f"{variant}: cold start {r['cold_speedup']:.2f}x, not 2x: first audio is session "
            f"creation ({c['default']['create']['median']:.2f} s default, "
            f"{c['best']['create']['median']:.2f} s best) plus one inference of the primer "
            f"({c['best']['first_run']['median']:.2f} s); even a session that cost nothing to "
            f"create would give at most {r['cold_ceiling']:.2f}x")
    if not r["targets"]["faster_at_every_length"]:
        slow = [f"{r['warm']['best'][n]['tokens']} tok {s:.2f}x" for n, s in r["speedup"].items()
                if s <= 1.0]
        notes.append(f"{variant}: the best session is not faster at every length ({', '.join(slow)}): "
                     f"no screened setting or rewrite beat the default beyond the machine's noise "
                     f"(see the screen table and the profile's top ops)")
    return notes


# -- the stage record, tables and the plot -------------------------------------------------
def stage_selection(measured: dict, variants: list[str]) -> dict:
    """The winning settings: the first measured variant in ``variants`` order (the config's
    variant first when it was measured), with the others' selections beside it."""
    order = [v for v in variants if v in measured]
    main = measured[order[0]]["selection"]
    return {**main, "by_variant": {v: measured[v]["selection"] for v in order}}


def candidates(measured: dict, variants: list[str], base: SessionConfig) -> list[dict]:
    """For the journal's selection (labkit.lab.selection): the main variant's combined best
    session first (the stage's recommendation on a tie), then its default session.
    ttfa_s = warm time at the shortest length (a primer piece), rtf = median warm RTF
    over the lengths, lsd_db = the worst distance from the default session's audio."""
    import statistics

    v = [x for x in variants if x in measured][0]
    r = measured[v]
    out = []
    for label in ("best", "default"):
        warm = r["warm"][label]
        shortest = min(warm, key=lambda n: warm[n]["tokens"])
        session = r["best_session"] if label == "best" else dataclasses.asdict(base)
        changed = {f"session.{k}": val for k, val in session.items()
                   if val != getattr(base, k)}
        out.append({
            "name": f"{v} {label} session" + (f" ({', '.join(r['taken'])})" if label == "best" and r["taken"] else ""),
            "overrides": changed,
            "ttfa_s": warm[shortest]["timing"]["median"],
            "rtf": statistics.median(x["rtf"] for x in warm.values()),
            # selection's quality field; here it is the drift from the default session
            "lsd_db": 0.0 if label == "default" else max(x["drift_vs_default_db"] for x in r["lsd"].values()),
            "quality_basis": "drift_vs_default_db: LSD of this session's audio vs the default session's",
            "cold_first_audio_s": r["cold"][label]["first_audio"]["median"],
            "failed_checks": [],
        })
    return out


def headline(measured: dict) -> dict:
    out = {}
    for v, r in measured.items():
        out[f"{v} cold start speedup (x)"] = round(r["cold_speedup"], 3)
        out[f"{v} cold first audio default (s)"] = round(r["cold"]["default"]["first_audio"]["median"], 3)
        out[f"{v} cold first audio best (s)"] = round(r["cold"]["best"]["first_audio"]["median"], 3)
        out[f"{v} cold start ceiling, create free (x)"] = round(r["cold_ceiling"], 3)
        for n, s in r["speedup"].items():
            tok = r["warm"]["best"][n]["tokens"]
            out[f"{v} warm speedup {tok} tok (x)"] = round(s, 3)
        out[f"{v} max drift best vs default session (LSD dB)"] = round(max(x["drift_vs_default_db"] for x in r["lsd"].values()), 3)
        out[f"{v} vocoder share of kernel time"] = round(r["profile"]["default"]["share"]["vocoder"], 3)
        out[f"{v} taken"] = ", ".join(r["taken"]) or "none"
        out[f"{v} screen noise, A/A control (x)"] = round(1.0 + r.get("screen_noise", 0.0), 3)
        for name, ok in r["targets"].items():
            out[f"{v} target {name}"] = "met" if ok else "NOT met"
    return out


def record(st, records: dict, variants: list[str], plt) -> dict:
    """Fill the stage record from ``run_variant`` results (skips noted, selection,
    headline, the plot saved as speed.png); returns the measured variants."""
    measured = {v: r for v, r in records.items() if "skipped" not in r}
    for v, r in records.items():
        if "skipped" in r:
            st.note(f"{v}: skipped: {r['skipped']}")
    if not measured:
        st.skip("no variant could be measured: "
                + "; ".join(r["skipped"] for r in records.values()))
        return measured
    st.metrics["selection"] = stage_selection(measured, variants)
    st.metrics["candidates"] = candidates(measured, variants, st.cfg.session)
    st.metrics["headline"] = headline(measured)
    for v, r in measured.items():
        for note in missed_target_notes(v, r):
            st.note(note)
    fig = plot(measured, plt)
    fig.savefig(st.path("speed.png"), dpi=110, bbox_inches="tight")
    return measured


def plot(measured: dict, plt):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for v, r in measured.items():
        ns = sorted(r["speedup"], key=int)
        toks = [r["warm"]["best"][n]["tokens"] for n in ns]
        axes[0].plot(toks, [r["speedup"][n] for n in ns], "o-", label=v)
        for label, style in (("default", "--"), ("best", "-")):
            axes[1].plot(toks, [r["warm"][label][n]["rtf"] for n in ns], "o" + style,
                         label=f"{v} {label}")
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set(xlabel="tokens", ylabel="default / best (x)", title="warm speedup (side by side)")
    axes[1].set(xlabel="tokens", ylabel="RTF (median)", title="real-time factor")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def _fmt(x, nd=3):
    return "—" if x is None or (isinstance(x, float) and x != x) else f"{x:.{nd}f}"


def screen_table(r: dict) -> str:
    rows = ["| candidate | median s | speedup | drift vs default (LSD dB) | create s | taken | note |",
            "|---|---|---|---|---|---|---|"]
    for label, v in r["screen"].items():
        rows.append(f"| {label} | {_fmt(v.get('median_s'))} | {_fmt(v.get('speedup'))} | "
                    f"{_fmt(v.get('drift_vs_default_db'))} | {_fmt(v.get('create_s'), 2)} | "
                    f"{'yes' if label in r['taken'] else ''} | {v.get('error') or ''} |")
    return "\n".join(rows)


def final_table(r: dict) -> str:
    rows = ["| tokens | default median s | default p90 | best median s | best p90 | "
            "speedup | RTF default | RTF best | drift vs default (LSD dB) |", "|---" * 9 + "|"]
    for n in sorted(r["speedup"], key=int):
        d, b = r["warm"]["default"][n], r["warm"]["best"][n]
        rows.append(f"| {b['tokens']} | {_fmt(d['timing']['median'])} | {_fmt(d['timing']['p90'])} | "
                    f"{_fmt(b['timing']['median'])} | {_fmt(b['timing']['p90'])} | "
                    f"{_fmt(r['speedup'][n])} | {_fmt(d['rtf'])} | {_fmt(b['rtf'])} | "
                    f"{_fmt(r['lsd'][n]['drift_vs_default_db'])} |")
    return "\n".join(rows)


def profile_table(r: dict) -> str:
    out = []
    for label, p in r["profile"].items():
        out.append(f"**{label}**: kernel time {p['kernel_seconds']:.3f} s; shares "
                   + ", ".join(f"{k} {v:.1%}" for k, v in p["share"].items()))
        out.append("")
        out.append("| op | seconds | share | calls |\n|---|---|---|---|")
        out += [f"| {o['op']} | {o['seconds']:.3f} | {o['share']:.1%} | {o['calls']} |"
                for o in p["top_ops"]]
        out.append("")
    return "\n".join(out)


def cold_table(r: dict) -> str:
    rows = ["| config | first audio median s | p90 | create s | first run s | process wall s |",
            "|---|---|---|---|---|---|"]
    for label, c in r["cold"].items():
        rows.append(f"| {label} | {_fmt(c['first_audio']['median'])} | {_fmt(c['first_audio']['p90'])} | "
                    f"{_fmt(c['create']['median'])} | {_fmt(c['first_run']['median'])} | "
                    f"{_fmt(c['process_wall']['median'])} |")
    rows.append(f"\ncold-start speedup (default / best, first audio): **{r['cold_speedup']:.2f}x**")
    return "\n".join(rows)
