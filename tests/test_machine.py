"""labkit.host.machine: platform facts (faked for the Mac) and the thread count they give."""
from __future__ import annotations

import subprocess

import pytest

from labkit.host import machine
from labkit.config import ConfigError, LabConfig, SessionConfig

M1_MAX = {"machdep.cpu.brand_string": "Apple M1 Max", "hw.perflevel0.physicalcpu": "8",
          "hw.perflevel1.physicalcpu": "2"}


def fake_platform(monkeypatch, system, arch, sysctls=None, physical=4, logical=8, affinity=None,
                  mac="14.5"):
    monkeypatch.setattr(machine.platform, "system", lambda: system)
    monkeypatch.setattr(machine.platform, "machine", lambda: arch)
    monkeypatch.setattr(machine.platform, "mac_ver", lambda: (mac, ("", "", ""), arch))
    monkeypatch.setattr(machine, "sysctl", lambda name: (sysctls or {}).get(name))
    logical_n = logical
    monkeypatch.setattr(machine.psutil, "cpu_count", lambda logical=True: logical_n if logical else physical)
    monkeypatch.setattr(machine, "_usable_cpus", lambda: affinity)


def test_m1_max_uses_its_eight_performance_cores(monkeypatch):
    fake_platform(monkeypatch, "Darwin", "arm64", M1_MAX, physical=10, logical=10)
    f = machine.facts()
    assert f.apple_silicon and f.os_version == "14.5" and f.cpu == "Apple M1 Max"
    assert (f.performance_cores, f.efficiency_cores) == (8, 2)
    plan = machine.thread_plan("auto", f)
    assert plan.threads == 8 and plan.source == "performance cores"
    assert "hw.perflevel0.physicalcpu" in plan.why
    assert f.cores_phrase() == "8 performance + 2 efficiency cores (Apple M1 Max)"


def test_apple_silicon_without_perflevels_falls_back_to_physical_cores(monkeypatch):
    fake_platform(monkeypatch, "Darwin", "arm64", {"hw.perflevel0.physicalcpu": "not a number"},
                  physical=4)
    plan = machine.thread_plan("auto", machine.facts())
    assert (plan.threads, plan.source) == (4, "physical cores")


def test_intel_mac_uses_physical_cores_and_reads_no_perflevels(monkeypatch):
    fake_platform(monkeypatch, "Darwin", "x86_64", {**M1_MAX, "machdep.cpu.brand_string": "Intel i7"},
                  physical=6, logical=12)
    f = machine.facts()
    assert not f.apple_silicon and f.performance_cores is None and f.cpu == "Intel i7"
    assert machine.thread_plan("auto", f).threads == 6


def test_linux_physical_cores_capped_by_affinity(monkeypatch):
    fake_platform(monkeypatch, "Linux", "x86_64", physical=16, logical=32, affinity=2)
    f = machine.facts()
    plan = machine.thread_plan("auto", f)
    assert plan.threads == 2 and "capped at the 2 CPUs" in plan.why
    assert f.cores_phrase().startswith("2 cores")


def test_unknown_core_counts(monkeypatch):
    fake_platform(monkeypatch, "Linux", "x86_64", physical=None, logical=3)
    assert machine.thread_plan("auto", machine.facts()).source == "logical cores"
    fake_platform(monkeypatch, "Linux", "x86_64", physical=None, logical=None)
    assert machine.thread_plan("auto", machine.facts()).threads == 1


def test_a_setting_wins_and_bad_settings_fail(monkeypatch):
    fake_platform(monkeypatch, "Darwin", "arm64", M1_MAX)
    plan = machine.thread_plan(3, machine.facts())
    assert (plan.threads, plan.source) == (3, "setting")
    for bad in (0, -1, "four", True):
        with pytest.raises(ConfigError, match="intra_op_threads"):
            machine.thread_plan(bad)


def test_config_default_is_auto_and_session_options_resolve_it(monkeypatch):
    from labkit.engine.sessions import session_options

    s = LabConfig().session
    assert s.intra_op_threads == "auto"
    s.validate()
    with pytest.raises(ConfigError, match="'auto'"):
        SessionConfig(intra_op_threads="max").validate()
    m = machine.Facts("Darwin", "arm64", "14.5", "Apple M1 Max", 10, 10, 8, 2)
    assert machine.session_threads(s, m) == 8
    monkeypatch.setattr(machine, "current", lambda: m)
    assert session_options(s).intra_op_num_threads == 8
    assert session_options(SessionConfig(intra_op_threads=1)).intra_op_num_threads == 1


def test_sysctl_reads_the_value_and_is_none_without_one(monkeypatch):
    def run(argv, **kw):
        assert argv[:2] == ["sysctl", "-n"]
        if argv[2] == "hw.perflevel0.physicalcpu":
            return subprocess.CompletedProcess(argv, 0, "8\n", "")
        return subprocess.CompletedProcess(argv, 1, "", "unknown oid")

    monkeypatch.setattr(machine.subprocess, "run", run)
    assert machine.sysctl("hw.perflevel0.physicalcpu") == "8"
    assert machine.sysctl("hw.nothing") is None

    def missing(argv, **kw):
        raise FileNotFoundError("sysctl")

    monkeypatch.setattr(machine.subprocess, "run", missing)
    assert machine.sysctl("hw.ncpu") is None


def test_this_machine_gives_a_plan():
    plan = machine.thread_plan()
    assert plan.threads >= 1 and plan.why


def test_dual_rule_names_the_measured_machine():
    from labkit.lab import s06_dual_sessions as s06

    def row(name, sessions, ttfa, total):
        return {"candidate": name, "text": "t", "status": "ok", "sessions": sessions, "ttfa_s": ttfa,
                "total_s": total, "ci95": [0.9, 1.2], "underruns_max": 0, "cpu_utilization": 0.9,
                "pipeline": {"sessions": sessions}, "session": {}}
    rows = [row("one", 1, 1.0, 10.0), row("two", 2, 1.5, 9.0)]
    m = machine.Facts("Darwin", "arm64", "14.5", "Apple M1 Max", 10, 10, 8, 2)
    rule = s06.dual_rule(rows, facts=m)["rule"]
    assert "on 8 performance + 2 efficiency cores (Apple M1 Max) the sessions" in rule
    assert "2 shared cores" not in rule
    assert machine.current().cores_phrase() in s06.dual_rule(rows)["rule"]
