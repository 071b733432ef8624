"""The papermill batch: records, a forced failure, --only, resume, journal, best.json."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import psutil
import pytest
import yaml

from labkit import cli, progress
from labkit.lab import batch as batch_mod
from labkit.lab.batch import failed_stages, run_batch
from labkit.lab.checkpoint import Checkpoint
from labkit.config import ConfigError, LabConfig

STAGE_CODE = """
from labkit.config import LabConfig
from labkit.lab.stage import Stage
cfg = LabConfig.load(config_path, overrides)
with Stage(stage_name, cfg, run_id, {"value": value}) as st:
    if fail:
        raise RuntimeError("forced failure (fail=True)")
    st.metrics["headline"] = {"ttfa_s": value, "rtf": 0.3}
    st.metrics["candidates"] = [
        {"name": "base", "baseline": True, "overrides": {}, "criterion": "ttfa_s",
         "measured": ["ttfa_s", "rtf"], "ttfa_s": value, "rtf": 0.3, "lsd_db": 0.0,
         "quality": {"verdict": "pass", "reasons": [], "basis": "test"}},
        {"name": "fast", "overrides": {"chunking.max_tokens": 123}, "criterion": "ttfa_s",
         "ratio": 2.0, "ci95": [1.8, 2.2], "measured": ["ttfa_s", "rtf", "quality"],
         "ttfa_s": value / 2, "rtf": 0.3, "lsd_db": 0.5,
         "quality": {"verdict": "pass", "reasons": [], "basis": "test"}},
    ]
