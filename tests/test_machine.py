"""labkit.host.machine: platform facts (faked for the Mac) and the thread count they give."""
from __future__ import annotations

import subprocess

import pytest

from labkit.host import machine
from labkit.config import ConfigError, LabConfig, SessionConfig
from labkit.optimize.quantize import VariantSpec

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


# Half-precision arithmetic, the facts faked here and where they come from:
# - macOS on Apple silicon: `sysctl -n hw.optional.arm.FEAT_FP16` prints 1 on an M1 (Apple's
#   "Determining instruction set characteristics" lists the FEAT_FP16 key; macOS 11's older
#   spelling hw.optional.neon_fp16 is read where the new one is missing);
# - Linux arm64: /proc/cpuinfo's "Features" line lists fphp and asimdhp (the kernel's
#   Documentation/arch/arm64/elf_hwcaps.rst: HWCAP_FPHP, HWCAP_ASIMDHP);
# - x86: onnxruntime 1.31.1's macOS arm64 wheel holds MLAS's half-precision GEMM
#   (MlasHalfGemmBatch, RegisterFp16GemmMatMulKernels: read from its
#   onnxruntime_pybind11_state.so with `strings`); x86 CPUs before AVX512-FP16 have no fp16
#   arithmetic, and ORT runs fp16 nodes there as fp32 with casts (FINDINGS.md: "On CPU fp16
#   runs at fp32 speed").
def test_an_m1_computes_in_fp16_so_fp16_speed_is_measured(monkeypatch):
    fake_platform(monkeypatch, "Darwin", "arm64", {**M1_MAX, "hw.optional.arm.FEAT_FP16": "1"})
    f = machine.facts()
    assert f.fp16 is True and machine.fp16_speed_skip(f) is None
    # an older macOS: only the older key
    fake_platform(monkeypatch, "Darwin", "arm64", {**M1_MAX, "hw.optional.neon_fp16": "1"})
    assert machine.facts().fp16 is True
    # neither key: unknown, so not measured, and the reason says so
    fake_platform(monkeypatch, "Darwin", "arm64", M1_MAX)
    f = machine.facts()
    assert f.fp16 is None and "unknown" in machine.fp16_speed_skip(f)


def test_x86_has_no_fp16_arithmetic_so_fp16_speed_is_skipped(monkeypatch):
    for system in ("Linux", "Darwin"):  # an Intel Mac too
        fake_platform(monkeypatch, system, "x86_64", {"hw.optional.arm.FEAT_FP16": "1"})
        f = machine.facts()
        assert f.fp16 is False
        assert machine.fp16_speed_skip(f).startswith("x86 has no fp16 arithmetic")


def test_linux_arm64_reads_fp16_from_its_cpu_flags(monkeypatch):
    fake_platform(monkeypatch, "Linux", "aarch64")
    monkeypatch.setattr(machine, "_linux_cpu_flags", lambda: {"fp", "asimd", "fphp", "asimdhp"})
    assert machine.facts().fp16 is True
    monkeypatch.setattr(machine, "_linux_cpu_flags", lambda: {"fp", "asimd"})  # a Cortex-A72
    f = machine.facts()
    assert f.fp16 is False and machine.fp16_speed_skip(f) == "this aarch64 CPU has no fp16 arithmetic"


def test_stage03_times_fp16_variants_only_where_the_cpu_computes_in_fp16():
    from types import SimpleNamespace

    from labkit.lab.s03_quantization import speed_skips

    built = {n: SimpleNamespace(spec=VariantSpec.parse(n)) for n in ("fp16", "fp16-dec", "dyn-u8")}
    m1 = machine.Facts("Darwin", "arm64", "14.5", "Apple M1 Max", 10, 10, 8, 2, fp16=True)
    here = machine.Facts("Linux", "x86_64", "6.1", "AMD EPYC", 2, 2, fp16=False)
    assert speed_skips(built, m1) == {}
    skips = speed_skips(built, here)
    assert set(skips) == {"fp16", "fp16-dec"}
    assert all(w.startswith("x86 has no fp16 arithmetic") for w in skips.values())


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


# The instruction sets a model's CPU speed depends on, faked here from where they come from:
# - Linux x86: /proc/cpuinfo's "flags" line (avx2, avx512f, avx512_vnni, avx_vnni, amx_int8 as
#   the kernel names them; this session's 2 AMD EPYC cores list avx2 and none of the others);
# - Linux arm64: its "Features" line (asimddp, i8mm, asimdhp: the kernel's
#   Documentation/arch/arm64/elf_hwcaps.rst);
# - macOS on Apple silicon: `sysctl -n hw.optional.arm.FEAT_DotProd` / FEAT_I8MM / FEAT_FP16
#   (Apple's "Determining instruction set characteristics"; an M1 has DotProd and FP16, not
#   I8MM, which came with the M2).
def test_the_instruction_sets_a_models_speed_depends_on_are_read_per_platform(monkeypatch):
    fake_platform(monkeypatch, "Linux", "x86_64")
    monkeypatch.setattr(machine, "_linux_cpu_flags", lambda: {"fpu", "sse2", "avx", "avx2", "fma"})
    f = machine.facts()
    assert f.isa == ("avx2",)
    assert machine.isa_phrase(f.isa, f.machine) == "avx2 (no avx512f, avx512_vnni, avx_vnni, amx_int8)"
    monkeypatch.setattr(machine, "_linux_cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert machine.facts().isa == ("avx2", "avx512f", "avx512_vnni")
    monkeypatch.setattr(machine, "_linux_cpu_flags", lambda: None)  # no /proc/cpuinfo
    assert machine.facts().isa is None and machine.isa_phrase(None, "x86_64") == "unknown"
    fake_platform(monkeypatch, "Linux", "aarch64")
    monkeypatch.setattr(machine, "_linux_cpu_flags", lambda: {"fp", "asimd", "asimddp", "asimdhp", "fphp"})
    assert machine.facts().isa == ("dotprod", "fp16")
    m1 = {**M1_MAX, "hw.optional.arm.FEAT_DotProd": "1", "hw.optional.arm.FEAT_I8MM": "0",
          "hw.optional.arm.FEAT_FP16": "1"}
    fake_platform(monkeypatch, "Darwin", "arm64", m1)
    f = machine.facts()
    assert f.isa == ("dotprod", "fp16") and machine.isa_phrase(f.isa, f.machine) == "dotprod, fp16 (no i8mm)"
    fake_platform(monkeypatch, "Darwin", "arm64", M1_MAX)  # a macOS without the keys
    assert machine.facts().isa is None
    fake_platform(monkeypatch, "Windows", "AMD64")
    assert machine.facts().isa is None


def test_the_results_page_names_the_instruction_sets_where_the_record_has_them():
    from labkit.lab.results import machine_lines

    env = {"cpu": "AMD EPYC", "cpu_count": 2, "machine": "x86_64", "isa": ["avx2"]}
    assert machine_lines(env)[0] == ("- machine: AMD EPYC · 2 cores · x86_64 · instruction sets: "
                                     "avx2 (no avx512f, avx512_vnni, avx_vnni, amx_int8)")
    old = {k: v for k, v in env.items() if k != "isa"}  # a record from before it was read
    assert machine_lines(old)[0] == "- machine: AMD EPYC · 2 cores · x86_64"
