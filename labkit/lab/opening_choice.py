"""How stage 05 makes the first piece (issue #32): which option of the opening sweep
(labkit.measure.openings) ships, and the targets it is held to.

:func:`verdicts` -- an option other than the configured one earns its place when, on the
longest opening the sweep measured, idle, its first audio is earlier than the configured
option's beyond ``selection.min_gain`` (the paired interval wholly below 1 / (1 + min_gain));
it is never later beyond that band on any text or load (idle only, where the listener heard
the configured option stream with a gap, :func:`configured_gaps`: a later first audio under
load that streams without one is the better trade); an option with
``pipeline.first_alone`` is also earlier than its twin without it beyond the band on that
opening under load (first_alone only reorders the work: it must be seen to pay); and its
seams pass the click detector on every text. :func:`ranked` -- the options that earned it,
nearest their targets first: the lowest worst first audio over the phrase's as a share of
the target's bound, idle and under load (:func:`worst_ratio`). :func:`confirm` -- what
ships: the first of those that a listener heard stream the paragraph with no gap, idle and
under load (a first piece made short enough to come early can leave the next one late:
the timing alone cannot say), else the configured one; :func:`choose` is the same without
the listener. :func:`targets` -- every opening length within :data:`MAX_RATIO_IDLE` x the
phrase's first audio idle and :data:`MAX_RATIO_LOADED` x under load (the median of the
paired ratios), and clean seams, for what ships.
"""
from __future__ import annotations

from typing import Any, Callable

from labkit.config import SelectionConfig
from labkit.measure.streaming import no_underruns
from labkit.tables import interval

#: targets (issue #32): every opening length's first audio at most this many times the
#: phrase's, idle, and beside the competing load (the phrase measured under it too)
MAX_RATIO_IDLE = 1.2
MAX_RATIO_LOADED = 1.5
TARGETS = ("opening_first_audio_within_1.2x_phrase_idle",
           "opening_first_audio_within_1.5x_phrase_under_load",
           "opening_seams_pass_the_click_detector")


def _rows(sweep: dict[str, Any], option: str, loaded: bool | None = None) -> list[dict[str, Any]]:
    return [r for r in sweep["rows"] if r["option"] == option
            and (loaded is None or bool(r["load_processes"]) == loaded)]


def seams_pass(sweep: dict[str, Any], option: str) -> bool:
    """The option's seams passed the click detector on every text of the sweep."""
    reports = (sweep.get("seams") or {}).get(option) or {}
    names = {r["text"] for r in _rows(sweep, option)}
    return bool(names) and all((reports.get(n) or {}).get("quality_passed") is True for n in names)


def worst_ratio(sweep: dict[str, Any], option: str) -> float:
    """The option's worst first audio over the phrase's as a share of its target: each
    idle row's ratio over :data:`MAX_RATIO_IDLE`, each loaded row's over
    :data:`MAX_RATIO_LOADED`, the largest (> 1: a target missed). Idle counts as much as
    under load: where every option's first piece is the same under load (a floor that
    takes the whole opening sentence), the loaded rows alone would pick by noise."""
    return max(r["ratio"] / (MAX_RATIO_LOADED if r["load_processes"] else MAX_RATIO_IDLE)
               for r in _rows(sweep, option))


def _where(row: dict[str, Any]) -> str:
    return f"+{row['load_processes']} busy" if row["load_processes"] else "idle"


def _alone_gain(sweep: dict[str, Any], option: str, words: int) -> dict[str, Any] | None:
    """The row that says what ``pipeline.first_alone`` buys ``option`` over its twin without
    it (labkit.measure.openings.plain_twins): on the ``words``-word opening under the
    heaviest load measured (what it is for: nothing competes with the first piece), idle
    where the sweep ran idle only. None: not such an option."""
    rows = [r for r in _rows(sweep, option) if r.get("plain") and r["opening_words"] == words]
    return max(rows, key=lambda r: r["load_processes"], default=None)


def configured_gaps(sweep: dict[str, Any]) -> bool:
    """The listener heard the configured option stream with a gap (``configured_heard``:
    the stage's listener rows of it): then an option may come later than it under load,
    so long as it streams without one (:func:`confirm` hears it before it ships)."""
    rows = sweep.get("configured_heard") or []
    return bool(rows) and not no_underruns(rows)


