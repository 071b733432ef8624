"""Stage 04's candidates that can crash or hang natively run in a child process with a
timeout: rehearsed here with CoreML replaced by stand-ins at the onnxruntime API level
(tests/standins: one compute unit crashes its process, one hangs, one works)."""
import os
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from labkit.lab import accelerator_split, accelerator_sweep
from labkit.lab.checkpoint import Checkpoint
from labkit.optimize.coreml import PROVIDER, SweepPoint

STANDINS = Path(__file__).parent / "standins"
sys.path.insert(0, str(STANDINS))
import standin_ort  # noqa: E402 - the stand-ins' own folder, put on the path just above


@pytest.fixture
def coreml_standin(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(STANDINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("LABKIT_STANDIN_COREML", "CPUAndGPU=crash,CPUAndNeuralEngine=hang")
    standin_ort.install(monkeypatch.setattr)  # here too: the sweep sees CoreML available
    assert PROVIDER in ort.get_available_providers()


@pytest.mark.model
def test_a_coreml_point_that_crashes_or_hangs_fails_alone_and_the_sweep_goes_on(
        cfg, tmp_path, coreml_standin):
    points = [SweepPoint("int8", PROVIDER, "MLProgram", units)
              for units in ("CPUAndGPU", "CPUAndNeuralEngine", "CPUOnly")]
    ck = Checkpoint(tmp_path / "finished", resume=False)
    cache = tmp_path / "cache"
    # the hang is waited out: the timeout is what the healthy point needs with room to spare
    # (a child's start-up, the int8 session, one run at 20 tokens: ~5 s here)
    rows = accelerator_sweep.run_sweep(cfg, points, [20], repeats=1, warmup=0, cache_root=cache,
                         checkpoint=ck, timeout_s=25, log=None)
    status = {r["point"]["compute_units"]: r["status"] for r in rows}
    assert status["CPUAndGPU"].startswith("failed: crashed (killed by SIGSEGV)")
    assert status["CPUAndNeuralEngine"] == "failed: timed out after 25 s (killed)"
    assert status["CPUOnly"] == "ok"  # after a crash and a hang, the next point still ran
    assert ck.finished() == 3  # each row written as it finished
    assert not cache.exists() or not any(cache.iterdir())  # every model cache removed


@pytest.mark.model
def test_without_the_provider_nothing_is_isolated(cfg, tmp_path):
    # where CoreML does not exist a point is skipped in process, without a child's start-up
    calls = []
    rows = accelerator_sweep.run_sweep(cfg, [SweepPoint("int8", PROVIDER, "MLProgram", "ALL")], [20],
                         cache_root=tmp_path, timeout_s=60, log=calls.append)
    assert rows[0]["status"].startswith("skipped: CoreMLExecutionProvider not available")
    assert calls == [f"int8/MLProgram/ALL: {rows[0]['status']}"]


def test_screen_then_confirm_measures_only_the_leaders_at_every_length():
    points = [SweepPoint("int8", "CPUExecutionProvider")] + [
        SweepPoint("int8", PROVIDER, "MLProgram", u) for u in ("ALL", "CPUOnly", "CPUAndGPU",
                                                                "CPUAndNeuralEngine")]
    rtf = {"int8/CPU": 0.5, "int8/MLProgram/ALL": 0.2, "int8/MLProgram/CPUOnly": 0.6,
           "int8/MLProgram/CPUAndGPU": 0.3, "int8/MLProgram/CPUAndNeuralEngine": None}
    calls = []

    def sweep(pts, lengths, reps):
        calls.append(([p.label for p in pts], lengths, reps))
        return [{"label": p.label, "point": {"provider": p.provider},
                 **({"status": "failed: crashed (killed by SIGSEGV)"} if rtf[p.label] is None else
                    {"status": "ok", "by_length": {str(n): {"rtf": rtf[p.label]} for n in lengths}})}
                for p in pts]

    rows, screen = accelerator_sweep.screen_then_confirm(points, [25, 115, 244], 7, 115, 1, 2, sweep)
    assert calls[0] == ([p.label for p in points], [115], 1)  # everything, one length, cheap
    assert calls[1] == (["int8/CPU", "int8/MLProgram/ALL", "int8/MLProgram/CPUAndGPU"],
                        [25, 115, 244], 7)  # the baseline and the two leaders, in full
    assert [r["label"] for r in rows] == [p.label for p in points]
    status = {r["label"]: r["status"] for r in rows}
    assert status["int8/MLProgram/CPUOnly"] == (
        "screened out: RTF 0.600 at 115 tokens, 3.00x the fastest's (int8/MLProgram/ALL)")
    assert status["int8/MLProgram/CPUAndNeuralEngine"].startswith("failed: crashed")
    assert screen["screened_out"] == [{"label": "int8/MLProgram/CPUOnly", "rtf": 0.6, "x_fastest": 3.0}]
    assert sorted(rows[1]["by_length"]) == ["115", "244", "25"]



@pytest.mark.model
def test_the_split_candidates_are_screened_and_only_the_leader_confirmed(cfg, tmp_path, coreml_standin):
    """Issue #31: on the Mac every split candidate (16 CoreML, 4 plugin) was measured at every
    length; with a screen, all run at one length and only the fastest accelerated one (and
    the CPU's) at every length. In this process (no timeout: the stand-ins that crash or
    hang are left out here; the test above runs them in children)."""
    cands = [accelerator_split.Candidate("split", "CPU")] + [
        accelerator_split.Candidate("split", "CoreML", "MLProgram", u) for u in ("ALL", "CPUOnly")]
    splits, rows = accelerator_split.run_split(
        cfg, ["fp32-recon"], [20, 30], cfg.split.buckets, ["reflect_pad"], cands, {}, 1, 0,
        tmp_path / "cache", None, None, None, None, screen=(20, 1, 1))
    screen = splits["fp32-recon"]["screen"]
    assert screen["screened"] == 3 and screen["confirm_top"] == 1
    leader = screen["confirmed"][1]
    assert screen["confirmed"] == ["split/CPU", leader]
    out = [r for r in rows.values() if r["status"].startswith("screened out")]
    assert len(out) == 1 and out[0]["label"] not in screen["confirmed"]
    assert sorted(out[0]["by_length"]) == ["20"]  # its screen row, kept
    assert screen["screened_out"][0]["label"] == out[0]["label"]
    for label in screen["confirmed"]:
        assert rows[label]["status"] == "ok" and sorted(rows[label]["by_length"]) == ["20", "30"]
