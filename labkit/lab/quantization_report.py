"""Stage 03's report (labkit.lab.s03_quantization): the notebook's tables (sensitivity,
bench, candidates, profile), its plots (the Pareto front, each variant against the
baseline), the side-by-side listening of stock against what ships, and the "Try it" box.
Each reads a :class:`labkit.lab.quantization_result.QuantizationResult`; the generic formatters are
labkit.lab.report's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labkit.config import LabConfig
from labkit.engine import assets
from labkit.engine.graph_cache import make_session
from labkit.engine.voices import VoiceBank
from labkit.lab import listen as listening
from labkit.lab.report import figure, interval_cell, share
from labkit.lab.quantization_result import QuantizationResult
from labkit.lab.variant_choice import Targets, what_stops
from labkit.measure import corpora
from labkit.measure.variant_bench import REFERENCE
from labkit.quality import ruler


# -- tables -----------------------------------------------------------------------------------
def stopped_by(result: QuantizationResult) -> dict[str, Any] | None:
    """What stops the fast pick (issue #33), from the bench: the variant that is the pick
    plus the fewest more layers and fails the ruler (labkit.lab.variant_choice.what_stops)."""
    fast = (result.selection.get("fast") or {}).get("variant")
    return what_stops({n: b["spec"] for n, b in result.builds.items()}, result.rows, fast)


def stops_line(result: QuantizationResult) -> str:
    """:func:`stopped_by` in a sentence."""
    st = stopped_by(result)
    if not st:
        return ("no benched variant is the fast pick plus more layers: what stops it is the "
                "sensitivity sweep's to say (experiments/layers.yaml)")
    adds = (", ".join(st["adds"]) if len(st["adds"]) <= 3
            else f"{len(st['adds'])} layers ({st['adds'][0]} ... {st['adds'][-1]})")
    other = ", without its graph rewrites" if st["rewrites_differ"] else ""
    return (f"what stops {st['on_top_of']}: {adds} -- in int8 on top of its layers "
            f"({st['variant']}{other}, {_two(st['speedup'])}x the reference) the ruler fails: "
            f"masked LSD {_two(st['masked_lsd_db'])} dB, worst frame {_two(st['masked_lsd_peak_db'])} dB"
            + (f", WER {st['wer']:.3f}" if st.get("wer") is not None else "")
            + (f" ({_first(st['reasons'])})" if st.get("reasons") else ""))


def _first(reasons: list[str], n: int = 3) -> str:
    return "; ".join(reasons[:n]) + (f"; and {len(reasons) - n} more" if len(reasons) > n else "")


def _two(x: float | None) -> str:
    return "not measured" if x is None else f"{x:.2f}"


def sensitivity_table(result: QuantizationResult) -> str:
    sens = (result.sensitivity or {}).get("families") or {}
    plan = (result.sensitivity or {}).get("mixed_plan") or {}
    grain = (result.sensitivity or {}).get("grain", "block")
    chosen = set(plan.get("quantize") or [])
    lines = [f"| {grain} | ok | masked LSD dB (the ruler) | worst frame dB | "
             "share of the reference's kernel time | in the mixed set | "
             "standard LSD dB (reported) | PESQ | length changes |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {fam} | {r.get('ok')} | {figure(r.get('masked_lsd_db'))} | "
              f"{figure(r.get('masked_lsd_peak_db'))} | {figure(r.get('time_share'))} | "
              f"{'yes' if fam in chosen else ''} | {figure(r.get('lsd_db'))} | "
              f"{figure(r.get('pesq_wb'))} | {figure(r.get('length_changes'))} |" for fam, r in sens.items()]
    if sens and plan:
        lines.append(f"\nthe plan ({plan.get('search')}): {figure(plan.get('estimated_time_share'))} "
                     f"of the kernel time for an estimated {figure(plan.get('estimated_masked_lsd_db'))} dB, "
                     f"worst frame {figure(plan.get('estimated_masked_lsd_peak_db'))} dB (costs "
                     f"combined in quadrature; budgets {figure(plan.get('budget_db'))} and "
                     f"{figure(plan.get('peak_budget_db'))} dB)")
        trail = (plan.get("verified") or {}).get("trail") or []
        if trail:
            n = trail[0].get("utterances")
            lines += ["", f"measured as a whole on {n or 'the'} development sentences (the plan's "
                      "set first, then fewer or more in the plan's order):", "",
                      f"| {grain}s quantized | masked LSD dB | worst frame dB | passed |", "|---|---|---|---|"]
            lines += [f"| {t['families']} | {figure(t.get('masked_lsd_db'))} | "
                      f"{figure(t.get('masked_lsd_peak_db'))} | {t.get('passed')} |" for t in trail]
            lines.append(f"\nthe mixed variant quantizes {len(chosen)} {grain}s "
                         f"({plan['verified'].get('searched')})")
    return "\n".join(lines) if sens else "(sensitivity sweep not run)"


def bench_table(result: QuantizationResult) -> str:
    lengths, n, base = result.token_lengths, result.speed_tokens, result.baseline
    hdr = ("| variant | ok | MB | load s | " + " | ".join(f"RTF@{k}" for k in lengths)
           + f" | vs {base} @{n} | 95 % interval | speed-up over ref | LSD dB dev | LSD dB held-out "
           "worst | held-out mean | time-aligned | PESQ | STOI | DNSMOS | problems |")
    lines = [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for name, r in result.rows.items():
        rtf = " | ".join(figure((r.get("rtf") or {}).get(k)) for k in lengths)
        vb = r.get("vs_baseline") or {}
        ci = vb.get("ci95")
        lines.append(
            f"| {name} | {'ref' if name == REFERENCE else r['ok']} | {figure(r['size_mb'])} | "
            f"{figure(r.get('load_s'))} | {rtf} | {r.get('speed_skipped') or figure(vb.get('ratio'))} | "
            f"{interval_cell(ci)} | {figure(r.get('speedup'))} | "
            f"{figure((r.get('dev') or {}).get('lsd_db'))} | {figure(r.get('lsd_db'))} | "
            f"{figure(r.get('lsd_db_mean'))} | {figure(r.get('lsd_db_aligned'))} | {figure(r.get('pesq_wb'))} | "
            f"{figure(r.get('stoi'))} | {figure(r.get('dnsmos_ovrl'))} | {len(r.get('problems') or {})} |")
    return "\n".join(lines)


def failures(result: QuantizationResult) -> dict[str, str]:
    """variant -> its problems (JSON, cut), for the variants that failed a check."""
    return {n: json.dumps(r["problems"])[:400] for n, r in result.rows.items()
            if n != REFERENCE and r.get("problems")}


def candidates_table(cands: list[dict[str, Any]]) -> str:
    lines = ["| candidate | baseline | ratio | 95 % interval | ttfa s | rtf | ruler | why | LSD dB (dev, reported) | failed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cands:
        ci = c.get("ci95")
        q = c.get("quality") or {}
        lines.append(f"| {c['name']} | {bool(c.get('baseline'))} | {figure(c.get('ratio'))} | "
                     f"{interval_cell(ci)} | {figure(c['ttfa_s'])} | "
                     f"{figure(c['rtf'])} | {q.get('verdict') or 'not measured'} | "
                     f"{'; '.join(q.get('reasons') or [])[:160] or '-'} | {figure(c['lsd_db'])} | "
                     f"{', '.join(c['failed_checks']) or '-'} |")
    return "\n".join(lines)


def profile_tables(result: QuantizationResult) -> str:
    out = []
    for n, p in result.profiles.items():
        out.append(f"**{n}**: {p['kernel_seconds']:.2f} s of kernels per run\n")
        gemm = (result.speed_bound or {}).get("gemm_peak") or {}
        for kind, w in (p.get("conv_work") or {}).items():
            frac = (p.get("conv_of_peak") or {}).get(kind)
            out.append(f"- convolutions in {kind}: {w['gops']:.1f} G operations in {w['seconds']:.3f} s, "
                       f"{w['gops_per_s']:.1f} G/s" + (
                           f", {frac:.0%} of this machine's {kind} GEMM ({gemm[kind]['gops_per_s']:.0f} G/s)"
                           if frac is not None and kind in gemm else ""))
        out.append("")
        for what in ("by_op", "by_family"):
            out += [f"| {what[3:]} | s | share |", "|---|---|---|"]
            out += [f"| {k} | {v:.3f} | {sh:.1%} |" for k, v, sh in share(p[what])]
            out.append("")
    b = result.speed_bound
    if b:
        out.append(f"Float Conv/MatMul share of the reference's kernel time: {b['heavy_share']:.1%}; "
                   f"whole-run speed-up if they ran 2x faster: {b['bound_if_2x']:.2f}x, "
                   f"4x faster: {b['bound_if_4x']:.2f}x.")
        if b.get("total_ratio") is not None:
            out.append(f" Fastest variant: those kernels (int8 + Q/DQ) "
                       f"{figure(b.get('replaced_kernel_ratio'))}x faster, Q/DQ overhead "
                       f"{b['qdq_overhead_s']:.3f} s, all kernels {b['total_ratio']:.2f}x.")
    return "\n".join(out) if out else "(profile not run: profile_tokens=0)"


# -- plots ------------------------------------------------------------------------------------
def plot_pareto(result: QuantizationResult, plt, targets: Targets = Targets()):
    """Speed-up over the reference against the ruler's masked LSD (worst held-out utterance,
    the vocoder at the reference's alignment): variants the ruler rejects as x, the front
    joined, what ships starred, the ruler's bound and the speed target dotted."""
    rows, pts, front = result.rows, result.pareto_points, result.pareto_front
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, (sp, d) in pts.items():
        passed = (rows[n].get("quality") or {}).get("verdict") == "pass"
        ax.scatter(d, sp, marker="o" if passed else "x", color="C0" if n in front else "C7")
        ax.annotate(n, (d, sp), fontsize=8, xytext=(4, 3), textcoords="offset points")
    fp = sorted((pts[n] for n in front), key=lambda p: p[1])
    ax.plot([p[1] for p in fp], [p[0] for p in fp], "C0--", lw=1)
    ships = result.ships
    if ships in pts:  # what the journal's selection takes from this stage
        d_s, sp_s = pts[ships][1], pts[ships][0]
        ax.scatter(d_s, sp_s, marker="*", s=220, facecolors="none", edgecolors="C3", lw=1.2)
        ax.annotate("ships", (d_s, sp_s), fontsize=8, color="C3", xytext=(4, -11),
                    textcoords="offset points")
    stop = stopped_by(result)
    if stop and stop["variant"] in pts and stop["on_top_of"] in pts:  # the next layer, and its cost
        (sp0, d0), (sp1, d1) = pts[stop["on_top_of"]], pts[stop["variant"]]
        ax.annotate("", (d1, sp1), (d0, sp0), arrowprops=dict(arrowstyle="->", color="C3", lw=0.8))
        ax.annotate("+" + (stop["adds"][0] if len(stop["adds"]) == 1 else f"{len(stop['adds'])} layers"),
                    ((d0 + d1) / 2, (sp0 + sp1) / 2), fontsize=7, color="C3", xytext=(4, -10),
                    textcoords="offset points")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.axhline(targets.fast_speedup, color="g", lw=0.5, ls=":")
    ax.axvline(ruler.BOUNDS["masked_lsd_db"], color="b", lw=0.5, ls=":")
    ax.set_xlabel("masked LSD to the reference (dB, worst held-out utterance; the ruler's bound dotted)")
    ax.set_ylabel(f"speed-up over the reference (paired, {result.speed_tokens} tokens)")
    ax.set_title("Kokoro variants: speed vs what a listener can hear change")
    fig.tight_layout()
    return fig


def plot_sensitivity(result: QuantizationResult, plt):
    """Each swept family (block or layer): its share of the reference's kernel time against
    what quantizing it alone costs on the ruler (masked LSD, worst development utterance);
    the mixed set filled, the one whose addition failed the set ringed and named, the
    ruler's bound dotted. None where the sweep did not run or had no time shares."""
    sens = (result.sensitivity or {}).get("families") or {}
    plan = (result.sensitivity or {}).get("mixed_plan") or {}
    pts = {f: (r["time_share"], r["masked_lsd_db"]) for f, r in sens.items()
           if r.get("time_share") is not None and r.get("masked_lsd_db") is not None}
    if not pts:
        return None
    chosen = set(plan.get("quantize") or [])
    stops = (plan.get("verified") or {}).get("stops_at")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for keep, label, style in ((True, "in the mixed set", dict(color="C0")),
                               (False, "kept float", dict(facecolors="none", edgecolors="C7"))):
        xs = [(x, y) for f, (x, y) in pts.items() if (f in chosen) == keep]
        if xs:
            ax.scatter([x for x, _ in xs], [y for _, y in xs], label=label, **style)
    if stops in pts:
        x, y = pts[stops]
        ax.scatter(x, y, s=180, facecolors="none", edgecolors="C3", lw=1.2)
        ax.annotate(f"{stops}: adding it failed", (x, y), fontsize=8, color="C3", ha="right",
                    xytext=(-10, 6), textcoords="offset points")
    ax.axhline(ruler.BOUNDS["masked_lsd_db"], color="b", lw=0.5, ls=":")
    ax.set_yscale("log")
    grain = (result.sensitivity or {}).get("grain", "block")
    ax.set_xlabel(f"{grain}'s share of the reference's kernel time (what int8 can save)")
    ax.set_ylabel("masked LSD quantized alone (dB, worst dev utterance)")
    ax.set_title(f"Which {grain}s can take int8: time against cost")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_vs_baseline(result: QuantizationResult, plt):
    """Each variant's speed against the baseline at every length, with its interval."""
    lengths, base = result.token_lengths, result.baseline
    names = [n for n in result.rows if n in result.comparisons[lengths[0]].entries and n != base]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * max(1, len(names)) * len(lengths)))
    ys, labels = [], []
    for i, (k, name) in enumerate((k, n) for k in lengths for n in names):
        c = result.comparisons[k]
        r, (lo, hi) = c.ratio(name), c.ci95(name)
        ax.errorbar(r, i, xerr=[[r - lo], [hi - r]], fmt="o", color=f"C{lengths.index(k)}")
        ys.append(i)
        labels.append(f"{name} @{k}")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel(f"times faster than {base} (95 % interval; > 1: faster)")
    fig.tight_layout()
    return fig


