"""Selection rules (labkit.lab.selection) on synthetic records: a pick is earned."""
import json
import random

import pytest

from labkit.config import ConfigError, LabConfig, SelectionConfig, SessionConfig
from labkit.lab import s02_ort_conversion as s02
from labkit.lab.selection import best_json, check_failures, choice_differences, quality_entry, rank, select

#: the rules at a zero gain margin: most tests here are about rule (c)'s 1.0 itself
RULES = SelectionConfig(min_gain=0.0)
CHOICE_FIELDS = {"stage", "choice", "baseline", "criterion", "ratio", "ci95", "failed_checks",
                 "run_id", "reason"}


def rec(stage, cands, status="ok"):
    return {"stage": stage, "run_id": "run-x", "status": status, "metrics": {"candidates": cands}}


PASS = quality_entry(True, basis="test")
FAIL = quality_entry(False, ["masked_lsd_db 2.50 > 1.7"], "test")


def base(name="default", criterion="rtf", measured=("rtf", "ttfa_s", "quality"), **kw):
    return {"name": name, "baseline": True, "overrides": kw.pop("overrides", {}),
            "criterion": criterion, "measured": list(measured), "quality": PASS,
            "failed_checks": [], **kw}


def cand(name, ci, ratio=None, criterion="rtf", measured=("rtf", "ttfa_s", "quality"), quality=PASS,
         **kw):
    return {"name": name, "overrides": kw.pop("overrides", {"voice": name}), "criterion": criterion,
            "ratio": ratio if ratio is not None else (sum(ci) / 2 if ci else None),
            "ci95": list(ci) if ci else None, "measured": list(measured), "quality": quality,
            "failed_checks": kw.pop("failed_checks", []), **kw}


def one(cands, rules=RULES, stage="02_x"):
    out = select([rec(stage, cands)], rules)
    return out["choices"][0], out


def test_an_interval_wholly_above_1_is_taken():
    ch, out = one([base(), cand("fast", (1.05, 1.20))])
    assert ch["choice"] == "fast" and ch["baseline"] == "default"
    assert ch["ci95"] == [1.05, 1.20] and ch["criterion"] == "rtf"
    assert out["overrides"] == {"voice": "fast"}
    assert "wholly above 1.0" in ch["reason"]
    assert set(ch) >= CHOICE_FIELDS


@pytest.mark.parametrize("ci", [(0.97, 1.30), (1.0, 1.2), (0.8, 0.95)])
def test_an_interval_touching_or_below_1_keeps_the_baseline(ci):
    ch, out = one([base(overrides={"variant": "int8"}), cand("maybe", ci, ratio=1.1)])
    assert ch["choice"] == ch["baseline"] == "default"
    assert ch["ratio"] == 1.0 and "not wholly above 1.0" in ch["reason"]
    assert out["overrides"] == {"variant": "int8"}  # the baseline's own settings ship
    assert out["rejected"][0]["candidate"] == "maybe"


def test_the_stage02_bug_a_candidate_listed_first_does_not_win_a_tie():
    # "best" first in the list, measured 0.83x at 494 tokens: list order must not ship it
    ch, _ = one([cand("best", (0.78, 1.02), ratio=0.83), base()])
    assert ch["choice"] == "default"


@pytest.mark.parametrize("bad,why", [
    (dict(failed_checks=["NaN"]), "failed checks: NaN"),
    (dict(quality=FAIL), "quality: masked_lsd_db 2.50 > 1.7"),
    (dict(quality=None), "quality not measured"),
    (dict(quality=quality_entry(None, ["not measured"])), "quality not measured"),
    (dict(measured=("rtf", "quality")), "not measured on ttfa_s"),
    (dict(criterion="ttfa_s"), "the stage's criterion is 'rtf'"),
])
def test_each_rule_refuses_a_candidate_that_breaks_it(bad, why):
    ch, out = one([base(), cand("fast", (1.5, 1.9), **bad)])
    assert ch["choice"] == "default"
    assert why in out["rejected"][0]["reason"] and why in ch["reason"]


def test_a_candidate_without_an_interval_is_not_taken():
    for c in (cand("a", None, ratio=1.5), cand("b", (1.3,)), cand("c", (1.4, 1.2))):
        ch, out = one([base(), c])
        assert ch["choice"] == "default"
        assert "no ratio with a 95 % interval" in out["rejected"][0]["reason"]


