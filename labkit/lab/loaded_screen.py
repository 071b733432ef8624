"""Stage 02's screen beside busy processes: session settings whose worth depends on whether
the cores are free (``session.allow_spinning``: an idle intra-op thread that spins waiting
for work saves a wake-up when the cores are free, and takes time from the thread it waits
for when another process holds one).

Such a setting ("loaded toggle") is flipped in the stage's idle screen like any toggle, and
screened again beside ``load_processes`` busy processes (labkit.measure.load), by the same
instrument (labkit.measure.session_settings.screen). :func:`settle` then keeps a flip only
where neither screen finds it slower beyond the noise, and takes one the idle screen did
not when the loaded screen earns it: our user's Mac is rarely idle, and a setting that wins
idle but loses under load is not a win.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from labkit.config import SelectionConfig, SessionConfig
from labkit.measure.load import competing_load
from labkit.measure.session_settings import SessionChange, screen
from labkit.tables import fixed, interval


def not_slower(row: dict[str, Any] | None) -> bool:
    """The row's interval reaches 1.0: not slower than the default beyond the noise (a row
    without an interval, one whose session could not be made, is not known to be)."""
    return bool(row) and "ci95" in row and row["ci95"][1] >= 1.0


def loaded_screen(model_path, changes: Sequence[SessionChange], feeds: dict, cache_dir,
                  rounds: int | None, warmup: int, log: Callable[[str], Any],
                  max_rounds: int | None, decide_at: float | None,
                  load_processes: int = 1) -> dict[str, Any]:
    """The screen of ``changes`` (the default first) beside ``load_processes`` busy
    processes: the same rows as the idle screen's."""
    log(f"screening {', '.join(c.label for c in changes if c.label != 'default')} beside "
        f"{load_processes} busy process(es)")
    with competing_load(load_processes):
        return screen(model_path, list(changes), feeds, cache_dir, rounds, warmup, log,
                      max_rounds, decide_at)


def settle(base: SessionConfig, best: SessionConfig, taken: list[str],
           changes: Sequence[SessionChange], idle: dict[str, dict], loaded: dict[str, dict],
           max_lsd_db: float, rules: SelectionConfig | None = None
           ) -> tuple[SessionConfig, list[str], dict[str, str]]:
    """``best`` and ``taken`` (the idle screen's combination) with each loaded toggle of
    ``changes`` settled on both screens:

    * taken idle (its interval above the threshold) and not slower under load: kept;
    * taken idle but slower under load beyond the noise: dropped (``best`` keeps ``base``'s
      value);
    * not taken idle, its loaded interval above the threshold, not slower idle, and its
      audio within ``max_lsd_db`` of the default's: taken.

    Returns (settings, labels taken, {label: why} for each loaded toggle)."""
    rules = rules or SelectionConfig()
    taken = list(taken)
    fields: dict[str, Any] = {}
    why: dict[str, str] = {}
    for c in changes:
        if c.label == "default":
            continue
        i, l = idle.get(c.label), loaded.get(c.label)
        if c.label in taken:
            if not_slower(l):
                why[c.label] = "faster idle, not slower under load: kept"
                continue
            taken.remove(c.label)
            fields.update({k: getattr(base, k) for k in c.changes})
            why[c.label] = "faster idle but slower under load beyond the noise: dropped"
        elif (l and "ci95" in l and rules.clears(l["ci95"]) and not_slower(i)
              and l["drift_vs_default_db"] <= max_lsd_db):
            taken.append(c.label)
            fields.update(c.changes)
            why[c.label] = "faster under load, not slower idle: taken"
        else:
            why[c.label] = "not earned idle or under load"
    settled = dataclasses.replace(best, **fields)
    settled.validate()
    return settled, taken, why


def table(rec: dict[str, Any]) -> str:
    """The loaded screen beside the idle one, a row per loaded toggle."""
    rows = ["| candidate | idle speed-up | 95 % interval | loaded speed-up | 95 % interval | "
            "loaded median s | verdict |", "|---|---|---|---|---|---|---|"]
    for label, l in rec["screen_loaded"].items():
        if label == "default":
            continue
        i = rec["screen"].get(label, {})
        rows.append(f"| {label} | {fixed(i.get('speedup'))} | {interval(i.get('ci95'), 3)} | "
                    f"{fixed(l.get('speedup'))} | {interval(l.get('ci95'), 3)} | "
                    f"{fixed(l.get('median_s'))} | {rec['loaded_verdicts'].get(label, '')} |")
    return ("\n".join(rows) + f"\n\nA/A noise band idle {interval(rec['screen_noise_band'], 3)}, "
            f"under load {interval(rec['screen_loaded_noise_band'], 3)}")


def report(measured: dict[str, dict[str, Any]]) -> str:
    """Each variant's loaded screen (:func:`table`), or why there is none."""
    parts = [f"### {v}, beside {r['load_processes']} busy process(es)\n\n{table(r)}"
             for v, r in measured.items() if "screen_loaded" in r]
    return "\n\n".join(parts) or "No setting was screened under load (`loaded_toggles` is empty)."
