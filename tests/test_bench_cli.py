"""`labkit bench`: it says up front what it runs and about how long (counted from its
parameters, priced by measured costs), takes --texts/--soak, and leaves no process behind
when stopped with SIGTERM."""
import signal
import subprocess
import sys
import time

import psutil
import pytest

from labkit import cli
from labkit.host import machine
from labkit.lab.costs import BUSY_LOAD, Costs, recorded, record
from labkit.lab.s08_endpoint import plan, plan_lines
from labkit.measure.compare import compare, default_rounds
from labkit.measure.texts import named

COSTS = Costs(rtf=0.5, audio_s_per_word=0.4, audio_s_per_token=0.07, session_s=2.0, threads=2, variant="int8",
              cpu="test cpu", measured="2026-12-03T00:00:00+00:00")


def test_the_default_rounds_are_what_compare_runs():
    for n in (2, 3, 6):
        fns = {f"c{i}": (lambda: None) for i in range(n - 1)}
        cmp = compare(fns, "c0", warmup=0, max_rounds=default_rounds(n))
        assert cmp.rounds == default_rounds(n)


def test_the_plan_counts_calls_and_prices_them():
    p = plan(COSTS, ["phrase", "paragraph"], soak_requests=6, max_input_chars=4096)
    assert p["entries"] == 6  # five runners and the A/A control
    k = default_rounds(6)
    phrase, para = p["texts"]
    assert phrase["calls"] == para["calls"] == (1 + k) * 6
    per_call = COSTS.synth_s(named("paragraph"))
    # five of the six entries synthesize (the cached repeat does not), plus the cache fill
    assert para["seconds"] == pytest.approx(((1 + k) * 5 + 1) * per_call)
    assert para["max_seconds"] > para["seconds"]
    # the soak alternates the phrase (made unique: synthesized each time) and the paragraph
    # (repeated: synthesized once, then from the cache)
    assert p["soak_seconds"] == pytest.approx(
        3 * COSTS.synth_s(named("phrase") + " Number 0.") + COSTS.synth_s(named("paragraph")))
    total = p["start_seconds"] + p["soak_seconds"] + phrase["seconds"] + para["seconds"]
    assert p["minutes"] == pytest.approx(total / 60)
    text = "\n".join(plan_lines(p, "measured here"))
    assert "2 text(s) x 6 entries" in text and "6-request soak" in text
    assert "labkit bench --texts phrase --soak 10" in text


def test_more_cores_plan_less_time():
    faster = COSTS.for_cores(8)
    assert faster.rtf == pytest.approx(COSTS.rtf / 4) and faster.threads == 8
    assert plan(faster, ["paragraph"], 0, 4096)["minutes"] < plan(COSTS, ["paragraph"], 0, 4096)["minutes"]


def test_recorded_costs_are_used_only_for_the_same_configuration(cfg, tmp_path, monkeypatch):
    c = cfg.with_overrides({"artifacts_dir": str(tmp_path)})
    monkeypatch.setattr(machine, "current", lambda: machine.facts().__class__(
        system="Linux", machine="x86_64", os_version="6", cpu="test cpu", logical_cores=2,
        physical_cores=2, usable_cpus=2))
    here = Costs(**{**COSTS.to_dict(), "threads": machine.session_threads(c.session),
                    "variant": c.variant})
    record(c, here)
    assert recorded(c) == here
    assert recorded(c.with_overrides({"variant": "fp32-recon"})) is None
    record(c, Costs(**{**here.to_dict(), "onnxruntime": "1.0.0"}))
    assert recorded(c) is None  # measured with another onnxruntime: measured again
    # measured beside other work (load per CPU over BUSY_LOAD): kept while the machine is
    # still busy, measured again once it is quiet
    busy = Costs(**{**here.to_dict(), "load": BUSY_LOAD + 0.5})
    record(c, busy)
    assert busy.under_load and not here.under_load
    assert recorded(c, load_now=BUSY_LOAD + 0.1) == busy
    assert recorded(c, load_now=0.1) is None


@pytest.mark.parametrize("argv, message", [
    (["bench", "--texts", "phrase,poem"], "--texts poem: unknown"),
    (["bench", "--soak", "-1"], "--soak -1"),
])
def test_bench_refuses_unknown_texts_and_negative_soaks(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def _descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _is_server(p) -> bool:
    try:
        return p.cmdline()[1:3] == ["-m", "serve"]
    except psutil.Error:  # gone meanwhile
        return False


def _alive(pids):
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.model
def test_sigterm_to_labkit_bench_leaves_no_process_of_it(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "bench", "--texts", "phrase",
                             "--soak", "2", "-s", f"artifacts_dir={tmp_path}", "-s", "results_md=",
                             "-s", "serve.best_json="],
                            stdout=(log := open(tmp_path / "bench.log", "w")), stderr=subprocess.STDOUT)
    log.close()  # the child holds its own copy; a file never fills as a pipe does
    try:
        # until the bench has started its server (or ended without one); the deadline only
        # guards against a hang (a busy machine may take many minutes), it is no speed bound
        deadline = time.monotonic() + 3600
        server = None
        while time.monotonic() < deadline and proc.poll() is None and server is None:
            server = next((c for c in _descendants(proc.pid) if _is_server(c)), None)
            time.sleep(0.2)
        if server is None:
            proc.kill()
            proc.wait()
            pytest.fail(f"labkit bench started no server: {(tmp_path / 'bench.log').read_text()[-3000:]}")
        tree = {c.pid for c in _descendants(proc.pid)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(600) == 128 + signal.SIGTERM  # a hang guard, no speed bound
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / "bench.log").read_text()
    assert "labkit bench:" in out and "estimated ~" in out  # the plan came first
    deadline = time.monotonic() + 300  # a hang guard, no speed bound
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(tree) == set()
