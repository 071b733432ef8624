"""The machine the lab runs on: platform facts, and how many threads a session uses and why.

ONNX Runtime's intra-op pool runs best with one thread per core that can take the work:
on Apple silicon the performance cores (``sysctl hw.perflevel0.physicalcpu``: 8 on an
M1 Max, whose 2 efficiency cores would only slow the pool's slowest member), elsewhere the
physical cores (``psutil.cpu_count(logical=False)``), never more than this process may run
on. ``session.intra_op_threads`` in LabConfig wins; its default ``"auto"`` asks this module.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from typing import Sequence

import psutil

from labkit.config import AUTO_THREADS, ConfigError, SessionConfig


def sysctl(name: str) -> str | None:
    """``sysctl -n NAME`` (macOS/BSD), or None where there is no such key or no sysctl."""
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return value if out.returncode == 0 and value else None


def _sysctl_int(name: str) -> int | None:
    value = sysctl(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _usable_cpus() -> int | None:
    """CPUs this process may run on (a container's or `taskset`'s limit), where the OS says."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no sched_getaffinity
        return None


@dataclass(frozen=True)
class Facts:
    """What the thread count and the doctor's checks depend on."""

    system: str  # platform.system(): Darwin, Linux, Windows
    machine: str  # platform.machine(): arm64, x86_64
    os_version: str  # macOS's product version (14.5) on Darwin, else the kernel release
    cpu: str
    logical_cores: int | None
    physical_cores: int | None
    #: Apple silicon: performance and efficiency cores (hw.perflevel0/1.physicalcpu)
    performance_cores: int | None = None
    efficiency_cores: int | None = None
    #: CPUs this process may use (affinity), where the OS tells
    usable_cpus: int | None = None
    #: macOS: whether this process is translated by Rosetta (``sysctl.proc_translated``:
    #: 1 translated, 0 native; the key does not exist on an Intel Mac: None), else None
    translated: bool | None = None
    #: whether the CPU does half-precision arithmetic (:func:`fp16_arithmetic`); None: unknown
    fp16: bool | None = None
    #: the instruction sets a model's CPU speed depends on that the CPU has (:func:`isa`);
    #: None: unknown
    isa: tuple[str, ...] | None = None

    @property
    def apple_silicon(self) -> bool:
        return self.system == "Darwin" and self.machine == "arm64"

    def cores_phrase(self) -> str:
        """``8 performance + 2 efficiency cores (Apple M1 Max)``, ``2 cores (AMD EPYC ...)``:
        the words rule texts use for the machine something was measured on."""
        if self.performance_cores:
            words = f"{self.performance_cores} performance"
            if self.efficiency_cores:
                words += f" + {self.efficiency_cores} efficiency"
            words += " cores"
        else:
            n = self.usable_cpus or self.physical_cores or self.logical_cores
            words = f"{n} cores" if n else "an unknown number of cores"
        return f"{words} ({self.cpu})" if self.cpu else words

    def to_dict(self) -> dict:
        return {**asdict(self), "apple_silicon": self.apple_silicon}


def facts() -> Facts:
    """This machine's facts, read now (see :func:`current` for the cached copy)."""
    system, arch = platform.system(), platform.machine()
    perf = eff = translated = None
    fp16 = fp16_arithmetic(system, arch)
    if system == "Darwin":
        os_version = platform.mac_ver()[0] or platform.release()
        cpu = sysctl("machdep.cpu.brand_string") or arch
        flag = sysctl("sysctl.proc_translated")  # a Rosetta process reports x86_64 as its machine
        translated = {"1": True, "0": False}.get(flag or "")
        if arch == "arm64":
            perf = _sysctl_int("hw.perflevel0.physicalcpu")
            eff = _sysctl_int("hw.perflevel1.physicalcpu")
    else:
        os_version = platform.release()
        cpu = _linux_cpu_name() or platform.processor() or arch
    return Facts(system=system, machine=arch, os_version=os_version, cpu=cpu,
                 logical_cores=psutil.cpu_count(logical=True),
                 physical_cores=psutil.cpu_count(logical=False),
                 performance_cores=perf, efficiency_cores=eff, usable_cpus=_usable_cpus(),
                 translated=translated, fp16=fp16, isa=isa(system, arch))


