"""Every gate in labkit/lab can fail (DESIGN.md: each "met/passed" has a test that feeds it
a known-bad case).

A gate is a stage's ``targets`` (name -> met) or a check that says what failed (a list of
failed checks, a loss, an exclusion). :data:`GATES` holds each one with an input on which
everything is met and, per target or check, inputs that fail it; the listing tests read
labkit/lab's source and fail when a gate, or a target a gate now reports, has no bad case
here, or when a stage computes a target dict inline where no test can feed it.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from labkit.config import SelectionConfig
from labkit.lab import s01_g2p_sanitization as s01
from labkit.lab import s02_ort_conversion as s02
from labkit.lab import variant_choice
from labkit.lab import accelerator_split
from labkit.lab import chunking_report, opening_choice
from labkit.lab import s05_chunking as s05
from labkit.lab import s06_dual_sessions as s06
from labkit.lab import s07_verify as s07
from labkit.lab import s08_endpoint as s08
from labkit.lab import selection
from labkit.measure import openings

LAB = Path(s05.__file__).parent


@dataclass
class Gate:
    """``judge(input)`` -> {target or check: met}; ``good()`` an input meeting every one;
    ``bad`` target -> inputs on which that target is not met (each a fresh copy)."""

    judge: Callable[[Any], dict[str, bool | None]]
    good: Callable[[], Any]
    bad: dict[str, list[Callable[[Any], Any]]] = field(default_factory=dict)
    #: the targets this gate names by itself; None: those ``judge(good())`` reports
    names: tuple[str, ...] | None = None

    def targets(self) -> set[str]:
        return set(self.names) if self.names is not None else set(self.judge(self.good()))


def changed(**change) -> Callable[[dict], dict]:
    return lambda x: {**x, **change}


def nested(*path: str, **change) -> Callable[[Any], Any]:
    """An edit of a copy: the dict at ``path`` inside the input updated with ``change``."""
    def edit(x):
        x = copy.deepcopy(x)
        inner = x
        for key in path:
            inner = inner[key]
        inner.update(change)
        return x
    return edit


def failures_as_targets(failed: Callable[[Any], list[str]], names: tuple[str, ...]):
    """A check returning what failed, read as {name: not failed} (a name matches a failure
    it starts)."""
    return lambda x: {n: not any(str(f).startswith(n) for f in failed(x)) for n in names}


# -- stage 01 ------------------------------------------------------------------------------------
def _s01_good() -> dict:
    return {"summary": {"passed": 3, "cases": 3, "words_lost": 0, "oov_reaching_model": 0,
                        "oov_before_cleaning": 0},
            "cost": {"rows": [{"text": "t", "labkit_over_misaki_ci95": [1.0, 1.2]}]},
            "cache_hit_s": 1e-6,
            "languages": {"languages": {"en-us": {"unavailable": None, "passed": 8, "cases": 8},
                                        "ja": {"unavailable": None, "passed": 8, "cases": 8}}}}


def _s01_cost(ci95):
    return lambda r: {**r, "cost": {"rows": [{"text": "t", "labkit_over_misaki_ci95": ci95}]}}


COST_T = f"cost_within_{s01.MAX_COST_RATIO}x_misaki (t)"
LANG_CASES = f"every_language_{s01.MIN_LANGUAGE_CASES}_cases_pass"

S01 = Gate(s01.targets, _s01_good, {
    "corpus_all_pass": [nested("summary", passed=2)],
    "no_words_lost": [nested("summary", words_lost=1)],
    "no_oov_reaching_model": [nested("summary", oov_reaching_model=1)],
    "no_symbols_lost_before_the_model": [nested("summary", oov_before_cleaning=2)],
    COST_T: [_s01_cost([1.2, 1.35])],  # judged on the interval's high end, not the median
    "cache_hit_under_1ms": [changed(cache_hit_s=2e-3)],
    "every_language_read": [nested("languages", "languages", "ja", unavailable="misaki's ja G2P needs 'fugashi'"),
                            lambda r: {**r, "languages": {"languages": {}}}],
    LANG_CASES: [nested("languages", "languages", "ja", passed=7),
                 nested("languages", "languages", "ja", passed=s01.MIN_LANGUAGE_CASES - 1,
                               cases=s01.MIN_LANGUAGE_CASES - 1)],
})


def test_stage01_cost_not_measured_is_not_met():
    met = s01.targets(_s01_cost([1.0, 1.2])(_s01_good()) | {"cost": {"rows": []}})
    assert met[f"cost_within_{s01.MAX_COST_RATIO}x_misaki"] is False


# -- stage 02 ------------------------------------------------------------------------------------
def _s02_good() -> dict:
    return {"cold_ratio": {"best": {"ratio": 2.4, "ci95": [2.2, 2.6]}},
            "warm": {"30": {"ci95": [1.05, 1.2], "drift_vs_default_db": 0.2},
                     "250": {"ci95": [1.1, 1.3], "drift_vs_default_db": 0.4}},
            "max_lsd_db": 1.0}


S02 = Gate(s02.targets, _s02_good, {
    "cold_start_2x": [changed(cold_ratio={"best": {"ratio": 1.6, "ci95": [1.5, 1.7]}}),
                      changed(cold_ratio={"ort_format": {"ratio": 3.0, "ci95": [2.8, 3.2]}})],
    "faster_at_every_length": [nested("warm", "250", ci95=[0.99, 1.4]), changed(warm={})],
    "drift_within": [nested("warm", "30", drift_vs_default_db=1.5), changed(warm={})],
})


# -- stage 03 ------------------------------------------------------------------------------------
def _problems(*msgs, ok=False):
    return lambda r: {**r, "ok": ok, "problems": {"held-01": list(msgs)}}


S03_CHECKS = Gate(failures_as_targets(variant_choice.failed_checks, ("NaN", "silence", "clipping", "words", "load")),
                  lambda: {"ok": True, "problems": {}}, {
    "NaN": [_problems("nan: 3 samples")],
    "silence": [_problems("empty output"), _problems("silence: 2.1 s")],
    "clipping": [_problems("clipping: 1% of samples")],
    "words": [_problems("words not heard: 'fifteen'")],
    "load": [_problems("run failed: RuntimeError"), changed(ok=False),
             lambda r: {**r, "problems": {"load": "InvalidGraph"}}],
}, names=("NaN", "silence", "clipping", "words", "load"))


def _s03_select(rows):
    out = variant_choice.select(rows, "int8")
    fast = out["fast"] or {}
    return {"fast_is_x": fast.get("variant") == "x", "meets_speed_target": bool(fast.get("meets_speed_target"))}


S03_SELECT = Gate(_s03_select, lambda: {
    "int8": {"ok": True, "speedup": 1.0, "quality": {"verdict": "pass"}},
    "x": {"ok": True, "speedup": variant_choice.Targets().fast_speedup + 0.5, "quality": {"verdict": "pass"}}}, {
    "fast_is_x": [nested("x", ok=False), nested("x", quality={"verdict": "fail"}),
                  nested("x", quality=None), nested("x", speedup=None)],
    "meets_speed_target": [nested("x", speedup=variant_choice.Targets().fast_speedup - 0.1)],
})


# -- stage 04 ------------------------------------------------------------------------------------
S04_SPLIT = Gate(lambda c: {"passed": accelerator_split.split_passed(c, accelerator_split.SPLIT_MAX_LSD_DB)},
                 lambda: {"failures": [], "max_lsd_db": 0.02}, {
    "passed": [changed(failures=["bucket 64: 100 samples, expected 38400"]),
               changed(max_lsd_db=accelerator_split.SPLIT_MAX_LSD_DB + 0.01), changed(max_lsd_db=None)],
})


# -- stage 05 ------------------------------------------------------------------------------------
def _clicks(at_seams=0, no_more=True):
    return {"clicks_at_seams": at_seams, "no_more_than_unchunked": no_more}


CONTENDER = "schedule=adaptive,primer_max_words=5"


def _openings(idle=(1.05, 1.1, 1.15, 1.18), loaded=(1.3, 1.4, 1.4, 1.45), passed=(True,) * 4,
              shipped="opening=prefix") -> dict:
    """The opening sweep's record (labkit.measure.openings): what ships, its first audio
    over the phrase's on each opening text, idle and under one busy process, and its seams."""
    rows = [{"option": shipped, "text": t, "load_processes": n, "ratio": r}
            for n, ratios in ((0, idle), (1, loaded)) for t, r in zip(openings.TEXTS, ratios)]
    return {"rows": rows, "configured": "opening=sentence", "shipped": shipped,
            "seams": {shipped: {t: {"quality_passed": ok} for t, ok in zip(openings.TEXTS, passed)}}}