def test_the_stage_criterion_can_be_set_by_the_rules():
    rules = SelectionConfig(criteria={"05_chunk": "ttfa_s"})
    cands = [base(), cand("rtf-win", (1.2, 1.3)), cand("ttfa-win", (1.1, 1.2), criterion="ttfa_s")]
    ch, _ = one(cands, rules, stage="05_chunk")
    assert ch["choice"] == "ttfa-win" and ch["criterion"] == "ttfa_s"
    ch, _ = one(cands, RULES, stage="05_chunk")
    assert ch["choice"] == "rtf-win"


def test_among_earned_the_highest_low_end_wins_not_the_ratio_or_list_order():
    cands = [base(), cand("big-but-wide", (1.01, 1.9), ratio=1.6), cand("sure", (1.10, 1.15))]
    ch, out = one(cands)
    assert ch["choice"] == "sure"
    assert [c["name"] for c in rank(cands, RULES)] == ["sure", "big-but-wide"]
    assert "below" in out["rejected"][0]["reason"]


def test_an_exact_tie_keeps_the_baseline():
    ch, out = one([base(), cand("a", (1.1, 1.3)), cand("b", (1.1, 1.2))])
    assert ch["choice"] == "default" and "tie exactly" in ch["reason"]
    assert {r["candidate"] for r in out["rejected"]} == {"a", "b"}


def test_a_stage_that_did_not_finish_changes_nothing():
    out = select([rec("04_coreml", [base(overrides={"v": 1}), cand("ane", (2, 3))],
                      status="skipped: no Mac")], RULES)
    ch = out["choices"][0]
    assert ch["choice"] == ch["baseline"] == "default" and ch["reason"].startswith("stage skipped")
    assert out["overrides"] == {} and ch["overrides"] == {}


@pytest.mark.parametrize("cands,why", [
    ([cand("a", (1.2, 1.3))], "no candidate is marked as the baseline"),
    ([base("a"), base("b")], "several candidates are marked as the baseline: a, b"),
    ([base(), cand("default", (1.2, 1.3))], "candidate names repeat: default"),
])
def test_a_stage_without_one_clear_baseline_changes_nothing(cands, why):
    ch, out = one(cands)
    assert ch["choice"] is None and why in ch["reason"] and out["overrides"] == {}


def test_best_merges_stage_choices_in_stage_order():
    records = [
        rec("03_quant", [base("int8", overrides={"variant": "int8"}),
                         cand("fp16", (1.02, 1.1), overrides={"variant": "fp16"})]),
        rec("02_ort", [base(), cand("ort", (1.1, 1.2), overrides={"session.use_ort_format": True,
                                                                   "variant": "int8"})]),
        rec("05_chunk", [base("first sentence")]),
    ]
    out = best_json(records, RULES, LabConfig(), "run-x", ["a", "b"])
    assert [c["stage"] for c in out["choices"]] == ["02_ort", "03_quant", "05_chunk"]
    assert [c["choice"] for c in out["choices"]] == ["ort", "fp16", "first sentence"]
    assert out["overrides"] == {"session.use_ort_format": True, "variant": "fp16"}
    assert LabConfig.from_dict(out["config"]).variant == "fp16"  # what labkit.best_config reads
    assert out["provenance"]["run_id"] == "run-x"
    assert out["choices"][2]["reason"] == "baseline stays: no other candidate was offered"
    json.dumps(out, allow_nan=False)


def test_every_change_shipped_was_earned():
    rng = random.Random(0)
    records = []
    for s in range(30):
        cands = [base()]
        for i in range(rng.randint(0, 4)):
            lo = rng.uniform(0.8, 1.3)
            cands.append(cand(f"c{i}", (lo, lo + rng.uniform(0, 0.3)),
                              quality=PASS if rng.random() < 0.7 else FAIL,
                              failed_checks=["NaN"] if rng.random() < 0.2 else []))
        records.append(rec(f"{s:02d}_s", cands))
    out = select(records, RULES)
    changed = [c for c in out["choices"] if c["choice"] != c["baseline"]]
    assert changed and len(changed) < len(out["choices"])  # both kinds occur
    for c in changed:
        assert c["ci95"][0] > 1.0 and c["failed_checks"] == [] and c["quality"]["verdict"] == "pass"