#: platform.machine() on x86 CPUs
X86 = ("x86_64", "AMD64", "i386", "i686", "x86")
#: Linux arm64 /proc/cpuinfo "Features" flags for half-precision arithmetic (the kernel's
#: HWCAP_FPHP and HWCAP_ASIMDHP, Documentation/arch/arm64/elf_hwcaps.rst)
ARM_FP16_FLAGS = ("fphp", "asimdhp")


def fp16_arithmetic(system: str, arch: str) -> bool | None:
    """Whether the CPU computes in half precision (not only stores it), which is what an
    fp16 model's speed on the CPU depends on:

    * macOS on Apple silicon: ``sysctl hw.optional.arm.FEAT_FP16`` (1 on every M1; Apple's
      "Determining instruction set characteristics"), else the older
      ``hw.optional.neon_fp16``;
    * Linux on arm64: the ``fphp`` and ``asimdhp`` flags of /proc/cpuinfo;
    * x86: False. ONNX Runtime's CPU kernels for fp16 are ARM64's (MLAS's half-precision
      GEMM; the x86 wheel runs fp16 nodes through fp32 with casts), and x86 CPUs before
      AVX512-FP16 have no fp16 arithmetic at all.

    None where it cannot tell."""
    if arch in X86:
        return False
    if system == "Darwin" and arch == "arm64":
        for key in ("hw.optional.arm.FEAT_FP16", "hw.optional.neon_fp16"):
            value = sysctl(key)
            if value is not None:
                return value.strip() == "1"
        return None
    if system == "Linux" and arch in ("aarch64", "arm64"):
        flags = _linux_cpu_flags()
        return None if flags is None else all(f in flags for f in ARM_FP16_FLAGS)
    return None


#: the instruction sets an int8 or fp16 model's speed on the CPU depends on, as /proc/cpuinfo
#: names them: on x86 the vector widths and the int8 dot products that MLAS's u8s8 GEMM (the
#: kernels of ORT's int8 convolutions) picks from (AVX2, AVX-512, VNNI, AMX); a quantized
#: model's gain over fp32 differs between them (qdq-layers-tail over int8 at 120 tokens:
#: 1.07x on 2 AMD EPYC cores with AVX2 alone, 2026-12-05; stage 03 measured more where VNNI was)
X86_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
#: Linux arm64 "Features" flags -> their name here: dot product, int8 matrix multiply,
#: half-precision arithmetic (the kernel's HWCAP_ASIMDDP, HWCAP2_I8MM, HWCAP_ASIMDHP)
ARM_ISA = {"asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16"}
#: macOS on Apple silicon: the same facts by sysctl (Apple's "Determining instruction set
#: characteristics": 1 where the CPU has the feature; an M1 has FEAT_DotProd and FEAT_FP16,
#: FEAT_I8MM came with the M2)
APPLE_ISA = {"hw.optional.arm.FEAT_DotProd": "dotprod", "hw.optional.arm.FEAT_I8MM": "i8mm",
             "hw.optional.arm.FEAT_FP16": "fp16"}


def isa(system: str, arch: str) -> tuple[str, ...] | None:
    """Which of the instruction sets a model's CPU speed depends on this CPU has
    (:data:`X86_ISA`, :data:`ARM_ISA`, :data:`APPLE_ISA`), in that order; None where it
    cannot tell (no /proc/cpuinfo, no sysctl keys, another OS)."""
    if system == "Darwin" and arch == "arm64":
        said = {name: sysctl(key) for key, name in APPLE_ISA.items()}
        if all(v is None for v in said.values()):
            return None
        return tuple(name for name, v in said.items() if (v or "").strip() == "1")
    if system != "Linux":
        return None
    flags = _linux_cpu_flags()
    if flags is None:
        return None
    if arch in X86:
        return tuple(f for f in X86_ISA if f in flags)
    if arch in ("aarch64", "arm64"):
        return tuple(name for flag, name in ARM_ISA.items() if flag in flags)
    return None