"""


def _notebook(path, stage_name, broken=False):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        f"run_id = None\nconfig_path = None\noverrides = []\nfail = False\nvalue = 1.0\nstage_name = {stage_name!r}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("test stage"), params,
                nbformat.v4.new_code_cell("import nonexistent_module_xyz" if broken else STAGE_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    stages = []
    for name, broken in (("01_a", False), ("02_b", False), ("03_broken", True)):
        nb = _notebook(root / f"{name}.ipynb", name, broken)
        stages.append({"name": name, "notebook": str(nb), "parameters": {"value": 0.8}})
    path = root / "batch.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "stages": stages}))
    cfg = LabConfig().with_overrides({"artifacts_dir": str(root / "artifacts"),
                                      "results_md": str(root / "docs" / "results.md")})
    run_id = run_batch(path, cfg=cfg, parameters={"02_b.fail": "true"})
    return {"root": root, "path": path, "cfg": cfg, "run_id": run_id,
            "art": root / "artifacts"}


def _record(b, stage, run_id=None):
    return json.loads((b["art"] / (run_id or b["run_id"]) / stage / "metrics.json").read_text())


def test_each_stage_leaves_a_record(batch):
    ok = _record(batch, "01_a")
    assert ok["status"] == "ok" and ok["params"] == {"value": 0.8}
    assert ok["environment"]["onnxruntime"] and ok["config"]["voice"] == "af_heart"
    forced = _record(batch, "02_b")
    assert forced["status"].startswith("failed: RuntimeError: forced failure")
    assert "traceback" in forced["metrics"]
    broken = _record(batch, "03_broken")
    assert broken["status"].startswith("failed:") and "nonexistent_module_xyz" in broken["status"]
    # the executed notebooks are kept, failed ones included
    assert (batch["art"] / batch["run_id"] / "02_b" / "02_b.ipynb").exists()
    assert (batch["art"] / batch["run_id"] / "03_broken" / "03_broken.ipynb").exists()


def test_journal_and_best_json(batch):
    md = (batch["art"] / "journal" / "JOURNAL.md").read_text()
    assert batch["run_id"] in md
    assert "## 01_a" in md and "## 02_b" in md and "failed: RuntimeError" in md
    assert (batch["art"] / "journal" / "JOURNAL.html").read_text().startswith("<!doctype html>")
    best = json.loads((batch["art"] / "best.json").read_text())
    assert best["overrides"] == {"chunking.max_tokens": 123}
    assert best["provenance"]["run_id"] == batch["run_id"]
    assert best["config"]["chunking"]["max_tokens"] == 123
    assert [(c["stage"], c["choice"], c["ci95"]) for c in best["choices"]] == [("01_a", "fast", [1.8, 2.2])]
    results = (batch["root"] / "docs" / "results.md").read_text()
    assert batch["run_id"] in results and "| 01_a | fast | base | ttfa_s | 2 | [1.8, 2.2] |" in results


def test_resume_skips_stages_already_ok_and_reruns_failed(batch, capsys):
    run_batch(batch["path"], cfg=batch["cfg"], resume=batch["run_id"], only=["01_a", "02_b"])
    out = capsys.readouterr().out
    assert "[01_a] already ok" in out
    # without the forced-failure parameter, 02_b's default fail=False applies: it now passes
    assert "[02_b] ok" in out
    assert _record(batch, "02_b")["status"] == "ok"
    assert _record(batch, "03_broken")["status"].startswith("failed:")  # untouched


def test_second_run_is_compared_with_the_first(batch):
    second = run_batch(batch["path"], cfg=batch["cfg"], only=None,
                       parameters={"01_a.value": "2.0"})
    assert second != batch["run_id"]
    md = (batch["art"] / "journal" / "JOURNAL.md").read_text()
    assert f"previous run of this batch: {batch['run_id']}" in md
    assert "REGRESSED +150%" in md  # ttfa_s went 0.8 -> 2.0


def test_only_unknown_stage_is_an_error(batch):
    with pytest.raises(ConfigError, match="no such stage"):
        run_batch(batch["path"], cfg=batch["cfg"], only=["99_nope"])


def test_only_never_writes_into_a_run_of_another_batch(batch, tmp_path):
    # a smoke-like batch with a stage of the same name must start its own run
    other = tmp_path / "other.yaml"
    spec = yaml.safe_load(batch["path"].read_text())
    other.write_text(yaml.safe_dump({"name": "other", "stages": spec["stages"][:1]}))
    before = _record(batch, "01_a")
    run = run_batch(other, cfg=batch["cfg"], only=["01_a"])
    assert run != batch["run_id"]
    assert _record(batch, "01_a") == before  # the first batch's record is untouched
    # --only of the first batch goes back to its own newest run, not the other's
    again = run_batch(batch["path"], cfg=batch["cfg"], only=["01_a"])
    assert again != run
    # and resuming a run with another batch's file is refused, naming both
    with pytest.raises(ConfigError, match="made by batch 'other'"):
        run_batch(batch["path"], cfg=batch["cfg"], resume=run, only=["01_a"])


def test_the_journal_says_whether_the_previous_run_chose_the_same(batch):
    third = run_batch(batch["path"], cfg=batch["cfg"], only=None)
    best = json.loads((batch["art"] / "best.json").read_text())
    rep = best["reproducibility"]
    assert rep["previous_run"] not in (None, third) and rep["same"] is True and rep["differences"] == []
    assert "made the same choice in every stage" in (batch["root"] / "docs" / "results.md").read_text()
    assert "made the same choice in every stage" in (batch["art"] / "journal" / "JOURNAL.md").read_text()


def test_the_batch_times_each_notebook_and_the_page_shows_it(batch):
    times = json.loads((batch["art"] / batch["run_id"] / "wall_times.json").read_text())
    assert set(times) >= {"01_a", "02_b", "03_broken"} and all(v > 0 for v in times.values())
    assert "| stage | notebook wall time | inside the stage |" in (
        batch["root"] / "docs" / "results.md").read_text()


def test_a_partial_run_does_not_replace_the_results_page(batch, tmp_path):
    cfg = batch["cfg"].with_overrides({"artifacts_dir": str(tmp_path / "artifacts"),
                                       "results_md": str(tmp_path / "results.md")})
    run = run_batch(batch["path"], cfg=cfg, only=["01_a"])  # a new run with one stage of three
    assert (tmp_path / "artifacts" / run / "01_a" / "metrics.json").exists()
    assert (tmp_path / "artifacts" / "best.json").exists()
    assert not (tmp_path / "results.md").exists()
    run_batch(batch["path"], cfg=cfg, resume=run)  # the rest: now the page is written
    assert run in (tmp_path / "results.md").read_text()


def _code_notebook(path, code):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_id = None\nconfig_path = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _one_stage_batch(root, code, name="01_x"):
    nb = _code_notebook(root / f"{name}.ipynb", code)
    path = root / "batch.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "stages": [{"name": name, "notebook": str(nb)}]}))
    return path


PROGRESS_CODE = """
from labkit import progress
from labkit.config import LabConfig
from labkit.lab.stage import Stage
with Stage("01_x", LabConfig.load(config_path), run_id) as st:
    for _ in progress.steps(["a", "b", "c"], "candidates"):
        pass