# -- listen and try it -------------------------------------------------------------------------
def shipped_variant(result: QuantizationResult) -> tuple[str | None, bool]:
    """(the variant this stage ships, True) -- what the journal's selection takes from its
    candidates (``result.ships``: passed the ruler and every check, faster than the
    baseline beyond the threshold) when that is not the baseline; else (the runner-up,
    False): the fastest variant the ruler passed (the stage's fast pick), or the fastest
    variant that ran without a failed check (None when there is none)."""
    base = result.baseline
    ships = result.ships
    if ships and ships != base:
        return ships, True
    fast = ((result.selection or {}).get("fast") or {}).get("variant")
    if fast and fast != base and fast in result.clips:
        return fast, False
    others = [(r.get("speedup") or 0.0, n) for n, r in result.rows.items()
              if n not in (REFERENCE, base) and r.get("ok") and n in result.clips]
    return (max(others)[1], False) if others else (None, False)


def side_by_side(result: QuantizationResult) -> listening.Listening:
    """The held-out listening sentence through the shipped int8 (stock) and through what
    the stage ships (or, when it ships int8, the runner-up), each read by the ruler against
    the reference model's output of the same sentence (whole outputs, aligned)."""
    base, clips = result.baseline, result.clips
    name, ships = shipped_variant(result)
    stock_label, other_label = listening.labels(base, name or "-", not ships)
    takes = {stock_label: clips[base]}
    if name is not None:
        takes[other_label] = clips[name]
    utt = listening.sentence(result.listen["id"])
    return listening.listening(
        utt, f"the reference model ({result.reference['variant']}) reading the same sentence",
        clips[REFERENCE], takes,
        note="Whole outputs, aligned by the ruler; the selection reads each variant's vocoder "
             "at the reference's alignment on every development and held-out utterance.")