def _s05_result(**change) -> dict:
    listener = [{"label": "default", "load_processes": n, "underruns_max": 0} for n in (0, 1)]
    result = {"label": "default", "contender": CONTENDER,
              "load_processes": 1, "listener": listener,
              "article": {"underruns_max": 0, "words_present": True, "load_processes": 0},
              "article_rows": [{"underruns_max": 0, "words_present": True, "load_processes": 0},
                               {"underruns_max": 0, "words_present": True, "load_processes": 1}],
              "seams": {"default": {"seam_excess_db": 1.0, "clicks": _clicks()},
                        CONTENDER: {"seam_excess_db": 1.2, "clicks": _clicks()}},
              "first_audio": {"default": {"ratio": 1.1}}, "cancel": {"terminate": {"release_s": 0.1,
                                                                     "running_after": False}},
              "openings": _openings()}
    result.update(change)
    return result


def _article(*rows):
    return changed(article_rows=[{"underruns_max": 0, "words_present": True, **r} for r in rows])


S05 = Gate(s05.targets, _s05_result, {
    "article_no_underruns": [_article({"load_processes": 0, "underruns_max": 1}, {"load_processes": 1})],
    "article_no_underruns_under_load": [_article({"load_processes": 0}, {"load_processes": 1, "underruns_max": 2}),
                                        _article({"load_processes": 0})],  # never streamed busy
    "article_all_words": [_article({"load_processes": 0}, {"load_processes": 1, "words_present": False}),
                          _article({"load_processes": 0, "words_present": None})],
    "paragraph_no_underruns_idle_and_under_load": [
        changed(listener=[{"label": "default", "load_processes": 0, "underruns_max": 0},
                          {"label": "default", "load_processes": 1, "underruns_max": 1}]),
        changed(listener=[{"label": "default", "load_processes": 0, "underruns_max": 0}])],
    "first_audio_within_1.2x_phrase": [changed(first_audio={"default": {"ratio": 1.35}}),
                                       changed(first_audio=None)],
    "no_click_at_any_seam": [changed(seams={"default": {"clicks": _clicks(at_seams=1)}}),
                             changed(seams={"default": {"seam_excess_db": 0.1}})],  # not measured
    "clicks_per_minute_no_more_than_unchunked": [changed(seams={"default": {"clicks": _clicks(no_more=False)}})],
    # issue #32: every opening length within 1.2x the phrase's first audio idle, 1.5x loaded
    "opening_first_audio_within_1.2x_phrase_idle": [
        changed(openings=_openings(idle=(1.05, 1.1, 1.15, 1.3))),
        changed(openings={**_openings(), "rows": _openings()["rows"][1:]})],  # a length not measured
    "opening_first_audio_within_1.5x_phrase_under_load": [
        changed(openings=_openings(loaded=(1.3, 1.4, 1.6, 1.45))),
        changed(load_processes=0)],  # never measured under load
    "opening_seams_pass_the_click_detector": [changed(openings=_openings(passed=(True, True, True, False))),
                                              changed(openings={**_openings(), "seams": {}})],
    "cancel_frees_the_session_within_0.5s": [
        changed(cancel={"terminate": {"release_s": 2.9, "running_after": False}}),
        changed(cancel={"terminate": {"release_s": 0.1, "running_after": True}}),
        changed(cancel={})],
})


