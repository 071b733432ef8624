"""``labkit service install|uninstall|status``: the endpoint as a macOS login service.

A launchd LaunchAgent (``~/Library/LaunchAgents/com.kokoro-lab.serve.plist``) runs this
clone's ``labkit serve`` with the current ``artifacts/best.json`` at login (``RunAtLoad``),
restarts it if it stops (``KeepAlive``), and logs to ``~/Library/Logs/kokoro-lab/``. It is
loaded with ``launchctl bootstrap gui/<uid>`` and removed with ``launchctl bootout``.
``--dry-run`` prints the plist (and the launchctl commands) on any platform, changing nothing.
"""
from __future__ import annotations

import os
import platform
import plistlib
import subprocess
import sys
from pathlib import Path
from typing import Callable

from labkit import files
from labkit.config import REPO_ROOT, LabConfig

LABEL = "com.kokoro-lab.serve"
LAUNCHCTL = "launchctl"

Runner = Callable[..., subprocess.CompletedProcess]


class ServiceError(RuntimeError):
    """The service cannot be managed here, or launchctl refused; the message says which."""


def plist_path(home: Path | None = None) -> Path:
    return (home or Path.home()) / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def log_dir(home: Path | None = None) -> Path:
    return (home or Path.home()) / "Library" / "Logs" / "kokoro-lab"


def labkit_command() -> list[str]:
    """This environment's ``labkit`` (the venv's console script), or ``python -m labkit.cli``."""
    script = Path(sys.executable).parent / "labkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "labkit.cli"]


def program_arguments(cfg: LabConfig, config_file: str | None = None,
                      overrides: list[str] | None = None) -> list[str]:
    """``labkit serve`` with absolute paths (launchd starts it outside this clone): the YAML
    config and ``-s`` overrides given to ``service install``, the current best.json, and the
    host and port."""
    args = [*labkit_command(), "serve"]
    if config_file:
        args += ["-c", str(Path(config_file).expanduser().resolve())]
    for item in overrides or []:
        args += ["-s", item]
    if cfg.serve.best_json:
        args += ["-s", f"serve.best_json={cfg.resolve(cfg.serve.best_json)}"]
    return args + ["--host", cfg.serve.host, "--port", str(cfg.serve.port)]


def plist(cfg: LabConfig, config_file: str | None = None, overrides: list[str] | None = None,
          home: Path | None = None) -> dict:
    logs = log_dir(home)
    return {
        "Label": LABEL,
        "ProgramArguments": program_arguments(cfg, config_file, overrides),
        "WorkingDirectory": str(REPO_ROOT),
        "RunAtLoad": True,
        "KeepAlive": True,
        # latency is what the user feels: not throttled like a background job
        "ProcessType": "Interactive",
        "ThrottleInterval": 10,
        "StandardOutPath": str(logs / "serve.log"),
        "StandardErrorPath": str(logs / "serve.err.log"),
    }


def plist_bytes(cfg: LabConfig, config_file: str | None = None,
                overrides: list[str] | None = None, home: Path | None = None) -> bytes:
    return plistlib.dumps(plist(cfg, config_file, overrides, home), fmt=plistlib.FMT_XML,
                          sort_keys=False)


def _domain(uid: int | None = None) -> str:
    return f"gui/{os.getuid() if uid is None else uid}"


def commands(action: str, home: Path | None = None, uid: int | None = None) -> list[list[str]]:
    """The launchctl commands ``action`` runs, in order."""
    target = f"{_domain(uid)}/{LABEL}"
    if action == "install":
        return [[LAUNCHCTL, "bootout", target], [LAUNCHCTL, "enable", target],
                [LAUNCHCTL, "bootstrap", _domain(uid), str(plist_path(home))]]
    if action == "uninstall":
        return [[LAUNCHCTL, "bootout", target]]
    if action == "status":
        return [[LAUNCHCTL, "print", target]]
    raise ServiceError(f"unknown action {action!r}: install, uninstall or status")


def _require_macos(system: str) -> None:
    if system != "Darwin":
        raise ServiceError(f"labkit service manages a macOS launchd agent and this is {system}: "
                           "use --dry-run to print the plist, or run labkit serve yourself")


def install(cfg: LabConfig, config_file: str | None = None, overrides: list[str] | None = None,
            home: Path | None = None, run: Runner | None = None,
            system: str | None = None) -> dict:
    """Write the plist, create the log folder, and (re)load the agent."""
    _require_macos(system or platform.system())
    run = run or subprocess.run
    path = plist_path(home)
    log_dir(home).mkdir(parents=True, exist_ok=True)
    files.write_bytes(path, plist_bytes(cfg, config_file, overrides, home))
    bootout, enable, bootstrap = commands("install", home)
    run(bootout, capture_output=True, text=True)  # not loaded yet: nothing to stop
    run(enable, capture_output=True, text=True)
    out = run(bootstrap, capture_output=True, text=True)
    if out.returncode != 0:
        raise ServiceError(f"launchctl bootstrap failed ({out.returncode}): "
                           f"{(out.stderr or out.stdout).strip()}; the plist is at {path}")
    return {"installed": str(path), "logs": str(log_dir(home)),
            "program": program_arguments(cfg, config_file, overrides)}


def uninstall(home: Path | None = None, run: Runner | None = None,
              system: str | None = None) -> dict:
    """Stop and unload the agent and remove its plist (the logs stay)."""
    _require_macos(system or platform.system())
    run = run or subprocess.run
    (bootout,) = commands("uninstall", home)
    out = run(bootout, capture_output=True, text=True)
    path = plist_path(home)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return {"removed": str(path) if existed else None, "was_loaded": out.returncode == 0}


def status(home: Path | None = None, run: Runner | None = None,
           system: str | None = None) -> dict:
    """Installed (plist present), loaded, its state and pid from ``launchctl print``."""
    _require_macos(system or platform.system())
    run = run or subprocess.run
    (show,) = commands("status", home)
    out = run(show, capture_output=True, text=True)
    info = {"plist": str(plist_path(home)), "installed": plist_path(home).exists(),
            "loaded": out.returncode == 0, "state": None, "pid": None, "logs": str(log_dir(home))}
    if out.returncode == 0:
        for line in out.stdout.splitlines():
            key, _, value = line.strip().partition(" = ")
            if key == "state" and info["state"] is None:
                info["state"] = value.strip()
            elif key == "pid" and info["pid"] is None and value.strip().isdigit():
                info["pid"] = int(value)
    return info


def dry_run(action: str, cfg: LabConfig, config_file: str | None = None,
            overrides: list[str] | None = None,
            home: Path | None = None) -> tuple[str, list[list[str]]]:
    """The plist ``install`` would write (empty for the other actions) and the commands."""
    text = plist_bytes(cfg, config_file, overrides, home).decode() if action == "install" else ""
    return text, commands(action, home)