"""


def test_a_stage_reports_its_steps_to_the_batch_one_line_each(tmp_path):
    path = _one_stage_batch(tmp_path, PROGRESS_CODE)
    cfg = LabConfig().with_overrides({"artifacts_dir": str(tmp_path / "art"), "results_md": ""})
    out = io.StringIO()
    with progress.use(progress.PlainSink(stream=out)):
        run_id = run_batch(path, cfg=cfg)
    lines = out.getvalue().splitlines()
    # the kernel's task, drawn under the batch's own "stages" line, one line per step
    assert [line.split(" (")[0] for line in lines if "candidates" in line] == [
        "  candidates 1/3 a", "  candidates 2/3 b", "  candidates 3/3 c"]
    assert any(line.startswith("stages 1/1 01_x: ok") for line in lines)
    assert not list((tmp_path / "art" / run_id).glob(".progress-*"))  # cleaned up



SKIP_CODE = """
from labkit.config import LabConfig
from labkit.lab.stage import Stage
with Stage("01_x", LabConfig.load(config_path), run_id) as st:
    st.skip("nothing to do on this machine")
"""


def test_labkit_journal_exits_nonzero_when_a_stage_failed_and_zero_when_skipped(tmp_path, capsys):
    art = tmp_path / "art"
    path = _one_stage_batch(tmp_path, SKIP_CODE)
    assert cli.main(["journal", "-f", str(path), "-s", f"artifacts_dir={art}", "-s", "results_md="]) == 0
    (tmp_path / "b").mkdir()
    broken = _one_stage_batch(tmp_path / "b", "raise RuntimeError('boom')")
    assert cli.main(["journal", "-f", str(broken), "-s", f"artifacts_dir={art}", "-s", "results_md="]) == 1
    err = capsys.readouterr().err
    assert "1 stage(s) failed" in err and "01_x" in err
    # the journal was written before the exit status
    assert "failed: RuntimeError: boom" in (art / "journal" / "JOURNAL.md").read_text()
    run_id = (art / "LATEST").read_text().strip()
    assert failed_stages(broken, run_id, LabConfig().with_overrides({"artifacts_dir": str(art)})) == ["01_x"]


CHILD_CODE = """
import time
from pathlib import Path
from labkit.measure.load import competing_load
with competing_load(1, settle_s=0) as load:
    Path(ready).write_text(" ".join(map(str, load.pids)))
    time.sleep(600)
"""


def _wait_for(path, proc, within_s=120.0):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    assert path.exists(), f"{path} never appeared"


def _all_gone(pids, within_s=30.0):
    deadline = time.monotonic() + within_s
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    left.discard(pid)
            except psutil.NoSuchProcess:
                left.discard(pid)
        time.sleep(0.2)
    return left


def test_sigterm_to_labkit_journal_leaves_no_process_of_it(tmp_path):
    ready = tmp_path / "ready"
    nb = _code_notebook(tmp_path / "01_x.ipynb", CHILD_CODE)
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "stages": [
        {"name": "01_x", "notebook": str(nb), "parameters": {"ready": str(ready)}}]}))
    art = tmp_path / "art"
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "journal", "-f", str(path),
                             "-s", f"artifacts_dir={art}", "-s", "results_md="],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, proc)
        load_pids = [int(p) for p in ready.read_text().split()]
        tree = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert set(load_pids) <= set(tree) and len(tree) >= 2  # the kernel and its load process
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _all_gone(tree) == set()
    record = json.loads(next(art.glob("run-*/01_x/metrics.json")).read_text())
    assert record["status"].startswith("failed: stopped")


CANDIDATES_CODE = """
import random, time
from pathlib import Path
from labkit.config import LabConfig
from labkit.lab.checkpoint import Checkpoint
from labkit.lab.stage import Stage
with Stage("01_x", LabConfig.load(config_path), run_id) as st:
    ck = Checkpoint(st.path("finished"))
    rows = []
    for name in ["a", "b", "c", "d"]:
        def measure(name=name):
            with open(log, "a") as f:
                f.write(name + "\\n")  # every measurement that starts
            if name == "c" and Path(stall).exists():
                time.sleep(600)  # the first run is killed here
            return {"name": name, "value": random.random()}
        rows.append(ck.run({"candidate": name}, measure))
    st.metrics["rows"] = rows
    st.metrics["reused"] = ck.reused