OPENING = Gate(lambda x: opening_choice.targets(x["sweep"], x["sweep"]["shipped"], x["load"]),
               lambda: {"sweep": _openings(), "load": 1}, {
    "opening_first_audio_within_1.2x_phrase_idle": [
        changed(sweep=_openings(idle=(1.25, 1.1, 1.15, 1.1)))],
    "opening_first_audio_within_1.5x_phrase_under_load": [
        changed(sweep=_openings(loaded=(1.3, 1.55, 1.4, 1.45))), changed(load=0)],
    "opening_seams_pass_the_click_detector": [changed(sweep=_openings(passed=(False, True, True, True)))],
})


def test_stage05_without_the_opening_sweep_its_targets_are_not_measured():
    met = s05.targets(_s05_result(openings=None))
    assert {k for k, v in met.items() if v is None} == set(opening_choice.TARGETS)
    assert not any(s05.targets(_s05_result(), CONTENDER)[k] for k in opening_choice.TARGETS)


def test_stage05_without_the_article_its_targets_are_not_measured_and_the_rest_still_judged():
    met = s05.targets(_s05_result(article=None, article_rows=[]))
    assert {k for k, v in met.items() if v is None} == {
        "article_no_underruns", "article_no_underruns_under_load", "article_all_words"}
    assert all(v for k, v in met.items() if not k.startswith("article"))
    bad = s05.targets(_s05_result(article=None, article_rows=[], first_audio=None))
    assert bad["first_audio_within_1.2x_phrase"] is False and bad["article_no_underruns"] is None
    assert "not streamed" in chunking_report.article_summary({"article": None})