def verdicts(sweep: dict[str, Any], rules: SelectionConfig | None = None) -> dict[str, dict[str, Any]]:
    """option -> whether it earned its place over the configured option, and why (see the
    module doc); the configured option is the baseline."""
    rules = rules or SelectionConfig()
    out = {}
    idle = [r for r in sweep["rows"] if not r["load_processes"]]
    longest = max((r["opening_words"] for r in idle), default=0)
    gappy = configured_gaps(sweep)
    for option in dict.fromkeys(r["option"] for r in sweep["rows"]):
        if option == sweep["configured"]:
            out[option] = {"earned": False, "baseline": True, "why": "the configured option"}
            continue
        why = []
        gain = [r for r in idle if r["option"] == option and r["opening_words"] == longest]
        if not gain or not gain[0]["vs_configured_ci95"][1] < 1.0 / rules.threshold:
            why.append(f"not earlier than {sweep['configured']} beyond the band on the "
                       f"{longest}-word opening, idle")
        later = [f"{r['text']} {_where(r)}" for r in _rows(sweep, option, loaded=False if gappy else None)
                 if r["vs_configured_ci95"][0] > rules.threshold]
        if later:
            why.append("later than the configured option beyond the band: " + ", ".join(later))
        twin = _alone_gain(sweep, option, longest)
        if twin and not twin["vs_plain_ci95"][1] < 1.0 / rules.threshold:
            why.append(f"not earlier than {twin['plain']} beyond the band on the {longest}-word "
                       f"opening {_where(twin)}: first_alone only reorders the work")
        if not seams_pass(sweep, option):
            why.append("seams do not pass the click detector on every text")
        out[option] = {"earned": not why, "why": "; ".join(why) or "earlier on the longest opening, "
                       "never later beyond the band, clean seams"}
    return out


def ranked(sweep: dict[str, Any], rules: SelectionConfig | None = None) -> list[str]:
    """The options that earned their place over the configured one (:func:`verdicts`),
    the lowest :func:`worst_ratio` first."""
    earned = [o for o, v in verdicts(sweep, rules).items() if v["earned"]]
    return sorted(earned, key=lambda o: worst_ratio(sweep, o))


def choose(sweep: dict[str, Any], rules: SelectionConfig | None = None) -> str:
    """The option the timing alone would ship: the first of :func:`ranked`, else the
    configured one."""
    return next(iter(ranked(sweep, rules)), sweep["configured"])


def confirm(sweep: dict[str, Any], rules: SelectionConfig | None,
            hear: Callable[[str], list[dict[str, Any]]]) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """What ships and what the listener heard on the way: the options of :func:`ranked`
    in order, each streamed whole by ``hear`` (option -> one row per load, idle and under
    load, labkit.measure.chunkings.listen_rows); the first with no underrun in any row
    ships. None does: the configured option (heard by the stage already). Each option
    heard costs its listener rounds, so the options are heard one by one and the first
    that streams clean ends it."""
    heard: dict[str, list[dict[str, Any]]] = {}
    for option in ranked(sweep, rules):
        heard[option] = hear(option)
        if no_underruns(heard[option]):
            return option, heard
    return sweep["configured"], heard


def heard_table(sweep: dict[str, Any] | None) -> str:
    """Each option the listener heard before one shipped (:func:`confirm`): its underruns
    and silence, worst of its rounds, idle and under load."""
    heard = (sweep or {}).get("heard") or {}
    if not heard:
        return "(no option earned its place: the configured one ships, heard with the stage's listener rows)"
    out = ["| option | load | rounds | underruns (worst) | silence s (worst) | first audio s | ships |",
           "|---|---|---|---|---|---|---|"]
    for option, rows in heard.items():
        for r in rows:
            out.append(f"| {option} | {_where(r)} | {r['repeats']} | {r['underruns_max']} | "
                       f"{r['underrun_s_max']:.2f} | {r['ttfa_s']:.3f} | "
                       f"{'yes' if option == sweep['shipped'] else 'no'} |")
    return "\n".join(out)


