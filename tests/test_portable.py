"""best.json is portable: paths inside the checkout are written relative to it and read
back against it, so a moved or fresh checkout serves the same choice."""
import json

from labkit.config import REPO_ROOT, LabConfig, repo_relative
from labkit.lab.journal import write_journal
from labkit.lab.stage import write_record
from labkit.best_config import resolve


def test_paths_inside_the_checkout_become_relative_and_others_stay():
    inside = str(REPO_ROOT / "artifacts" / "run-1" / "03_quantization" / "models" / "q.onnx")
    best = {"overrides": {"model_path": inside, "variant": "q"},
            "choices": [{"overrides": {"model_path": inside}}],
            "provenance": {"records": [inside, "/elsewhere/metrics.json"]}, "n": 3}
    out = repo_relative(best)
    assert out["overrides"] == {"model_path": "artifacts/run-1/03_quantization/models/q.onnx",
                                "variant": "q"}
    assert out["choices"][0]["overrides"]["model_path"] == out["overrides"]["model_path"]
    assert out["provenance"]["records"] == [out["overrides"]["model_path"], "/elsewhere/metrics.json"]
    assert out["n"] == 3
    assert LabConfig().resolve(out["overrides"]["model_path"]) == REPO_ROOT / out["overrides"]["model_path"]
    # a path that only starts like the checkout's is not inside it
    twin = str(REPO_ROOT) + "-other/x.onnx"
    assert repo_relative(twin) == twin


def test_the_journal_writes_best_json_relative_to_the_checkout(tmp_path, cfg, monkeypatch):
    checkout = tmp_path / "checkout"  # a checkout of our own, artifacts inside it
    art = checkout / "artifacts"
    monkeypatch.setattr("labkit.config.REPO_ROOT", checkout)
    c = cfg.with_overrides({"artifacts_dir": str(art), "results_md": ""})
    write_record(c, "run-1", "00_baseline", "ok")
    write_journal(c, "run-1")
    best = json.loads((art / "best.json").read_text())
    assert best["provenance"]["records"] == ["artifacts/run-1/00_baseline/metrics.json"]
    assert str(checkout) not in (art / "best.json").read_text()


def test_a_relative_model_path_in_best_json_serves_from_the_checkout(tmp_path, cfg, monkeypatch):
    checkout = tmp_path / "checkout"
    model = checkout / "artifacts" / "run-1" / "03_quantization" / "models" / "int8-copy.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"a model file")  # resolve checks that it exists; nothing loads it
    monkeypatch.setattr("labkit.config.REPO_ROOT", checkout)
    rel = "artifacts/run-1/03_quantization/models/int8-copy.onnx"
    chosen = cfg.with_overrides({"model_path": rel})
    best = checkout / "artifacts" / "best.json"
    best.write_text(json.dumps({"config": chosen.to_dict(), "overrides": {"model_path": rel},
                                "provenance": {"run_id": "run-1"}}))
    served = resolve(cfg, best_json=str(best))
    assert served.source == "best.json"
    assert served.cfg.resolve(served.cfg.model_path) == model
