"""labkit journal --plan: counted from the batch file, priced by measured constants."""
import json

import yaml

from labkit import cli, machine
from labkit.lab import costs, plan
from labkit.lab.costs import Costs
from labkit.measure.compare import default_rounds
from labkit.measure.texts import named

COSTS = Costs(rtf=0.5, audio_s_per_word=0.4, audio_s_per_token=0.05, session_s=2.0, threads=2,
              variant="int8", cpu="test cpu", measured="2026-12-03T00:00:00+00:00")


def test_a_stage_is_counted_from_its_parameters_and_priced(cfg):
    p = {"candidates": [{"name": "single", "sessions": 1}, {"name": "dual", "sessions": 2}],
         "texts": ["paragraph"], "rounds": None}
    sp = plan.plan_06(p, COSTS, cfg)
    k = default_rounds(3)  # two candidates and the A/A control
    assert (sp.candidates, sp.session_builds, sp.timed_runs) == (2, 4, 3 * k)
    assert sp.seconds == 4 * COSTS.session_s + 3 * k * COSTS.synth_s(named("paragraph"))


def test_the_plan_has_a_total_and_more_cores_plan_less(cfg):
    stages = [("06_dual_sessions", "notebooks/06_dual_sessions.ipynb",
               {"texts": ["phrase"], "candidates": [{"name": "single", "sessions": 1}]}),
              ("08_endpoint", "notebooks/08_endpoint.ipynb", {"texts": ["phrase"], "soak_requests": 3})]
    here = plan.plan_batch(stages, COSTS, cfg, kernel_s=5.0)
    assert [s["stage"] for s in here["stages"]] == ["06_dual_sessions", "08_endpoint"]
    assert here["total"]["minutes"] == round(sum(s["seconds"] for s in here["stages"]) / 60, 1)
    assert set(here["total"]) == {"minutes", "disk_gb"}
    mac = plan.plan_batch(stages, COSTS.for_cores(8), cfg, kernel_s=5.0)
    assert mac["total"]["minutes"] < here["total"]["minutes"]
    text = "\n".join(plan.plan_lines(here, "measured here"))
    assert "06_dual_sessions" in text and "notebook start 5 s" in text


def test_coreml_points_are_planned_only_where_they_run(cfg):
    p = {"variants": ["int8"], "formats": ["MLProgram"], "compute_units": ["ALL", "CPUOnly"],
         "static_shapes": [False], "token_lengths": [25], "repeats": 1, "warmup": 1,
         "cpu_baseline": True, "split_variants": [], "plugins": []}
    here = plan.plan_04(p, COSTS, cfg)
    mac = plan.plan_04({**p, "_accelerators": True}, COSTS, cfg)
    assert here.candidates == 1 and mac.candidates == 3  # the CPU baseline; + two CoreML points
    assert mac.seconds > here.seconds


def test_labkit_journal_plan_json(cfg, tmp_path, capsys, monkeypatch):
    art = tmp_path / "art"
    c = cfg.with_overrides({"artifacts_dir": str(art)})
    costs.record(c, Costs(**{**COSTS.to_dict(), "cpu": machine.current().cpu, "variant": c.variant,
                             "threads": machine.session_threads(c.session)}))
    batch = tmp_path / "b.yaml"
    batch.write_text(yaml.safe_dump({"name": "b", "stages": [
        {"name": "06_dual_sessions", "notebook": "notebooks/06_dual_sessions.ipynb",
         "parameters": {"texts": ["phrase"], "candidates": [{"name": "single", "sessions": 1}]}}]}))
    assert cli.main(["journal", "-f", str(batch), "--plan", "--json", "-s", f"artifacts_dir={art}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["minutes"] > 0 and out["stages"][0]["stage"] == "06_dual_sessions"
    assert out["costs"]["rtf"] == COSTS.rtf  # the recorded constants, not a new measurement
    assert not list(art.glob("run-*"))  # nothing ran
    assert cli.main(["journal", "-f", str(batch), "--plan", "--json", "--cores", "8",
                     "-s", f"artifacts_dir={art}"]) == 0
    assert json.loads(capsys.readouterr().out)["costs"]["threads"] == 8