def targets(sweep: dict[str, Any] | None, option: str | None, load_processes: int) -> dict[str, bool | None]:
    """The opening targets of ``option`` (what ships); None each when the batch left the
    sweep out. A load, a text or a seam report not measured is not met."""
    if not sweep:
        return dict.fromkeys(TARGETS)
    names = {r["text"] for r in sweep["rows"]}

    def within(loaded: bool, bound: float) -> bool:
        rows = _rows(sweep, option, loaded)
        return {r["text"] for r in rows} == names and all(r["ratio"] <= bound for r in rows)

    return {TARGETS[0]: within(False, MAX_RATIO_IDLE),
            TARGETS[1]: bool(load_processes) and within(True, MAX_RATIO_LOADED),
            TARGETS[2]: seams_pass(sweep, option)}


def table(sweep: dict[str, Any] | None) -> str:
    """Each option's first audio on each opening length over the phrase's and over the
    configured option's, idle and under load, with its seams' verdict."""
    if not sweep:
        return "(the opening sweep was left out of this batch)"
    out = ["| option | text | words in its first sentence | load | first audio s | phrase s | "
           "x the phrase | 95 % interval | x configured | 95 % interval | first piece tokens | "
           "from a prefix | seams |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sweep["rows"]:
        load = _where(r)
        seam = ((sweep.get("seams") or {}).get(r["option"]) or {}).get(r["text"]) or {}
        verdict = ("pass" if seam.get("quality_passed")
                   else "; ".join(seam.get("quality_reasons") or []) or "not measured")
        tokens = sorted(set(t for t in r["first_tokens_each"] if t is not None))
        out.append(f"| {r['option']} | {r['text']} | {r['opening_words']} | {load} | {r['text_s']:.3f} | "
                   f"{r['phrase_s']:.3f} | {r['ratio']:.3f} | {interval(r['ci95'], 3)} | "
                   f"{r['vs_configured']:.3f} | {interval(r['vs_configured_ci95'], 3)} | "
                   f"{', '.join(map(str, tokens))} | {all(r['from_prefix_each'])} | {verdict} |")
    return "\n".join(out)


def plot(sweep: dict[str, Any] | None, plt, shipped: str | None = None):
    """First audio over the phrase's against the opening sentence's length, one colour per
    option (the one that ships drawn thick), idle solid and under load dashed, with the
    intervals and the two targets; the legend under the axes (the options' labels are long)."""
    if not sweep:
        fig, ax = plt.subplots(figsize=(8, 3.8))
        ax.axis("off")
        ax.text(0.0, 0.5, table(sweep), va="center")
        return fig
    options = list(dict.fromkeys(r["option"] for r in sweep["rows"]))
    fig, ax = plt.subplots(figsize=(8, 4.2 + 0.22 * (len(options) + 3)), layout="constrained")
    for option, n in dict.fromkeys((r["option"], r["load_processes"]) for r in sweep["rows"]):
        rows = sorted((r for r in sweep["rows"] if r["option"] == option and r["load_processes"] == n),
                      key=lambda r: r["opening_words"])
        xs, ys = [r["opening_words"] for r in rows], [r["ratio"] for r in rows]
        ax.errorbar(xs, ys, yerr=[[max(0.0, y - r["ci95"][0]) for y, r in zip(ys, rows)],
                                  [max(0.0, r["ci95"][1] - y) for y, r in zip(ys, rows)]],
                    marker="o", capsize=3, ls="-" if n == 0 else "--",
                    color=f"C{options.index(option) % 10}", lw=2.2 if option == shipped else 1.0)
    for k, option in enumerate(options):  # one legend entry an option, then what the styles mean
        ax.plot([], [], color=f"C{k % 10}", lw=2.2 if option == shipped else 1.0,
                label=option + (" (ships)" if option == shipped else ""))
    loads = sorted({r["load_processes"] for r in sweep["rows"]})
    for n in loads:
        ax.plot([], [], color="k", lw=1.0, ls="-" if n == 0 else "--", label="idle" if n == 0 else f"+{n} busy")
    ax.axhline(MAX_RATIO_IDLE, color="0.4", lw=0.8, ls=":", label="target idle")
    ax.axhline(MAX_RATIO_LOADED, color="0.4", lw=0.8, ls="-.", label="target under load")
    ax.set_xlabel("words in the opening sentence")
    ax.set_ylabel("first audio / the phrase's")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=1, frameon=False)
    return fig
