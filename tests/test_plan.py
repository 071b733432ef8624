"""labkit journal --plan: counted from the batch file, priced by measured constants."""
import json

import nbformat
import pytest
import yaml

from labkit import cli
from labkit.host import machine
from labkit.lab import costs, plan, stage_plan
from labkit.lab.costs import Costs
from labkit.measure import openings
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


def test_stage_03_prices_every_models_development_read_and_its_ruler(cfg):
    """Stage 03 reads every model on the development set as well as the held-out one, and
    its ruler judges every model but the reference on both (the plan had priced neither:
    9.9 planned minutes against 23.5 run)."""
    p = {"variants": [{"name": "q", "recipe": "static"}], "heldout_ids": ["h1", "h2"],
         "sensitivity_ids": ["d1", "d2", "d3"], "token_lengths": [120], "rounds": 6,
         "calibration_ids": ["c1"]}
    sp = plan.plan_03(p, COSTS, cfg)
    entries, judged, reads = 1 + 3, 2, 2 + 3
    assert sp.timed_runs == entries * (1 + 6) + (1 + 2) * reads + judged * reads
    run = COSTS.run_s(120)
    assert sp.seconds == pytest.approx(
        (entries + judged * plan.RULER_BUILDS) * COSTS.session_s + entries * 7 * run
        + (1 + 2) * reads * run * 2 + judged * reads * run * plan.RULER_RUNS + 1 * run * 3)


def test_many_layouts_are_planned_as_a_screen_and_the_leaders_in_full(cfg):
    coreml = {"name": "coreml", "sessions": 1, "session": {"providers": ["CoreMLExecutionProvider"]}}
    p = {"candidates": [{"name": f"cpu {i}", "sessions": 1} for i in range(4)] + [coreml],
         "texts": ["paragraph"], "rounds": None, "screen_text": "phrase", "screen_rounds": 2,
         "confirm_top": 2}
    here, mac = plan.plan_06(p, COSTS, cfg), plan.plan_06({**p, "_accelerators": True}, COSTS, cfg)
    assert (here.candidates, mac.candidates) == (4, 5)  # CoreML layouts build only on the Mac
    k = default_rounds(4)  # the first, two leaders and the A/A control
    assert here.timed_runs == 5 * 2 + 4 * k and mac.timed_runs == 6 * 2 + 4 * k
    assert here.seconds == (5 * COSTS.session_s + 5 * 2 * COSTS.synth_s(named("phrase"))
                            + 4 * k * COSTS.synth_s(named("paragraph")))
    few = plan.plan_06({**p, "candidates": p["candidates"][:3]}, COSTS, cfg)
    assert few.timed_runs == 4 * default_rounds(4) and not few.notes  # nothing to screen


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


def test_the_split_candidates_are_planned_as_a_screen_where_they_run(cfg):
    p = {"variants": ["int8"], "formats": ["MLProgram"], "compute_units": ["ALL", "CPUOnly", "CPUAndGPU"],
         "static_shapes": [False], "token_lengths": [25], "repeats": 1, "warmup": 1,
         "cpu_baseline": False, "split_variants": ["fp32-recon"], "split_token_lengths": [25, 115],
         "split_repeats": 2, "plugins": ["mlx"], "screen_length": 115, "screen_repeats": 1,
         "confirm_top": 3, "_accelerators": True}
    full = plan.plan_04({**p, "screen_length": None}, COSTS, cfg)
    screened = plan.plan_04(p, COSTS, cfg)
    # the grid's 3 CoreML points are not more than confirm_top: measured in full either way;
    # the split's 1 CPU + 3 CoreML + mlx on part B and whole: 5 accelerated, screened
    assert full.candidates == screened.candidates == 3 + 6
    assert [n for n in screened.notes if "screened" in n] == [
        "6 split candidates a variant screened at 115 tokens, 3 confirmed beside the CPU's"]
    one = 2 * COSTS.session_s + sum((1 + 2 + 1) * COSTS.run_s(n) for n in (25, 115))
    screen = 2 * COSTS.session_s + (1 + 1 + 1) * COSTS.run_s(115)
    assert abs((full.seconds - screened.seconds) - (6 * one - (6 * screen + 4 * one))) < 1e-6


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
    # kept for docs/results.md under its own name: a run here takes only its own machine's
    assert sorted(p.name for p in (art / "plans").iterdir()) == ["b.json", "b@8-cores.json"]
    assert json.loads((art / "plans" / "b.json").read_text())["cores"] is None