def test_stage05_contender_targets_say_the_article_was_not_measured():
    result = _s05_result()
    result["seams"][CONTENDER]["clicks"] = _clicks(at_seams=2)
    met = s05.targets(result, CONTENDER)
    assert met["article_no_underruns"] is False  # only the stage's choice streams the article
    assert met["first_audio_within_1.2x_phrase"] is False  # not measured for it here
    assert met["no_click_at_any_seam"] is False and s05.targets(result)["no_click_at_any_seam"]


def _sweep_row(label, ci, **change):
    return {"label": label, "ttfa_ci95": ci, "ttfa_ratio": sum(ci) / 2, "underruns_max": 0,
            "words_present": True, **change}


def _s05_row(**change):
    return lambda rows: [rows[0], {**rows[1], **change}]


S05_ELIGIBLE = Gate(lambda rows: {"eligible": s05.eligible(rows) == ["growth=3.0"]},
                    lambda: [_sweep_row("default", [0.97, 1.03]), _sweep_row("growth=3.0", [1.04, 1.40])], {
    "eligible": [_s05_row(ttfa_ci95=[0.99, 1.30]),  # faster by its median; the interval touches 1.0
                 _s05_row(ttfa_ci95=[1.02, 1.10]),  # inside the 3 % margin
                 _s05_row(underruns_max=1), _s05_row(words_present=False), _s05_row(failures=1)],
})


# -- stage 06 ------------------------------------------------------------------------------------
def _s06_row(name, sessions, ttfa, total, ci, underruns=0, text="t"):
    return {"candidate": name, "text": text, "status": "ok", "sessions": sessions, "ttfa_s": ttfa,
            "total_s": total, "ci95": ci, "underruns_max": underruns, "cpu_utilization": 0.9,
            "pipeline": {"sessions": sessions}, "session": {}}


def _s06_dual(**change):
    return lambda rows: [rows[0], {**rows[1], **change}, *rows[2:]]


S06 = Gate(lambda rows: {"use_dual": s06.dual_rule(rows)["use_dual"]},
           lambda: [_s06_row("one", 1, 1.0, 10.0, [0.98, 1.02]), _s06_row("two", 2, 1.0, 8.0, [1.15, 1.3])], {
    "use_dual": [_s06_dual(ttfa_s=1.5),                     # faster overall, first audio 1.5x later
                 _s06_dual(ci95=[0.99, 1.4]),               # the interval touches 1.0: noise
                 _s06_dual(underruns_max=1),
                 lambda rows: rows[:1],                     # no pair measured
                 lambda rows: rows + [_s06_row("one", 1, 1.0, 10.0, [0.98, 1.02], text="u"),
                                      _s06_row("two", 2, 1.0, 10.0, [0.95, 1.05], text="u")]],
})


# -- stage 07 ------------------------------------------------------------------------------------
def _judged(verdicts, wer):
    return {"per_utterance": {f"u{i}": {"verdict": v} for i, v in enumerate(verdicts)},
            "summary": {"wer": wer}}


LOSSES = ("first audio", "speed", "underruns", "quality: not measured", "quality: the ruler fails",
          "quality: word error rate")


def _s07(x):
    return s07.verdict(x["ttfa"], x["speed"], x["underruns"], x["judged"])


def _s07_judged(which, value):
    return lambda x: {**x, "judged": {**x["judged"], which: value}}


S07 = Gate(lambda x: {**failures_as_targets(lambda y: _s07(y)["losses"], LOSSES)(x),
                      "ships the shipped": _s07(x)["ships"] == s07.SHIPPED},
           # the stock one fails u1 too: the same failure is no loss
           lambda: {"ttfa": (0.95, 1.2), "speed": (0.97, 1.05), "underruns": {"stock": 0, "shipped": 0},
                    "judged": {"stock": _judged(["pass", "fail"], 0.20), "shipped": _judged(["pass", "fail"], 0.21)}}, {
    "first audio": [changed(ttfa=(0.6, 0.9))],
    "speed": [changed(speed=(0.8, 0.95))],
    "underruns": [changed(underruns={"stock": 0, "shipped": 2})],
    "quality: not measured": [_s07_judged("shipped", {})],
    "quality: the ruler fails": [_s07_judged("shipped", _judged(["fail", "fail"], 0.21))],
    "quality: word error rate": [_s07_judged("shipped", _judged(["pass", "fail"], 0.30))],
    "ships the shipped": [changed(ttfa=(0.6, 0.9)), _s07_judged("shipped", {})],
}, names=(*LOSSES, "ships the shipped"))