def isa_phrase(found: Sequence[str] | None, arch: str) -> str:
    """``avx2 (no avx512f, avx512_vnni, avx_vnni, amx_int8)``: what a record's reader needs
    to compare two machines' speeds; "unknown" where it was not read."""
    if found is None:
        return "unknown"
    known = X86_ISA if arch in X86 else tuple(dict.fromkeys([*ARM_ISA.values(), *APPLE_ISA.values()]))
    missing = [f for f in known if f not in found]
    have = ", ".join(found) or "none of " + ", ".join(known)
    return f"{have} (no {', '.join(missing)})" if found and missing else have


def fp16_speed_skip(m: "Facts | None" = None) -> str | None:
    """Why an fp16 model's speed is not measured on this machine (a record's
    ``skipped: <reason>``), or None where it is: a CPU without fp16 arithmetic runs it as
    fp32 with conversions, which says nothing about the Mac's fp16 speed."""
    m = m or current()
    if m.fp16 is True:
        return None
    if m.machine in X86:
        return "x86 has no fp16 arithmetic (ONNX Runtime's fp16 CPU kernels are ARM64's)"
    if m.fp16 is False:
        return f"this {m.machine} CPU has no fp16 arithmetic"
    return f"whether this {m.machine} CPU has fp16 arithmetic is unknown"


def _linux_cpu_flags() -> set[str] | None:
    """The first CPU's feature flags in /proc/cpuinfo ("Features" on arm64, "flags" on x86)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("Features", "flags"):
                    return set(value.split())
    except OSError:
        pass
    return None


def _linux_cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def current() -> Facts:
    """:func:`facts`, read once per process (sessions are made often; the machine stays)."""
    return facts()


@dataclass(frozen=True)
class ThreadPlan:
    """The intra-op thread count a session uses, and why."""

    threads: int
    #: "setting", "performance cores", "physical cores", "logical cores" or "fallback"
    source: str
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def thread_plan(setting: int | str = AUTO_THREADS, machine: Facts | None = None) -> ThreadPlan:
    """The thread count for ``session.intra_op_threads = setting``: the setting when it is
    a number, else from the machine (performance cores on Apple silicon, physical cores
    elsewhere, capped by the CPUs this process may use)."""
    if setting != AUTO_THREADS:
        if not isinstance(setting, int) or isinstance(setting, bool) or setting < 1:
            raise ConfigError(f"session.intra_op_threads={setting!r}: must be an integer >= 1 "
                              f"or {AUTO_THREADS!r}")
        return ThreadPlan(setting, "setting",
                          f"session.intra_op_threads={setting} is set explicitly")
    m = machine or current()
    if m.apple_silicon and m.performance_cores:
        n, source = m.performance_cores, "performance cores"
        why = (f"Apple silicon: {m.performance_cores} performance cores "
               f"(hw.perflevel0.physicalcpu); the efficiency cores would slow the pool")
    elif m.physical_cores:
        n, source = m.physical_cores, "physical cores"
        why = f"{m.physical_cores} physical cores (psutil.cpu_count(logical=False))"
    elif m.logical_cores:
        n, source = m.logical_cores, "logical cores"
        why = f"the physical core count is unknown: {m.logical_cores} logical cores"
    else:
        return ThreadPlan(1, "fallback", "the core count is unknown: 1 thread")
    if m.usable_cpus and m.usable_cpus < n:
        why += f", capped at the {m.usable_cpus} CPUs this process may use"
        n = m.usable_cpus
    return ThreadPlan(n, source, why)


def session_threads(s: SessionConfig, machine: Facts | None = None) -> int:
    """``s.intra_op_threads`` with ``"auto"`` resolved (what session options are built with)."""
    return thread_plan(s.intra_op_threads, machine).threads