def try_controls(result: QuantizationResult) -> dict[str, Any]:
    """The "Try it" knobs: a variant this run benched (what ships first) and a held-out
    sentence (the listening one first)."""
    name, _ = shipped_variant(result)
    names = [n for n in result.rows if n != REFERENCE]
    first = result.listen["id"]
    held = corpora.load("heldout", purpose="report")
    utts = sorted(held, key=lambda u: u.id != first)
    return {"variant": list(dict.fromkeys([name or result.baseline, *names])),
            "utterance": [(f"{u.id}: {u.text[:60]}", u.id) for u in utts]}


def try_variant(result: QuantizationResult, variant: str, utterance: str, cfg: LabConfig) -> list[Any]:
    """Try it: ``variant`` (a model this run benched) reading the held-out ``utterance``
    beside the reference model's reading of it: both players and the ruler's figures (a
    :class:`labkit.lab.listen.Listening`)."""
    rows = result.rows
    if variant not in rows:
        raise KeyError(f"variant {variant!r}: this run benched {sorted(rows)}")
    utt = listening.sentence(utterance)
    feeds = listening.prepared(utt).feeds(VoiceBank.load(assets.voices_path(cfg)))
    audio = {n: np.asarray(make_session(Path(rows[n]["path"]), cfg.session).run(None, feeds)[0]).ravel()
             for n in dict.fromkeys([REFERENCE, variant])}
    return [listening.listening(utt, f"the reference model ({result.reference['variant']})",
                                audio[REFERENCE], {variant: audio[variant]})]