# -- stage 08 ------------------------------------------------------------------------------------
def _s08_good() -> dict:
    row = lambda ttfa, ci: {"ttfa_s": ttfa, "ttfa_ci95": ci}
    return {"paragraph": {"pipeline": row(0.40, [0.97, 1.03]), "http": row(0.42, [0.90, 0.99]),
                          "http repeat": row(0.01, [38.0, 45.0])}}


S08 = Gate(s08.targets, _s08_good, {
    "http_within_1.3x_of_pipeline": [nested("paragraph", "http", ttfa_ci95=[0.70, 0.90])],
    # the medians are 10.5x apart, but the intervals allow 8.0 / 0.99, about 8x: not met
    "repeat_10x_sooner": [nested("paragraph", "http repeat", ttfa_s=0.04, ttfa_ci95=[8.0, 12.0]),
                          nested("paragraph", "http", ttfa_ci95=[0.90, 4.5])],
})


# -- the journal's selection ---------------------------------------------------------------------------
def _entry(**change):
    return lambda c: {**c, **change}


SELECTION = Gate(failures_as_targets(lambda c: selection.check_failures(c, SelectionConfig()),
                                     ("NaN", "quality not measured", "quality: ")),
                 lambda: {"failed_checks": [], "quality": selection.quality_entry(True)}, {
    "NaN": [_entry(failed_checks=["NaN"])],
    "quality not measured": [_entry(quality=selection.quality_entry(None)), _entry(quality=None)],
    "quality: ": [_entry(quality=selection.quality_entry(False, ["gap_ms 9.00 > 3"])),
                  _entry(quality=selection.quality_entry(False))],
}, names=("NaN", "quality not measured", "quality: "))

def _why_not(c: dict) -> dict[str, bool]:
    why = selection.why_not(c, {"measured": ["rtf", "quality"]}, "rtf", SelectionConfig())
    return {"(a) passed every check": not why.startswith("failed checks"),
            "(b) measured as the baseline was": not why.startswith("not measured on"),
            "(c) its ratio on the criterion": not why.startswith("its ratio is on")
            and not why.startswith("no ratio"),
            "(c) its interval clears the margin": "not wholly above" not in why}


def _earned() -> dict:
    return {"name": "fast", "overrides": {"voice": "af_sky"}, "criterion": "rtf", "ratio": 1.12,
            "ci95": [1.05, 1.2], "measured": ["rtf", "quality"], "failed_checks": [],
            "quality": selection.quality_entry(True)}


WHY_NOT = Gate(_why_not, _earned, {
    "(a) passed every check": [_entry(failed_checks=["clipping"]), _entry(quality=selection.quality_entry(False))],
    "(b) measured as the baseline was": [_entry(measured=["rtf"])],
    "(c) its ratio on the criterion": [_entry(criterion="ttfa_s"), _entry(ratio=None), _entry(ci95=None),
                                       _entry(ci95=[1.2, 1.05])],
    "(c) its interval clears the margin": [_entry(ci95=[0.99, 1.3]), _entry(ci95=[1.01, 1.2])],
})


def _select(cands: list[dict]) -> dict[str, bool]:
    base = {"name": "default", "baseline": True, "overrides": {}, "criterion": "rtf",
            "measured": ["rtf", "quality"], "quality": selection.quality_entry(True), "failed_checks": []}
    rec = {"stage": "02_x", "run_id": "run-x", "status": "ok", "metrics": {"candidates": [base, *cands]}}
    return {"a candidate that earned it is chosen":
            selection.select([rec], SelectionConfig())["overrides"] == {"voice": "af_sky"}}


SELECT = Gate(_select, lambda: [_earned()], {
    "a candidate that earned it is chosen": [
        lambda cs: [{**cs[0], "ci95": [1.02, 1.3]}],          # within the 3 % margin
        lambda cs: [{**cs[0], "failed_checks": ["NaN"]}],
        lambda cs: [{**cs[0], "quality": selection.quality_entry(None)}],
        lambda cs: [{**cs[0], "measured": ["rtf"]}],
        lambda cs: [cs[0], {**cs[0], "name": "other", "overrides": {"voice": "af_bella"}}]],  # a tie
})