"""


def test_a_killed_stage_resumes_from_its_last_finished_candidate(tmp_path):
    log, stall = tmp_path / "measured.txt", tmp_path / "stall"
    stall.touch()
    nb = _code_notebook(tmp_path / "01_x.ipynb", CANDIDATES_CODE)
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "stages": [
        {"name": "01_x", "notebook": str(nb), "parameters": {"log": str(log), "stall": str(stall)}}]}))
    art = tmp_path / "art"
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "journal", "-f", str(path),
                             "-s", f"artifacts_dir={art}", "-s", "results_md="],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (log.exists() and "c" in log.read_text().split()):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        tree = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.kill()  # SIGKILL: no handler runs, no record is written
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _all_gone(tree) == set()  # the kernel went with it (ipykernel's parent poller)
    (run_dir,) = art.glob("run-*")
    finished = {json.loads(p.read_text())["result"]["name"]: json.loads(p.read_text())["result"]
                for p in (run_dir / "01_x" / "finished").glob("*.json")}
    assert sorted(finished) == ["a", "b"]
    assert not (run_dir / "01_x" / "metrics.json").exists()

    stall.unlink()
    cfg = LabConfig().with_overrides({"artifacts_dir": str(art), "results_md": ""})
    assert run_batch(path, cfg=cfg, resume=run_dir.name) == run_dir.name
    record = json.loads((run_dir / "01_x" / "metrics.json").read_text())
    assert record["status"] == "ok"
    rows = {r["name"]: r for r in record["metrics"]["rows"]}
    assert rows["a"] == finished["a"] and rows["b"] == finished["b"]  # the same records
    assert [json.loads(k)["candidate"] for k in record["metrics"]["reused"]] == ["a", "b"]
    assert log.read_text().split() == ["a", "b", "c", "c", "d"]  # a and b were not redone


def test_a_rerun_without_resume_measures_afresh(tmp_path):
    ck = Checkpoint(tmp_path / "finished", resume=False)
    ck.run({"candidate": "a"}, lambda: {"v": 1})
    again = Checkpoint(tmp_path / "finished", resume=False)
    assert again.finished() == 0
    assert again.run({"candidate": "a"}, lambda: {"v": 2}) == {"v": 2}
    resumed = Checkpoint(tmp_path / "finished", resume=True)
    assert resumed.run({"candidate": "a"}, lambda: {"v": 3}) == {"v": 2}
    assert resumed.run({"candidate": "a", "repeats": 2}, lambda: {"v": 4}) == {"v": 4}  # new key


def test_two_runs_started_within_a_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_mod, "new_run_id", lambda: "run-20261203-000000")
    cfg = LabConfig().with_overrides({"artifacts_dir": str(tmp_path)})
    first = batch_mod.fresh_run_id(cfg)
    (tmp_path / first).mkdir()
    second = batch_mod.fresh_run_id(cfg)
    (tmp_path / second).mkdir()
    assert (first, second, batch_mod.fresh_run_id(cfg)) == (
        "run-20261203-000000", "run-20261203-000000-2", "run-20261203-000000-3")
    assert sorted([second, first]) == [first, second]  # the newer sorts after