def test_recorded_measurements_shuffled_give_the_same_answer():
    records = [
        rec("02_ort", [base(), cand("a", (1.01, 1.2)), cand("b", (1.03, 1.1)),
                       cand("c", (0.9, 1.4), ratio=1.3)]),
        rec("03_quant", [base("int8"), cand("fp16", (1.1, 1.2), failed_checks=["NaN"]),
                         cand("qdq", (1.05, 1.2))]),
        rec("05_chunk", [base("primer"), cand("x", (1.1, 1.2)), cand("y", (1.1, 1.3))]),
        rec("06_dual", [base("single"), cand("dual", (0.95, 1.05))]),
    ]
    first = select(records, RULES)
    rng = random.Random(1)
    for _ in range(2):
        shuffled = [dict(r, metrics={"candidates": rng.sample(r["metrics"]["candidates"],
                                                               len(r["metrics"]["candidates"]))})
                    for r in rng.sample(records, len(records))]
        assert select(shuffled, RULES) == first
    assert [c["choice"] for c in first["choices"]] == ["b", "qdq", "primer", "single"]


@pytest.mark.parametrize("ci, taken", [((1.01, 1.05), False), ((1.029, 1.2), False),
                                        ((1.031, 1.2), True), ((1.3, 1.4), True)])
def test_a_gain_inside_min_gain_keeps_the_baseline(ci, taken):
    rules = SelectionConfig(min_gain=0.03)
    ch, _ = one([base(), cand("small", ci)], rules=rules)
    assert (ch["choice"] == "small") is taken
    assert ("wholly above 1.03" if taken else "not wholly above 1.03") in ch["reason"]
    # the same interval with no margin is taken: min_gain is what refused it
    assert one([base(), cand("small", ci)])[0]["choice"] == "small"


def test_a_stage_screen_uses_the_same_margin():
    base_s = SessionConfig()
    cands = s02.screen_candidates(base_s, toggles=["enable_mem_pattern"])
    label = cands[1].label
    rows = {"default": {}, label: {"ci95": [1.01, 1.04], "drift_vs_default_db": 0.0}}
    assert s02.combine(base_s, cands, rows, rules=SelectionConfig(min_gain=0.03))[1] == []
    assert s02.combine(base_s, cands, rows, rules=SelectionConfig(min_gain=0.0))[1] == [label]


def test_check_failures_lists_every_failed_check():
    assert check_failures(cand("a", (1, 2), quality=FAIL, failed_checks=["NaN"]), RULES) == [
        "NaN", "quality: masked_lsd_db 2.50 > 1.7"]
    assert check_failures(cand("a", (1, 2)), RULES) == []
    assert check_failures(cand("a", (1, 2), quality=quality_entry(False)), RULES) == [
        "quality: fails the ruler"]


def test_selection_rules_are_validated():
    with pytest.raises(ConfigError, match="criteria"):
        LabConfig().with_overrides({"selection.criteria": {"02_ort": ""}}).validate()
    for bad in (-0.01, 1.0, "3 %"):
        with pytest.raises(ConfigError, match="min_gain"):
            LabConfig().with_overrides({"selection.min_gain": bad}).validate()
    cfg = LabConfig().with_overrides({"selection.criteria": {"05_chunking": "ttfa_s"}}).validate()
    assert cfg.selection.criteria == {"05_chunking": "ttfa_s"}


def test_from_the_instrument_to_the_choice():
    # a 1.3x faster fake is taken; a 1.0x fake under 40 % noise is not
    import numpy as np

    from labkit.measure.compare import compare

    rng = np.random.default_rng(0)

    def engine(cost, noise):
        return lambda: cost * (1 + rng.uniform(-noise, noise))

    for cost, noise, taken in ((1 / 1.3, 0.05, True), (1.0, 0.40, False)):
        cmp = compare({"default": engine(1.0, noise), "new": engine(cost, noise)}, "default",
                      measure=float)
        cands = [{"name": "default", "overrides": {}, "measured": ["seconds"], "quality": PASS,
                  "failed_checks": [], **cmp.baseline_fields()},
                 {"name": "new", "overrides": {"voice": "new"}, "measured": ["seconds", "quality"],
                  "quality": PASS, "failed_checks": [], **cmp.selection_fields("new")}]
        ch, _ = one(cands)
        assert (ch["choice"] == "new") is taken
        if not taken:
            assert ch["ci95"] == list(cmp.noise_band) and ch["ratio"] == 1.0


def _verify_record(tested, ships, losses=(), status="ok"):
    return {"stage": "07_verify", "run_id": "r", "status": status,
            "metrics": {"verdict": {"tested_overrides": tested, "ships": ships, "losses": list(losses)}}}


