"""Choosing among stage 03's variants: the per-block sensitivity sweep and the
mixed-precision plan built from it (:func:`sensitivity`, :func:`choose_families`), the
Pareto front of speed against the ruler's distance, the stage's fast pick
(:func:`select`), the checks a bench row failed and the bench rows as the journal's
candidates (:func:`candidates`, read by labkit.lab.selection).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from labkit import progress
from labkit.engine.graph_cache import make_session
from labkit.lab.selection import quality_entry
from labkit.measure.compare import Comparison
from labkit.measure.variant_quality import evaluate
from labkit.measure.variant_speed import CRITERION
from labkit.optimize.families import LAYERS, layers_in
from labkit.optimize.quantize import VariantSpec


def time_shares(profile: dict[str, Any] | None, families: Sequence[str]) -> dict[str, float]:
    """Each family's share of the reference's kernel time (an ORT profile grouped by
    labkit.optimize.families.fine_family_of: labkit.measure.profile ``by_family``): what
    quantizing it alone can save at most."""
    by = (profile or {}).get("by_family") or {}
    total = sum(by.values())
    return {f: by.get(f, 0.0) / total for f in families} if total > 0 else {}


def sensitivity(builder, families: Sequence[str], base_spec: dict, session_cfg, heldout: Sequence,
                voices, ref_audio: dict, shares: dict[str, float] | None = None,
                tag: str = "") -> dict[str, dict]:
    """Quantize one family at a time (``base_spec`` with ``families=[f]``) and measure the
    distance each costs on ``heldout`` (no DNSMOS: quick), beside its share of the
    reference's kernel time (``shares``, :func:`time_shares`). Each family's model is
    removed once measured (its build record stays beside it): the sweep holds one model at
    a time, not one per family (issue #31: the Mac batch sweeps every family)."""
    out: dict[str, dict] = {}
    for fam in progress.steps(list(families), "sensitivity families"):
        spec = VariantSpec(**{**base_spec, "name": f"sens-{base_spec.get('recipe')}{tag}-{fam}",
                              "families": [fam]}).validate()
        try:
            built = builder.build(spec)
            sess = make_session(built.path, session_cfg)
            ev = evaluate(sess, heldout, voices, ref_audio, with_dnsmos=False)
            del sess
            s = ev["summary"]
            out[fam] = {"ok": s["ok"], "masked_lsd_db": s["masked_lsd_db"],
                        "masked_lsd_peak_db": s["masked_lsd_peak_db"], "lsd_db": s["lsd_db"],
                        "pesq_wb": s["pesq_wb"],
                        "length_changes": s["length_changes"], "problems": s["problems"],
                        "nodes_quantized": built.nodes_quantized}
        except Exception as exc:  # noqa: BLE001 - reported, the family stays float
            out[fam] = {"ok": False, "masked_lsd_db": None, "masked_lsd_peak_db": None, "lsd_db": None,
                        "error": f"{type(exc).__name__}: {exc}"}
        finally:
            (builder.out_dir / f"{spec.name}.onnx").unlink(missing_ok=True)
        if shares is not None:
            out[fam]["time_share"] = shares.get(fam)
    return out


#: a static family's error split into parts, each part's build on top of the last (the
#: whole static recipe is the sweep's own figure): its weights rounded to int8 with the
#: graph float, then its input quantized too with its output left float
ERROR_PARTS = (("weights", {"recipe": "weights"}, "-w"),
               ("weights and input", {"quantize_outputs": False}, "-in"))


def error_parts(builder, family: str, base_spec: dict, session_cfg, dev: Sequence, voices,
                ref_audio: dict, whole: dict) -> dict[str, dict]:
    """Where one family's cost on the ruler comes from (issue #33: the layer that stops
    the mixed set): each part of :data:`ERROR_PARTS` measured on ``dev`` like the sweep
    (:func:`sensitivity`), then ``whole``, the sweep's own figures for the static recipe
    (weights, input and output)."""
    out = {}
    for part, change, tag in ERROR_PARTS:
        out[part] = sensitivity(builder, [family], {**base_spec, **change}, session_cfg, dev,
                                voices, ref_audio, tag=tag)[family]
    out["weights, input and output"] = whole
    return out


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated on (speed ratio: higher is better, lsd: lower is better)."""
    front = []
    for name, (speed, lsd) in points.items():
        dominated = any(s >= speed and l <= lsd and (s > speed or l < lsd)
                        for other, (s, l) in points.items() if other != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: -points[n][0])


@dataclass
class Targets:
    """What stage 03's fast pick aims at (recorded as met or not; it never decides)."""

    #: the speed the fast pick should reach over the reference (issue #33)
    fast_speedup: float = 1.5


def select(rows: dict[str, dict], baseline: str | None, targets: Targets = Targets()) -> dict:
    """The fastest variant whose quality passed the ruler (``row["quality"]``, from
    labkit.lab.variant_ruler.ruler_quality), and whether it meets the speed target; failed
    variants and those the ruler rejects are listed, never chosen."""
    out: dict[str, Any] = {"failed": sorted(n for n, r in rows.items() if not r.get("ok")),
                           "rejected_by_the_ruler": sorted(
                               n for n, r in rows.items()
                               if (r.get("quality") or {}).get("verdict") == "fail")}
    ok = {n: r for n, r in rows.items() if r.get("ok") and r.get("speedup") is not None
          and (r.get("quality") or {}).get("verdict") == "pass"}
    if not ok:
        out["fast"] = None
        return out
    name = max(ok, key=lambda n: ok[n]["speedup"])
    out["fast"] = {"variant": name, "speedup": ok[name]["speedup"],
                   "meets_speed_target": ok[name]["speedup"] >= targets.fast_speedup,
                   "is_baseline": name == baseline}
    return out


def _layers(spec: dict[str, Any]) -> set[str]:
    """The generator's convolutions a spec quantizes (families None: all of them)."""
    families = spec.get("families")
    return set(LAYERS) if families is None else set(layers_in(families))


#: the spec fields that do not move a layer in or out of int8: a variant that differs from
#: the fast pick only in these and in its families quantizes a superset or a subset of it
_NOT_THE_SET = ("name", "families", "rewrites")


def what_stops(specs: dict[str, dict[str, Any]], rows: dict[str, dict], fast: str | None) -> dict | None:
    """Issue #33's fallback, from the bench alone: the layers whose int8 the ruler would not
    take on top of the fast pick's. Of the variants the ruler failed that quantize the fast
    pick's layers and more with the same recipe (every spec field the same but the name,
    the families and the graph rewrites, which reshape the elementwise tail and move no
    layer in or out of int8), the one that adds the fewest, one with the pick's own rewrites
    first; the added layers (``adds``, in :data:`LAYERS`' order), its speed-up and its
    figures, and whether its rewrites differ from the pick's (``rewrites_differ``). None
    where no such variant was benched (the default batch benches the layer-grain pick plus
    the next layer in the sweep's order, experiments/layers.yaml)."""
    if not fast or fast not in specs:
        return None

    def recipe(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k not in _NOT_THE_SET}

    mine = _layers(specs[fast])
    found = []
    for name, spec in specs.items():
        q = (rows.get(name) or {}).get("quality") or {}
        if name == fast or q.get("verdict") != "fail" or recipe(spec) != recipe(specs[fast]):
            continue
        theirs = _layers(spec)
        if theirs > mine:
            differ = list(spec.get("rewrites") or []) != list(specs[fast].get("rewrites") or [])
            found.append((len(theirs - mine), differ, name, [l for l in LAYERS if l in theirs - mine]))
    if not found:
        return None
    _, differ, name, adds = min(found)
    q = rows[name]["quality"]
    return {"variant": name, "on_top_of": fast, "adds": adds, "rewrites_differ": differ,
            "speedup": rows[name].get("speedup"),
            **{k: q.get(k) for k in ("masked_lsd_db", "masked_lsd_peak_db", "wer", "reasons")}}


#: up to this many usable families the choice is exact (every subset); beyond, greedy
EXACT_UP_TO = 20


def combined_db(costs: Sequence[float]) -> float:
    """What quantizing several families together is estimated to cost on the ruler, from
    what each costs alone: independent quantization noises add in power, so their
    distances combine as the root of the summed squares, not as a sum. Stage 03 records
    this estimate beside the set measured as a whole (``mixed_plan["verified"]``)."""
    return math.sqrt(sum(float(c) ** 2 for c in costs))


def _load(r: dict[str, Any], budget_db: float, peak_budget_db: float | None) -> float:
    """A family's cost as the larger fraction of a budget it uses alone (masked LSD, and
    the worst frame where that has a budget)."""
    load = max(0.0, float(r["masked_lsd_db"])) / budget_db
    if peak_budget_db and r.get("masked_lsd_peak_db") is not None:
        load = max(load, max(0.0, float(r["masked_lsd_peak_db"])) / peak_budget_db)
    return load


def choose_families(sensitivity: dict[str, dict], budget_db: float,
                    peak_budget_db: float | None = None) -> dict[str, Any]:
    """Mixed precision from per-family sensitivity {family: {"ok", "masked_lsd_db",
    "masked_lsd_peak_db", "time_share"}} (the ruler's distance and worst frame when that
    family -- a block or a layer -- alone is quantized, worst utterance; its share of the
    reference's kernel time): a knapsack. Among the families that keep their output valid,
    the set with the largest summed time share whose combined cost (:func:`combined_db`)
    stays within ``budget_db`` and, with ``peak_budget_db``, whose combined worst frame
    stays within that -- every subset tried up to :data:`EXACT_UP_TO` families, else
    greedily by share per squared cost. ``order`` ranks every usable family, the chosen
    first, by share per squared cost: :func:`verified_set` walks it when the estimate
    misses. Without time shares, every family counts as saving the same."""
    usable = {f: r for f, r in sensitivity.items()
              if r.get("ok") and r.get("masked_lsd_db") is not None}
    load = {f: _load(r, budget_db, peak_budget_db) for f, r in usable.items()}
    weighed = bool(usable) and all(r.get("time_share") is not None for r in usable.values())
    value = {f: float(r["time_share"]) if weighed else 1.0 for f, r in usable.items()}
    names = sorted(usable, key=lambda f: (load[f], f))
    rank = sorted(names, key=lambda f: -value[f] / max(load[f], 1e-3) ** 2)

    def combined(pick: Sequence[str], key: str) -> float:
        return combined_db([usable[f].get(key) or 0.0 for f in pick])

    def fits(pick: Sequence[str]) -> bool:
        return (combined(pick, "masked_lsd_db") <= budget_db + 1e-12
                and (not peak_budget_db or combined(pick, "masked_lsd_peak_db") <= peak_budget_db + 1e-12))

    if len(names) <= EXACT_UP_TO:
        best: tuple[float, float, list[str]] = (0.0, 0.0, [])
        for mask in range(1, 1 << len(names)):
            pick = [f for i, f in enumerate(names) if mask >> i & 1]
            if not fits(pick):
                continue
            v, c = sum(value[f] for f in pick), sum(load[f] ** 2 for f in pick)
            if (v, -c) > (best[0], -best[1]):
                best = (v, c, pick)
        chosen, how = best[2], "every subset"
    else:
        chosen = []
        for f in rank:
            if fits(chosen + [f]):
                chosen.append(f)
        how = "greedy by time share per squared cost"
    chosen = sorted(chosen, key=names.index)
    order = sorted(chosen, key=rank.index) + [f for f in rank if f not in chosen]
    return {"quantize": chosen, "keep_float": sorted(set(sensitivity) - set(chosen)),
            "order": order,
            "estimated_masked_lsd_db": combined(chosen, "masked_lsd_db"),
            "estimated_masked_lsd_peak_db": (combined(chosen, "masked_lsd_peak_db")
                                             if peak_budget_db else None),
            "budget_db": budget_db, "peak_budget_db": peak_budget_db,
            "estimated_time_share": sum(value[f] for f in chosen) if weighed else None,
            "search": how if weighed else f"{how}, without time shares: the most families"}


#: how many times stage 03 measures a mixed set as a whole before it settles
VERIFY_TRIES = 6


def verified_set(order: Sequence[str], start: int, measure: Callable[[list[str]], dict],
                 tries: int = VERIFY_TRIES) -> dict[str, Any]:
    """The longest prefix of ``order`` that passes when measured as a whole (a set is not
    the sum of its parts), searched from the plan's ``start`` families: the plan's set is
    measured first, then a bisection -- towards fewer families while the measured set
    fails, towards more while it passes -- at most ``tries`` measurements. ``measure``
    takes the families and returns at least ``{"passed": bool}`` (stage 03: the set built
    and judged on the development set). Adding a family is taken never to lower the cost,
    so a prefix that passes vouches for every shorter one. ``quantize``: the longest prefix
    measured passing (empty where none did); ``trail``: every measurement, in order;
    ``stops_at``: the next family in the order where adding it was measured to fail."""
    n = len(order)
    # order[:lo] is known to pass (nothing, trivially), order[:hi] to fail (n + 1: none yet)
    lo, hi = 0, n + 1
    trail: list[dict[str, Any]] = []
    k = max(0, min(start, n))
    while len(trail) < tries and k not in (lo, hi) and lo < hi - 1:
        got = dict(measure(list(order[:k])))
        trail.append({"families": k, **got})
        if got.get("passed"):
            lo = k
        else:
            hi = k
        k = (lo + hi) // 2
    return {"quantize": list(order[:lo]), "trail": trail,
            "searched": "complete" if lo >= hi - 1 else f"stopped after {tries} measurements",
            # the family whose addition was measured to fail the set: what stops it
            "stops_at": order[lo] if hi == lo + 1 and lo < n else None}


#: problem string prefix (labkit.quality.check_audio, evaluate, run_bench) -> check name
_CHECKS = (("nan", "NaN"), ("empty", "silence"), ("silence", "silence"), ("clipping", "clipping"),
           ("run failed", "load"), ("words not heard", "words"))


_CHECK_ORDER = ["NaN", "silence", "clipping", "words", "load"]


def failed_checks(row: dict[str, Any]) -> list[str]:
    """Names of the checks a bench row failed (NaN, silence, clipping, words, load), in
    that order, each once; empty when the variant is usable."""
    problems = row.get("problems") or {}
    found = set()
    if "load" in problems:
        found.add("load")
    for key, msgs in problems.items():
        for msg in msgs if isinstance(msgs, list) else [msgs]:
            text = str(msg).lower()
            for prefix, name in _CHECKS:
                if text.startswith(prefix):
                    found.add(name)
    if not found and row.get("ok") is False:
        found.add("load")  # not ok without a named problem: never measured
    return [n for n in _CHECK_ORDER if n in found]


def _by_len(d: dict | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}  # JSON turns int keys into strings


def candidates(rows: dict[str, dict], reference_name: str, comparison: Comparison,
               reference_variant: str = "fp32-recon", baseline_name: str = "int8") -> list[dict[str, Any]]:
    """Bench rows as the journal's candidates: the reference first, then the shipped
    baseline (``"baseline": True`` with the A/A control's interval), then every variant in
    bench order, each with its ratio and 95 % interval against the baseline from
    ``comparison`` (the warm wall time at the stage's representative length). ``ttfa_s``
    is the warm median seconds at the shortest probe length (one chunk: compute time is the
    time to first audio); ``rtf`` the median warm RTF over the probe lengths; ``quality``
    the ruler's verdict (labkit.lab.variant_ruler.ruler_quality: development and held-out
    sets, like with like); ``lsd_db`` / ``pesq_wb`` (development set) and ``heldout_lsd_db`` are the
    standard figures, reported. Variants are selected by their model file
    (``model_path``). A variant that never ran has no ratio and is not ``measured`` on the
    criterion: it cannot be chosen."""
    if reference_name not in rows:
        raise KeyError(f"reference row {reference_name!r} missing; rows are {list(rows)}")
    if baseline_name not in rows:
        raise KeyError(f"baseline row {baseline_name!r} missing; rows are {list(rows)}")
    order = [reference_name, baseline_name]
    order += [n for n in rows if n not in order]
    out = []
    for name in order:
        r = rows[name]
        dev = {} if name == reference_name else (r.get("dev") or {})
        detail = _by_len(r.get("speed_detail"))
        rtf = _by_len(r.get("rtf"))
        shortest = min(detail) if detail else None
        if name == reference_name:
            overrides: dict[str, Any] = {"variant": reference_variant}
            quality = quality_entry(True, basis="the reference itself")
        else:
            overrides = ({"variant": baseline_name} if name == baseline_name
                         else {"variant": name, "model_path": str(Path(r["path"]).resolve())})
            quality = r.get("quality") or quality_entry(None, ["not measured"])
        timed = name in comparison.entries
        c = {
            "name": name,
            "overrides": overrides,
            "measured": ([CRITERION] if timed else [])
                        + (["quality"] if quality.get("verdict") is not None else []),
            "ttfa_s": (detail[shortest]["seconds"]["median"] if shortest is not None else None),
            "rtf": statistics.median(rtf.values()) if rtf else None,
            "quality": quality,
            "lsd_db": 0.0 if name == reference_name else dev.get("lsd_db"),
            "pesq_wb": None if name == reference_name else dev.get("pesq_wb"),
            "heldout_lsd_db": 0.0 if name == reference_name else r.get("lsd_db"),
            # the checks failed on either set (a check that fails on the held-out set fails)
            "failed_checks": [] if name == reference_name else sorted(
                set(failed_checks(r)) | set(failed_checks(r.get("dev") or {})),
                key=_CHECK_ORDER.index),
        }
        if name == baseline_name:
            c.update(comparison.baseline_fields())
        elif timed:
            c.update(comparison.selection_fields(name))
        else:
            c.update(criterion=CRITERION, ratio=None, ci95=None)
        out.append(c)
    return out
