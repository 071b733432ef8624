"""session.allow_spinning and stage 02's screen beside a busy process (labkit.lab.loaded_screen).

The session config key and its default come from ONNX Runtime's threading guide
(onnxruntime.ai/docs/performance/tune-performance/threading.html: the Python defaults set
``session.intra_op.allow_spinning`` to "1")."""
import dataclasses

import pytest

from labkit.config import ConfigError, LabConfig, SelectionConfig, SessionConfig
from labkit.engine import assets, graph_cache
from labkit.engine import split_runtime as sr
from labkit.engine.sessions import SPINNING, session_options
from labkit.lab import loaded_screen, plan
from labkit.lab import s02_ort_conversion as s02
from labkit.lab.costs import Costs
from labkit.measure.compare import default_rounds
from labkit.measure.session_settings import token_inputs

COSTS = Costs(rtf=0.5, audio_s_per_word=0.4, audio_s_per_token=0.05, session_s=2.0, threads=2,
              variant="int8", cpu="test cpu", measured="2026-12-05T00:00:00+00:00")


def test_the_session_says_whether_its_threads_spin():
    assert SessionConfig().allow_spinning is False
    assert session_options(SessionConfig()).get_session_config_entry(SPINNING) == "0"
    assert session_options(SessionConfig(allow_spinning=True)).get_session_config_entry(SPINNING) == "1"
    cfg = LabConfig().with_overrides(["session.allow_spinning=true"])
    assert cfg.session.allow_spinning is True
    with pytest.raises(ConfigError, match="session.allow_spinning='yes': must be true or false"):
        SessionConfig(allow_spinning="yes").validate()


def test_the_split_engines_part_a_never_spins_and_part_b_follows_the_session(split_parts, engine):
    cfg = LabConfig().with_overrides(["session.allow_spinning=true", "chunking.prosody=sentence"])
    eng = sr.SplitEngine(cfg, split_parts, voices=engine.voices, buckets=[])
    assert eng.a.get_session_options().get_session_config_entry(SPINNING) == "0"
    assert eng.b.get_session_options().get_session_config_entry(SPINNING) == "1"
    assert sr.PHASE_SESSION.allow_spinning is False


ROW = {"drift_vs_default_db": 0.0}


def _settle(idle, loaded, taken=(), drift=0.0):
    base = SessionConfig()
    cands = s02.screen_candidates(base, toggles=["allow_spinning"], ort_format=False, arch="x86_64")
    label = "allow_spinning=True"
    assert [c.label for c in cands] == ["default", label]
    best = dataclasses.replace(base, allow_spinning=True) if taken else base
    rows_i = {label: {"ci95": idle, "drift_vs_default_db": drift}}
    rows_l = {label: {"ci95": loaded, "drift_vs_default_db": drift}}
    return loaded_screen.settle(base, best, list(taken), cands, rows_i, rows_l, 1.0,
                                SelectionConfig())


def test_a_flip_faster_idle_is_kept_only_where_it_is_not_slower_under_load():
    best, taken, why = _settle([1.06, 1.10], [0.98, 1.04], taken=["allow_spinning=True"])
    assert best.allow_spinning is True and taken == ["allow_spinning=True"]
    assert why["allow_spinning=True"].endswith("kept")
    # the figures this machine gave spinning: faster idle would not save it from 0.80-0.90x loaded
    best, taken, why = _settle([1.06, 1.10], [0.80, 0.90], taken=["allow_spinning=True"])
    assert best.allow_spinning is False and taken == []
    assert why["allow_spinning=True"].endswith("dropped")


def test_a_flip_not_earned_idle_is_taken_when_earned_under_load_and_not_slower_idle():
    best, taken, _ = _settle([0.97, 1.02], [1.12, 1.25])
    assert best.allow_spinning is True and taken == ["allow_spinning=True"]
    for idle, loaded, drift in (([0.90, 0.97], [1.12, 1.25], 0.0),   # slower idle
                                ([0.97, 1.02], [0.99, 1.25], 0.0),   # not beyond the threshold
                                ([0.97, 1.02], [1.12, 1.25], 2.0)):  # its audio moved
        best, taken, why = _settle(idle, loaded, drift=drift)
        assert best.allow_spinning is False and taken == []
        assert why["allow_spinning=True"] == "not earned idle or under load"
    assert not loaded_screen.not_slower({"error": "could not make the session"})


def test_the_plan_prices_the_loaded_screen_slowed_by_its_busy_processes(cfg):
    p = {"variants": ["int8"], "toggles": ["enable_mem_pattern"], "token_lengths": [30],
         "screen_length": 60, "rounds": None, "cold_rounds": 2}
    bare = plan.plan_02(p, COSTS, cfg)
    both = plan.plan_02({**p, "loaded_toggles": ["allow_spinning"]}, COSTS, cfg)
    k3, k4 = default_rounds(3), default_rounds(4)
    # the flip joins the idle screen (4 entries, not 3) and has a screen of its own (3 entries)
    assert both.timed_runs - bare.timed_runs == 4 * (1 + k4) - 3 * (1 + k3) + 3 * (1 + k3)
    assert both.candidates == bare.candidates + 1
    extra = (both.seconds - bare.seconds
             - (4 * (1 + k4) - 3 * (1 + k3)) * COSTS.run_s(60) - 4 * COSTS.session_s)
    assert extra == pytest.approx(3 * (1 + k3) * COSTS.run_s(60) * 2.0)  # 2 threads on 1 free core


def test_the_loaded_screen_times_the_real_model_beside_a_busy_process(cfg, engine):
    """One round each way on the int8 model: rows with intervals, and no drift (whether a
    thread spins changes when work runs, not what it computes)."""
    model = assets.model_path(cfg, "int8")
    feeds = token_inputs(cfg, [30])[30]
    cands = s02.screen_candidates(cfg.session, toggles=["allow_spinning"], ort_format=False,
                                  arch="x86_64")
    said = []
    out = loaded_screen.loaded_screen(model, cands, feeds, graph_cache.ort_cache_dir(cfg), 1, 0,
                                      said.append, 1, None, load_processes=1)
    row = out["rows"]["allow_spinning=True"]
    assert row["drift_vs_default_db"] == 0.0 and len(row["ci95"]) == 2 and row["median_s"] > 0
    assert said[0] == "screening allow_spinning=True beside 1 busy process(es)"
    rec = {"screen": {"allow_spinning=True": {"speedup": 1.0, "ci95": [0.97, 1.02]}},
           "screen_loaded": out["rows"], "loaded_verdicts": {"allow_spinning=True": "dropped"},
           "screen_noise_band": [0.98, 1.02], "screen_loaded_noise_band": list(out["comparison"].noise_band)}
    table = loaded_screen.table(rec)
    assert "| allow_spinning=True | 1.000 | [0.970, 1.020] |" in table and "dropped" in table
    assert loaded_screen.report({"int8": {**rec, "load_processes": 1}}).startswith(
        "### int8, beside 1 busy process(es)\n\n| candidate |")
    assert loaded_screen.report({"int8": {}}).startswith("No setting was screened under load")
