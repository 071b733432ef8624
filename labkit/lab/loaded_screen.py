"""Stage 02's screen of settings whose worth depends on whether the cores are free
(``session.allow_spinning``: an idle intra-op thread that spins waiting for work saves a
wake-up when the cores are free, and takes time from the thread it waits for when another
process holds one).

Each such setting ("loaded toggle") is flipped and screened twice by the stage's one
instrument (labkit.measure.session_settings.screen), in a screen of its own (the default,
the flips and the A/A control, so the stage's main screen keeps its size): idle, and beside
``load_processes`` busy processes (labkit.measure.load). :func:`settle` takes a flip that
one screen earns and the other does not find slower beyond the noise: our user's Mac is
rarely idle, and a setting that wins idle but loses under load is not a win.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from labkit.config import SelectionConfig, SessionConfig
from labkit.measure.load import competing_load
from labkit.measure.session_settings import SessionChange, screen
from labkit.tables import fixed, interval

LOADS = ("idle", "loaded")


def not_slower(row: dict[str, Any] | None) -> bool:
    """The row's interval reaches 1.0: not slower than the default beyond the noise (a row
    without an interval, one whose session could not be made, is not known to be)."""
    return bool(row) and "ci95" in row and row["ci95"][1] >= 1.0


def screens(model_path, changes: Sequence[SessionChange], feeds: dict, cache_dir,
            rounds: int | None, warmup: int, log: Callable[[str], Any],
            max_rounds: int | None, decide_at: float | None,
            load_processes: int = 1) -> dict[str, dict[str, Any]]:
    """``changes`` (the default first) screened idle, then beside ``load_processes`` busy
    processes: {"idle": screen, "loaded": screen}, each as labkit.measure.session_settings.screen
    returns it."""
    out = {}
    for load in LOADS:
        busy = load_processes if load == "loaded" else 0
        log(f"screening {', '.join(c.label for c in changes if c.label != 'default')} "
            + (f"beside {busy} busy process(es)" if busy else "idle"))
        with competing_load(busy):
            out[load] = screen(model_path, list(changes), feeds, cache_dir, rounds, warmup, log,
                               max_rounds, decide_at)
    return out


def _reading(row: dict[str, Any], earned: bool) -> str:
    if earned:
        return "faster beyond the threshold"
    if not not_slower(row):
        return "slower beyond the noise" if "ci95" in row else "not measured"
    return "not faster beyond the threshold"


def settle(best: SessionConfig, taken: list[str], changes: Sequence[SessionChange],
           idle: dict[str, dict], loaded: dict[str, dict], max_lsd_db: float,
           rules: SelectionConfig | None = None
           ) -> tuple[SessionConfig, list[str], dict[str, str]]:
    """``best`` and ``taken`` (the main screen's combination) with each flip of ``changes``
    taken where one screen earns it (its interval above the threshold, ``rules.clears``),
    the other does not find it slower beyond the noise, and its audio is within
    ``max_lsd_db`` of the default's. Returns (settings, labels taken, {label: why})."""
    rules = rules or SelectionConfig()
    taken = list(taken)
    fields: dict[str, Any] = {}
    why: dict[str, str] = {}
    for c in changes:
        if c.label == "default":
            continue
        i, l = idle.get(c.label) or {}, loaded.get(c.label) or {}
        earned = {load: "ci95" in r and rules.clears(r["ci95"]) for load, r in (("idle", i), ("loaded", l))}
        drift = max(r.get("drift_vs_default_db", float("inf")) for r in (i, l))
        if drift > max_lsd_db:
            why[c.label] = f"its audio moved {drift:.2f} dB from the default's: not taken"
        elif (earned["idle"] and not_slower(l)) or (earned["loaded"] and not_slower(i)):
            taken.append(c.label)
            fields.update(c.changes)
            won = " and ".join({"idle": "idle", "loaded": "under load"}[k] for k, v in earned.items() if v)
            why[c.label] = f"faster {won}, not slower otherwise: taken"
        else:
            why[c.label] = (f"idle {_reading(i, earned['idle'])}, under load "
                            f"{_reading(l, earned['loaded'])}: not taken")
    settled = dataclasses.replace(best, **fields)
    settled.validate()
    return settled, taken, why


def table(rec: dict[str, Any]) -> str:
    """The loaded screen beside the idle one, a row per loaded toggle."""
    rows = ["| candidate | idle speed-up | 95 % interval | loaded speed-up | 95 % interval | "
            "loaded median s | verdict |", "|---|---|---|---|---|---|---|"]
    ls = rec["loaded_screen"]
    for label, l in ls["loaded"].items():
        if label == "default":
            continue
        i = ls["idle"].get(label, {})
        rows.append(f"| {label} | {fixed(i.get('speedup'))} | {interval(i.get('ci95'), 3)} | "
                    f"{fixed(l.get('speedup'))} | {interval(l.get('ci95'), 3)} | "
                    f"{fixed(l.get('median_s'))} | {ls['verdicts'].get(label, '')} |")
    band = ls["noise_band"]
    return ("\n".join(rows) + f"\n\nA/A noise band idle {interval(band['idle'], 3)}, "
            f"under load {interval(band['loaded'], 3)}")


def report(measured: dict[str, dict[str, Any]]) -> str:
    """Each variant's loaded screen (:func:`table`), or why there is none."""
    parts = [f"### {v}: idle and beside {r['loaded_screen']['processes']} busy process(es)\n\n{table(r)}"
             for v, r in measured.items() if "loaded_screen" in r]
    return "\n\n".join(parts) or "No setting was screened under load (`loaded_toggles` is empty)."