def test_a_combination_that_lost_its_verification_ships_the_stock_configuration():
    earned = [{"name": "default", "baseline": True, "criterion": "seconds", "ci95": [0.98, 1.02],
               "quality": PASS, "failed_checks": [], "measured": ["seconds"], "overrides": {}},
              {"name": "fast", "criterion": "seconds", "ratio": 1.2, "ci95": [1.1, 1.3],
               "quality": PASS, "failed_checks": [], "measured": ["seconds"],
               "overrides": {"session.enable_mem_pattern": False}}]
    stage = {"stage": "02_ort_conversion", "run_id": "r", "status": "ok",
             "metrics": {"candidates": earned}}
    combo = {"session.enable_mem_pattern": False}
    alone = select([stage], SelectionConfig())
    assert alone["overrides"] == combo and alone["verification"]["ships"] is None
    lost = select([stage, _verify_record(combo, "stock", ["first audio: ratio interval [0.7, 0.9] "
                                                           "wholly below 1.0"])], SelectionConfig())
    assert lost["overrides"] == {} and lost["combined_overrides"] == combo
    assert "first audio" in lost["verification"]["reason"]
    assert LabConfig.from_dict(lost["config"]).session.enable_mem_pattern is True
    kept = select([stage, _verify_record(combo, "shipped")], SelectionConfig())
    assert kept["overrides"] == combo
    # a verdict on another combination, or a failed verification, changes nothing
    other = select([stage, _verify_record({}, "stock", ["x"])], SelectionConfig())
    assert other["overrides"] == combo and other["verification"]["ships"] is None
    failed = select([stage, _verify_record(combo, "stock", ["x"], status="failed: boom")],
                    SelectionConfig())
    assert failed["overrides"] == combo and "failed" in failed["verification"]["reason"]


def test_the_verification_of_a_model_file_matches_whatever_form_its_path_was_written_in():
    """Stage 03's record names its model by absolute path, stage 07 tested what best.json
    wrote (relative to the checkout): the same combination, verified (run-20261203-063025's
    journal said "measured another combination" for it)."""
    from labkit.config import REPO_ROOT

    model = REPO_ROOT / "artifacts" / "cache" / "durations" / "q.durations.onnx"
    cands = [{"name": "int8", "baseline": True, "criterion": "warm_s", "ci95": [0.99, 1.01],
              "quality": PASS, "failed_checks": [], "measured": ["warm_s"], "overrides": {}},
             {"name": "q", "criterion": "warm_s", "ratio": 1.25, "ci95": [1.2, 1.3], "quality": PASS,
              "failed_checks": [], "measured": ["warm_s"],
              "overrides": {"variant": "q", "model_path": str(model)}}]
    stage = {"stage": "03_quantization", "run_id": "r", "status": "ok", "metrics": {"candidates": cands}}
    tested = {"variant": "q", "model_path": "artifacts/cache/durations/q.durations.onnx"}
    kept = select([stage, _verify_record(tested, "shipped")], SelectionConfig())
    assert kept["verification"]["ships"] == "shipped"
    elsewhere = {"variant": "q", "model_path": "artifacts/cache/durations/other.onnx"}
    assert select([stage, _verify_record(elsewhere, "shipped")],
                  SelectionConfig())["verification"]["ships"] is None


def test_choice_differences_name_each_stage_that_chose_otherwise():
    a = select([rec("02_x", [base(), cand("fast", (1.2, 1.3))]),
                rec("05_y", [base("primer"), cand("small", (0.9, 1.1))])], RULES)
    assert choice_differences(a, a) == []
    b = select([rec("02_x", [base(), cand("fast", (0.99, 1.3))]),
                rec("06_z", [base("single")])], RULES)
    diffs = choice_differences(a, b, "run-b")
    assert diffs == ["02_x: fast here, default in run-b", "05_y: judged only in this run",
                     "06_z: judged only in run-b"]


def test_a_model_rebuilt_under_each_runs_folder_is_the_same_choice():
    def run(run_id, ci=(1.3, 1.4)):
        r = rec("03_q", [base("int8"), cand("qdq", ci, overrides={
            "variant": "qdq", "model_path": f"/a/artifacts/{run_id}/03_q/models/qdq.onnx"})])
        r["run_id"] = run_id
        return select([r], RULES)
    assert choice_differences(run("run-2"), run("run-1"), "run-1") == []
    # its copy with word timings, keyed by the built file's bytes, too
    other = run("run-2")
    other["choices"][0]["overrides"]["model_path"] = "/cache/qdq.dc0d169a36f1.durations.onnx"
    assert choice_differences(other, run("run-1"), "run-1") == []
    # another setting of the same name is not the same choice
    other["choices"][0]["overrides"]["variant"] = "qdq-per-channel"
    assert choice_differences(other, run("run-1"), "run-1") == [
        "03_q: qdq here, qdq in run-1 (settings differ)"]