def test_the_run_keeps_the_plan_made_from_its_batch_file_and_the_journal_sets_them_side_by_side(
        cfg, tmp_path, capsys):
    art = tmp_path / "art"
    c = cfg.with_overrides({"artifacts_dir": str(art)})
    costs.record(c, Costs(**{**COSTS.to_dict(), "cpu": machine.current().cpu, "variant": c.variant,
                             "threads": machine.session_threads(c.session)}))
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_id = None\nconfig_path = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from labkit.config import LabConfig\nfrom labkit.lab.stage import Stage\n"
        "with Stage('01_x', LabConfig.load(config_path), run_id) as st:\n    pass")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "01_x.ipynb")
    batch = tmp_path / "b.yaml"
    batch.write_text(yaml.safe_dump({"name": "b", "stages": [
        {"name": "01_x", "notebook": str(tmp_path / "01_x.ipynb")}]}))
    flags = ["-s", f"artifacts_dir={art}", "-s", "results_md="]
    assert cli.main(["journal", "-f", str(batch), "--plan", *flags]) == 0
    assert cli.main(["journal", "-f", str(batch), *flags]) == 0
    (run,) = art.glob("run-*")
    kept = json.loads((run / "plan.json").read_text())
    assert kept["batch"] == "b" and kept["stages"][0]["stage"] == "01_x"
    md = (art / "journal" / "JOURNAL.md").read_text()
    assert "Planned before the run: ~" in md and "the 1 stage(s) that ran took" in md
    assert "planned ~" in md.split("## 01_x")[1]
    # a changed batch file makes the plan another batch's: the next run does not take it
    batch.write_text(batch.read_text() + "\n# changed\n")
    assert cli.main(["journal", "-f", str(batch), *flags]) == 0
    newest = sorted(art.glob("run-*"))[-1]
    assert newest != run and not (newest / "plan.json").exists()


def test_stage_03_counts_each_model_at_its_recipes_size_and_the_mac_batch_fits_5_gb(cfg):
    """Issue #31: stage 03's disk is the larger of its build phase and its judging phase,
    each model at its recipe's share of the reference (an fp16 model holds half a static
    one's bytes); the Mac batch's stage 03 (fp16, fp16-dec, dyn-u8 and two static variants
    beside a mixed one) plans within the 5 GB the issue allows."""
    static = {"name": "q", "recipe": "static"}
    ref_gb = stage_plan.model_gb(cfg, "fp32-recon")
    if not ref_gb:
        pytest.skip("the reference is not provisioned (labkit assets)")
    one = plan.stage_03_disk_gb(cfg, [static], "int8", False)
    half = plan.stage_03_disk_gb(cfg, [{"name": "h", "recipe": "fp16"}], "int8", False)
    assert half < one
    q = plan.RECIPE_SIZE["static"] * ref_gb
    judging = q + (q + ref_gb + stage_plan.model_gb(cfg, "int8")) + plan.SPLIT_MODELS * (ref_gb + q)
    assert one == pytest.approx(max(ref_gb + 2 * q, judging))
    batch = yaml.safe_load(open(cfg.resolve("experiments/m1max.yaml")))
    p = next(s["parameters"] for s in batch["stages"] if s["name"] == "03_quantization")
    assert plan.stage_03_disk_gb(cfg, p["variants"], "int8", True) <= 5.0


def _stage_05(**over):
    return {"variants": [{}, {"schedule": "adaptive"}], "rounds": 6, "stream_repeats": 1,
            "listener_rounds": 2, "load_processes": 1, "article_text": "article",
            "article_repeats": 1, "opening_texts": [], "model": "configured", **over}