#: module.function -> its gate (the listing below finds each in labkit/lab)
GATES = {
    "s01_g2p_sanitization.targets": S01,
    "s02_ort_conversion.targets": S02,
    "variant_choice.failed_checks": S03_CHECKS,
    "variant_choice.select": S03_SELECT,
    "accelerator_split.split_passed": S04_SPLIT,
    "s05_chunking.targets": S05,
    "s05_chunking.eligible": S05_ELIGIBLE,
    "opening_choice.targets": OPENING,
    "s06_dual_sessions.dual_rule": S06,
    "s07_verify.verdict": S07,
    "s08_endpoint.targets": S08,
    "selection.check_failures": SELECTION,
    "selection.why_not": WHY_NOT,
    "selection.select": SELECT,
}

#: functions whose names read like a gate but that judge nothing, and why
NOT_GATES = {
    "quantization_report.failures": "lists each failed variant's problems for the notebook",
    "accelerator_audit.audit_checks": "prints the op audit's checks (labkit.optimize.op_audit)",
    "accelerator_split.split_check": "builds and measures the split; its verdict is split_passed",
    "s01_g2p_sanitization.select_cases": "picks corpus cases by id",
    "batch.failed_stages": "names the stages a resumed batch reruns (tests/test_batch.py)",
}

#: words of a gate's name (a function in labkit/lab named with one is a gate, or in NOT_GATES)
GATE_WORDS = {"targets", "check", "checks", "failures", "failed", "verdict", "eligible", "rule",
              "passed", "select", "why"}


CASES = [(gate, target, i) for gate, g in GATES.items() for target, bads in g.bad.items()
         for i in range(len(bads))]


@pytest.mark.parametrize("gate", list(GATES))
def test_every_target_is_met_on_the_good_input(gate):
    g = GATES[gate]
    met = g.judge(g.good())
    assert met and all(met.values()), met


@pytest.mark.parametrize("gate,target,i", CASES, ids=[f"{g}-{t}-{i}" for g, t, i in CASES])
def test_each_bad_case_fails_its_target(gate, target, i):
    g = GATES[gate]
    met = g.judge(g.bad[target][i](g.good()))
    assert met[target] is False, met


def _lab_functions() -> dict[str, ast.FunctionDef]:
    out = {}
    for path in sorted(LAB.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                out[f"{path.stem}.{node.name}"] = node
    return out


def test_every_gate_in_the_lab_has_its_bad_cases():
    functions = _lab_functions()
    named = {name for name in functions if GATE_WORDS & set(name.split(".")[1].split("_"))}
    unlisted = named - set(GATES) - set(NOT_GATES)
    assert not unlisted, f"gates with no known-bad case in tests/test_gates.py: {sorted(unlisted)}"
    gone = (set(GATES) | set(NOT_GATES)) - set(functions)
    assert not gone, f"listed here but not in labkit/lab: {sorted(gone)}"


@pytest.mark.parametrize("gate", list(GATES))
def test_every_target_a_gate_reports_has_a_bad_case(gate):
    g = GATES[gate]
    assert g.targets() == set(g.bad), f"{gate}: targets without a bad case: {g.targets() - set(g.bad)}"


def test_no_stage_computes_its_targets_inline():
    """A target dict written where a stage measures (``rec["targets"] = {...}``) is one no
    test can feed; every ``targets``/``targets_met`` entry comes from a gate function."""
    inline = []
    for path in sorted(LAB.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Assign) or not isinstance(node.value, (ast.Dict, ast.DictComp)):
                continue
            for t in node.targets:
                if (isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                        and t.slice.value in ("targets", "targets_met", "passed")):
                    inline.append(f"{path.name}:{node.lineno}")
    assert not inline, f"target dicts computed inline: {inline}"


def test_the_dual_rule_reports_the_ratios_it_weighed():
    win = s06.dual_rule(S06.good())
    assert win["use_dual"] and win["candidate"] == "two" and win["pipeline"] == {"sessions": 2}
    assert win["per_text"]["t"]["total_dual_over_single"] == pytest.approx(0.8)
    lose = s06.dual_rule(S06.bad["use_dual"][0](S06.good()))
    assert lose["pipeline"] == {"sessions": 1} and lose["candidate"] == "one"
