"""Stage 05 streams on the model the stages before it earned: best.json's model and session
picks (labkit.best_config.earned_model), never its chunking, and the configured model where
best.json cannot say."""
import json

import pytest

from labkit.best_config import earned_model, model_for
from labkit.config import LabConfig
from labkit.lab import s05_chunking as s05


def _best(path, cfg: LabConfig, overrides: dict, run_id: str = "run-x") -> str:
    path.write_text(json.dumps({"config": cfg.to_dict(), "overrides": overrides,
                                "provenance": {"run_id": run_id}}))
    return str(path)


def test_the_model_and_session_picks_are_taken_and_the_chunking_is_left(tmp_path):
    model = tmp_path / "qdq-x.onnx"
    model.write_bytes(b"a model file")  # resolve checks that it exists; nothing loads it
    picks = {"variant": "qdq-x", "model_path": str(model), "session.intra_op_threads": 1,
             "chunking.primer_max_words": 5, "pipeline.sessions": 2}
    best = _best(tmp_path / "best.json", LabConfig().with_overrides(picks), picks)
    got, source = earned_model(LabConfig(), best)
    assert got == {"variant": "qdq-x", "model_path": str(model), "session.intra_op_threads": 1}
    assert source == "best.json (run run-x)"
    # a stage's config is a whole file (every setting in it given, as the batch writes it):
    # best.json's model still wins there; what the config already holds is not repeated
    whole = tmp_path / "config.yaml"
    whole.write_text(LabConfig().with_overrides({"session.intra_op_threads": 1}).to_yaml())
    got, _ = earned_model(LabConfig.load(str(whole)), best)
    assert got == {"variant": "qdq-x", "model_path": str(model)}


def test_without_a_usable_best_json_the_configured_model_streams_and_the_record_says_why(tmp_path):
    assert earned_model(LabConfig(), str(tmp_path / "none.json")) == ({}, "the configured model: no best.json")
    # a best.json whose model file is gone (its run folder removed)
    gone = {"variant": "qdq-x", "model_path": str(tmp_path / "gone.onnx")}
    best = _best(tmp_path / "best.json", LabConfig().with_overrides(gone), gone, "run-y")
    got, source = earned_model(LabConfig(), best)
    assert got == {} and source.startswith("the configured model: best.json cannot be used")
    assert "no longer exists" in source
    # a best.json that earned only a chunking
    chunk = {"chunking.primer_max_words": 5}
    best = _best(tmp_path / "best.json", LabConfig().with_overrides(chunk), chunk, "run-z")
    assert earned_model(LabConfig(), best) == ({}, "the configured model: best.json (run run-z) picked no other")


def test_the_configured_model_is_the_config_unchanged_and_an_unknown_word_is_refused_before_any_work():
    cfg = LabConfig()
    same, what = model_for(cfg, "configured")
    assert same is cfg and what == {"variant": "int8", "model_path": None, "settings": {},
                                    "from": "the configured model"}
    with pytest.raises(ValueError, match=r"model='fastest': expected one of \('configured', 'earned'\)"):
        s05.run(LabConfig(), None, variants=[{}], model="fastest")