def test_stage_05_prices_its_sweeps_as_first_chunks_and_its_loaded_runs_slower(cfg):
    """Stage 05's sweeps time the first chunk only, and its listener rows and the article run
    idle and again beside a busy process (the plan had priced every call as a whole paragraph
    and a loaded run as an idle one: 45.8 planned minutes against 22.8 run in
    run-20261205-020927)."""
    base = plan.plan_05(_stage_05(), COSTS, cfg)
    more = plan.plan_05(_stage_05(rounds=12), COSTS, cfg)
    # six more rounds of the variants and the contender cost six first pieces each
    assert more.seconds - base.seconds == pytest.approx(3 * 6 * COSTS.run_s(plan.FIRST_PIECE_TOKENS))
    assert more.timed_runs - base.timed_runs == 3 * 6
    idle = plan.plan_05(_stage_05(load_processes=0), COSTS, cfg)
    listen = 3 * 2 * COSTS.synth_s(named("paragraph"))  # 3 streams heard twice
    article = COSTS.synth_s(named("article"))
    # on 2 threads and 2 cores one busy process halves the speed (cpuload.slowdown): each
    # loaded run costs two idle ones
    assert base.seconds - idle.seconds == pytest.approx(2 * (listen + article))
    assert "runs beside 1 busy process(es) priced 2.00x slower (2 threads on 2 cores)" in base.notes
    # on the Mac's 8 cores one busy process costs little
    mac = plan.plan_05(_stage_05(), COSTS.for_cores(8), cfg)
    assert "runs beside 1 busy process(es) priced 1.14x slower (8 threads on 8 cores)" in mac.notes
    opening = plan.plan_05(_stage_05(opening_texts=["opening-5", "opening-50"]), COSTS, cfg)
    assert opening.timed_runs > base.timed_runs and opening.seconds > base.seconds
    # each opening text is compared with the phrase in rounds of its own (openings.sweep):
    # two texts more cost two more such comparisons, idle and loaded, not more rounds of all
    four = plan.plan_05(_stage_05(opening_texts=list(openings.TEXTS)), COSTS, cfg)
    entries = 2 + 1 + len(openings.TRIED)  # the phrase, its A/A, the configured option, the tried
    assert four.timed_runs - opening.timed_runs == 2 * 2 * entries * default_rounds(entries)


def test_stage_05_on_the_earned_model_is_priced_at_its_recorded_speed(cfg, tmp_path):
    """``model: earned`` streams the model best.json picked: the plan prices its runs at the
    speed that pick measured against the configured model (stage 03's ratio); without a
    best.json, at the configured model's."""
    model = tmp_path / "qdq-x.onnx"
    model.write_bytes(b"a model file")  # resolve checks that it exists; nothing loads it
    picks = {"variant": "qdq-x", "model_path": str(model)}
    best = tmp_path / "best.json"
    best.write_text(json.dumps({
        "config": cfg.with_overrides(picks).to_dict(), "overrides": picks,
        "provenance": {"run_id": "run-x"},
        "choices": [{"stage": "03_quantization", "baseline": cfg.variant, "ratio": 2.0,
                     "overrides": picks}]}))
    here = cfg.with_overrides({"serve.best_json": str(best)})
    configured = plan.plan_05(_stage_05(), COSTS, here)
    earned = plan.plan_05(_stage_05(model="earned"), COSTS, here)
    builds = 3 * COSTS.session_s  # not compute on the model: as before
    assert earned.seconds - builds == pytest.approx((configured.seconds - builds) / 2)
    assert ("streams the model the stages before pick, priced at qdq-x, 2.00x int8 in "
            "03_quantization of best.json (run run-x)") in earned.notes
    nothing = cfg.with_overrides({"serve.best_json": str(tmp_path / "none.json")})
    plain = plan.plan_05(_stage_05(model="earned"), COSTS, nothing)
    assert plain.seconds == pytest.approx(configured.seconds)
    assert ("streams the model the stages before pick, priced at the configured model: "
            "no best.json") in plain.notes
    # a ratio measured against another model says nothing of this one's speed
    other = json.loads(best.read_text())
    other["choices"][0]["baseline"] = "fp32-recon"
    best.write_text(json.dumps(other))
    against = plan.plan_05(_stage_05(model="earned"), COSTS, here)
    assert against.seconds == pytest.approx(configured.seconds)
    assert ("streams the model the stages before pick, priced at best.json (run run-x): no speed "
            "of qdq-x against int8 recorded") in against.notes
