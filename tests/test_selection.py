"""Selection rules on synthetic records."""
from labkit.config import LabConfig, SelectionConfig
from labkit.lab.selection import compare, eligible, rank, select

RULES = SelectionConfig(max_lsd_db=2.0, objectives=["ttfa_s", "rtf"], tie_band=0.05)


def rec(stage, cands, status="ok"):
    return {"stage": stage, "run_id": "run-x", "status": status, "metrics": {"candidates": cands}}


def cand(name, ttfa, rtf, lsd=0.5, **kw):
    return {"name": name, "overrides": kw.pop("overrides", {}), "ttfa_s": ttfa, "rtf": rtf,
            "lsd_db": lsd, **kw}


def test_quality_bound_and_failed_checks_exclude():
    assert eligible(cand("a", 1, 1, lsd=2.0), RULES)[0]
    assert not eligible(cand("a", 1, 1, lsd=2.01), RULES)[0]
    assert not eligible(cand("a", 1, 1, lsd=None), RULES)[0]
    assert not eligible(cand("a", 1, 1, failed_checks=["nan"]), RULES)[0]


def test_ttfa_first_then_rtf():
    a, b = cand("a", 0.50, 0.40), cand("b", 0.60, 0.20)
    assert compare(a, b, RULES) == -1
    # within the tie band on TTFA, RTF decides
    c, d = cand("c", 0.50, 0.40), cand("d", 0.51, 0.20)
    assert compare(c, d, RULES) == 1
    assert [x["name"] for x in rank([a, b, c, d], RULES)] == ["d", "a", "c", "b"]


def test_full_tie_keeps_the_stage_order():
    base, other = cand("baseline", 0.5, 0.3), cand("other", 0.505, 0.301)
    assert [x["name"] for x in rank([base, other], RULES)] == ["baseline", "other"]


def test_best_merges_stage_winners_in_order():
    records = [
        rec("02_ort", [cand("default", 1.0, 0.4, overrides={"session.use_ort_format": False}),
                       cand("ort", 0.4, 0.4, overrides={"session.use_ort_format": True})]),
        rec("03_quant", [cand("int8", 0.4, 0.35, lsd=4.0, overrides={"variant": "int8"}),
                         cand("fp32", 0.4, 0.30, lsd=0.0, overrides={"variant": "fp32-recon"}),
                         cand("fp16", 0.4, 0.31, lsd=1.0, overrides={"variant": "fp16"})]),
        rec("05_chunk", [cand("primer", 0.2, 0.3, overrides={"chunking.strategy": "primer"})]),
        rec("04_coreml", [cand("ane", 0.1, 0.1, overrides={"variant": "x"})], status="skipped: no Mac"),
    ]
    out = select(records, RULES, LabConfig())
    assert out["overrides"] == {"session.use_ort_format": True, "variant": "fp32-recon",
                                "chunking.strategy": "primer"}
    assert out["config"]["variant"] == "fp32-recon"
    assert [c["candidate"] for c in out["choices"]] == ["ort", "fp32", "primer"]
    reasons = {(r["stage"], r.get("candidate")): r["reason"] for r in out["rejected"]}
    assert "bound" in reasons[("03_quant", "int8")]
    assert reasons[("04_coreml", None)].startswith("stage skipped")
    # runner-up: the cheapest swap is fp16 for fp32 (same TTFA)
    assert out["runner_up"]["differs_in"] == "03_quant"
    assert out["runner_up"]["overrides"]["variant"] == "fp16"


def test_same_records_same_choice():
    records = [rec("s", [cand("a", 0.5, 0.3), cand("b", 0.49, 0.31), cand("c", 0.9, 0.1)])]
    assert select(records, RULES)["choices"] == select(records, RULES)["choices"]


def test_no_candidates_gives_defaults():
    out = select([rec("s", [cand("bad", 0.1, 0.1, lsd=9.0)])], RULES, LabConfig())
    assert out["overrides"] == {} and out["config"] == LabConfig().to_dict()
    assert out["runner_up"] is None
