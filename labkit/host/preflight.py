"""What must hold before the project installs: the OS the onnxruntime wheels support, an
arm64 interpreter on the Mac (onnxruntime has no macOS x86_64 wheel after 1.23.2: an Intel
or Rosetta Python cannot install it), the Python it pins, and a compiler where a dependency
has to be built (pesq has no macOS wheel: it builds with the Xcode Command Line Tools).

``make setup`` runs ``python -m labkit.host.preflight`` on macOS before ``pip install`` (it needs
only PyYAML and psutil), so a missing requirement is one clear sentence instead of a failed
build an hour in. ``labkit doctor`` repeats these checks with the rest.
"""
from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit.host import machine
from labkit.config import REPO_ROOT

#: the oldest macOS the pinned onnxruntime's wheels install on (1.31.1: macosx_14_0_arm64)
ORT_MACOS_MINIMUM = (14, 0)
#: pyproject.toml's requires-python (>=3.11,<3.12)
PYTHON = (3, 11)
#: the dependency without a macOS wheel, built from source at install time
BUILT_FROM_SOURCE = "pesq"
#: the last onnxruntime with a macOS x86_64 wheel (pip download --platform macosx_14_0_x86_64
#: onnxruntime lists 1.15.0 ... 1.23.2; 1.24 and later are arm64 only)
ORT_LAST_MACOS_X86_64 = "1.23.2"


@dataclass
class Check:
    """One line of the doctor's report; ``problem`` is one sentence when it failed."""

    name: str
    ok: bool
    found: str
    problem: str | None = None
    #: a failed required check makes the doctor exit 1; the others are information
    required: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    #: why the check does not apply here (a Mac-only check elsewhere), when it does not
    skipped: str | None = None

    @classmethod
    def skip(cls, name: str, reason: str) -> "Check":
        return cls(name, True, reason, required=False, skipped=reason)

    @property
    def state(self) -> str:
        """``ok``; ``FAILED`` (a requirement); ``warn`` (not required, with a fix to make);
        ``-`` (not required, nothing to fix: an endpoint that is not running); ``skipped``."""
        if self.skipped:
            return "skipped"
        if self.ok:
            return "ok"
        return "FAILED" if self.required else ("warn" if self.problem else "-")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


def pinned(package: str, pyproject: Path = REPO_ROOT / "pyproject.toml") -> str | None:
    """The ``==`` version pyproject.toml (or, installed elsewhere, kokoro-lab's metadata) pins."""
    if pyproject.exists():
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    else:
        try:
            deps = importlib.metadata.requires("kokoro-lab") or []
        except importlib.metadata.PackageNotFoundError:
            return None
    for dep in deps:
        m = re.match(rf"^{re.escape(package)}\s*==\s*([^;,\s]+)", dep, re.IGNORECASE)
        if m:
            return m.group(1)
    return None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def xcode_clt() -> str | None:
    """The active developer directory (``xcode-select -p``), or None without the tools."""
    try:
        out = subprocess.run(["xcode-select", "-p"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    path = out.stdout.strip()
    return path if out.returncode == 0 and path and Path(path).is_dir() else None


def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.match(r"^(\d+)(?:\.(\d+))?", text or "")
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def check_os(f: machine.Facts, ort_version: str | None = None) -> Check:
    ort_version = ort_version or pinned("onnxruntime") or "onnxruntime"
    if f.system != "Darwin":
        return Check("os", True, f"{f.system} {f.machine}, release {f.os_version}")
    found = f"macOS {f.os_version} on {f.machine}"
    least = ".".join(map(str, ORT_MACOS_MINIMUM))
    version = _version_tuple(f.os_version)
    if version is None:
        return Check("os", False, found, f"The macOS version could not be read ({f.os_version!r}); "
                     f"onnxruntime {ort_version} needs macOS {least} or later.")
    if version < ORT_MACOS_MINIMUM:
        return Check("os", False, found,
                     f"macOS {f.os_version} is older than macOS {least}, the oldest onnxruntime "
                     f"{ort_version} installs on: update macOS (System Settings > General > "
                     "Software Update), then run make setup again.")
    return Check("os", True, f"{found} (onnxruntime {ort_version} needs {least}+)")


def check_arch(f: machine.Facts, ort_version: str | None = None) -> Check:
    """On the Mac the interpreter must be arm64 and not translated by Rosetta: onnxruntime
    (the pinned version) has no macOS x86_64 wheel, so pip would fail late with
    "No matching distribution"."""
    if f.system != "Darwin":
        return Check.skip("arch", f"not macOS ({f.system} {f.machine})")
    ort_version = ort_version or pinned("onnxruntime") or "onnxruntime"
    why = (f"onnxruntime {ort_version} has no macOS x86_64 wheel (the last is "
           f"{ORT_LAST_MACOS_X86_64})")
    if f.translated:
        return Check("arch", False, f"{f.machine} under Rosetta (sysctl.proc_translated = 1, "
                     f"{sys.executable})",
                     f"This Python runs under Rosetta as x86_64 and {why}: install an arm64 "
                     f"Python {'.'.join(map(str, PYTHON))} (python.org's universal2 installer or "
                     "Homebrew in /opt/homebrew) and run make PYTHON=/path/to/python3.11 setup.")
    if f.machine != "arm64":
        return Check("arch", False, f"{f.machine} (an Intel Mac)",
                     f"This is an Intel Mac ({f.machine}) and {why}: the lab needs an "
                     "Apple-silicon Mac.")
    return Check("arch", True, "arm64, native (not translated by Rosetta)")


def check_python(version: tuple[int, ...] | None = None) -> Check:
    version = tuple(version or sys.version_info[:3])
    found = ".".join(map(str, version))
    want = ".".join(map(str, PYTHON))
    if tuple(version[:2]) != PYTHON:
        return Check("python", False, found,
                     f"Python {found} is not {want}, the version the lab pins: install Python "
                     f"{want} and run make PYTHON=/path/to/python{want} setup.")
    return Check("python", True, f"{found} ({sys.executable})")


def check_compiler(f: machine.Facts) -> Check:
    built = package_version(BUILT_FROM_SOURCE)
    if built:
        return Check("compiler", True, f"not needed: {BUILT_FROM_SOURCE} {built} is installed")
    if f.system == "Darwin":
        path = xcode_clt()
        if path:
            return Check("compiler", True, f"Xcode Command Line Tools at {path} "
                         f"({BUILT_FROM_SOURCE} builds from source on macOS)")
        return Check("compiler", False, "no Xcode Command Line Tools (xcode-select -p)",
                     f"{BUILT_FROM_SOURCE} has no macOS wheel and is built from source, which "
                     "needs the Xcode Command Line Tools: run xcode-select --install, then "
                     "make setup again.")
    cc = next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)
    if cc:
        return Check("compiler", True, f"{cc} (in case {BUILT_FROM_SOURCE} builds from source)")
    return Check("compiler", False, "no C compiler on the PATH",
                 f"{BUILT_FROM_SOURCE} is not installed and may build from source, but there is "
                 "no C compiler (cc, gcc, clang) on the PATH: install one, then make setup again.")


def checks(f: machine.Facts | None = None) -> list[Check]:
    f = f or machine.current()
    return [check_os(f), check_arch(f), check_python(), check_compiler(f)]


def problems(results: list[Check]) -> list[str]:
    return [c.problem for c in results if c.required and not c.ok and c.problem]


def main() -> int:
    results = checks()
    for c in results:
        print(f"{c.name:<10} {c.state:<7} {c.found}")
    failed = problems(results)
    for sentence in failed:
        print(sentence, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
