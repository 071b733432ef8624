"""``labkit service install|uninstall|status``: the endpoint as a macOS login agent.

A launchd LaunchAgent (``~/Library/LaunchAgents/com.kokoro-lab.serve.plist``) runs this
clone's ``labkit serve --as-login-agent`` with the current ``artifacts/best.json`` at login
(``RunAtLoad``) and logs to ``~/Library/Logs/kokoro-lab/``. It is loaded with ``launchctl
bootstrap gui/<uid>`` and removed with ``launchctl bootout``. ``--dry-run`` prints the plist
(and the launchctl commands) on any platform, changing nothing.

What launchd does, and what the agent is written for (launchd.plist(5), launchctl(1) and
what launchctl prints):

* ``KeepAlive: true`` restarts the job whatever its exit status, at most every
  ``ThrottleInterval`` seconds (10 by default): a port held by a hand-started ``labkit
  serve`` meant a restart (and a model load) every 10 s forever. The agent is kept alive
  only after a failure (``KeepAlive: {SuccessfulExit: false}``), throttled to
  :data:`THROTTLE_S`; ``labkit serve --as-login-agent`` exits 0 (no restart) when the port is
  taken, and ``install`` refuses to install over something else's port.
* ``bootout`` returns before launchd has released the label (it signals the job and
  cleans up seconds later); a ``bootstrap`` in that window fails with ``Bootstrap failed:
  5: Input/output error`` (launchd's own reason: 37, operation already in progress).
  ``install`` waits until ``launchctl print`` no longer finds the label (exit 113, "Could
  not find service"), bounded by :data:`RELEASE_WAIT_S`, and retries a bootstrap refused
  with 5 or 37 a bounded number of times.
* A job has launchd's environment, not the shell's: the ``KOKORO_LAB_*`` settings given
  to ``install`` by environment are written, resolved, into ``EnvironmentVariables``; the
  plist then may hold the API key, so it is written mode 600.
* launchd appends to the log files forever: ``labkit serve --as-login-agent`` rotates each
  one past :data:`LOG_CAP_BYTES` when it starts (one old generation, ``.1``, is kept).
* A process launchd starts may not read ~/Desktop, ~/Documents or ~/Downloads: ``install``
  refuses a clone there (:mod:`labkit.host.privacy`).

``status`` reports launchd's state, pid, run count and last exit code, and the logs' tails.
"""
from __future__ import annotations

import os
import platform
import plistlib
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from labkit import files
from labkit.config import ENV_VARS, PATH_SETTINGS, REPO_ROOT, LabConfig, env_settings
from labkit.host import ports, privacy

LABEL = "com.kokoro-lab.serve"
LAUNCHCTL = "launchctl"
#: seconds launchd waits before restarting the agent after a failed exit
THROTTLE_S = 30
#: how long install waits for launchd to release the label after bootout (launchd's own
#: ExitTimeOut is 20 s before it sends SIGKILL; the endpoint stops within 3 s of SIGTERM)
RELEASE_WAIT_S = 30.0
#: bootstrap attempts when launchd refuses with 5 (Input/output error) or 37 (operation
#: already in progress), one second more between each
BOOTSTRAP_ATTEMPTS = 5
#: launchctl's exit status when bootstrap met the label still registered or draining
BUSY_ERRORS = (5, 37)
#: a log file past this size is rotated when the agent starts
LOG_CAP_BYTES = 5 * 1024 * 1024
LOG_FILES = ("serve.log", "serve.err.log")
#: the lines of each log ``status`` shows
TAIL_LINES = 15

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
    """``labkit serve --as-login-agent`` with absolute paths (launchd starts it outside
    this clone): the YAML config and ``-s`` overrides given to ``service install``, the
    current best.json, and the host and port."""
    args = [*labkit_command(), "serve", "--as-login-agent"]
    if config_file:
        args += ["-c", str(Path(config_file).expanduser().resolve())]
    for item in overrides or []:
        args += ["-s", item]
    if cfg.serve.best_json:
        args += ["-s", f"serve.best_json={cfg.resolve(cfg.serve.best_json)}"]
    return args + ["--host", cfg.serve.host, "--port", str(cfg.serve.port)]


def environment(cfg: LabConfig, env: dict[str, str] | None = None) -> dict[str, str]:
    """The ``KOKORO_LAB_*`` variables given to ``install`` (``env``, default this process's
    environment), each with the value the config resolved (paths made absolute)."""
    out = {}
    for var, value in env_settings(env).items():
        if var == "KOKORO_LAB_CONFIG":
            out[var] = str(Path(value).expanduser().resolve())
            continue
        key = ENV_VARS[var]
        resolved = cfg.get(key)
        if resolved is None:
            continue
        out[var] = str(cfg.resolve(resolved)) if key in PATH_SETTINGS else str(resolved)
    return out


def plist(cfg: LabConfig, config_file: str | None = None, overrides: list[str] | None = None,
          home: Path | None = None, env: dict[str, str] | None = None) -> dict:
    logs = log_dir(home)
    out = {
        "Label": LABEL,
        "ProgramArguments": program_arguments(cfg, config_file, overrides),
        "WorkingDirectory": str(REPO_ROOT),
        "RunAtLoad": True,
        # restarted only after a failure, never after a clean exit (a port held by another)
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_S,
        # latency is what the user feels: not throttled like a background job
        "ProcessType": "Interactive",
        "StandardOutPath": str(logs / LOG_FILES[0]),
        "StandardErrorPath": str(logs / LOG_FILES[1]),
    }
    variables = environment(cfg, env)
    if variables:
        out["EnvironmentVariables"] = variables
    return out


def plist_bytes(cfg: LabConfig, config_file: str | None = None,
                overrides: list[str] | None = None, home: Path | None = None,
                env: dict[str, str] | None = None) -> bytes:
    return plistlib.dumps(plist(cfg, config_file, overrides, home, env), fmt=plistlib.FMT_XML,
                          sort_keys=False)


def _domain(uid: int | None = None) -> str:
    return f"gui/{os.getuid() if uid is None else uid}"


def commands(action: str, home: Path | None = None, uid: int | None = None) -> list[list[str]]:
    """The launchctl commands ``action`` runs, in order (install's bootout only when the
    agent is loaded, then a wait for launchd to release the label)."""
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


def refusal(cfg: LabConfig, agent_pid: int | None, home: Path | None = None,
            root: Path = REPO_ROOT) -> str | None:
    """Why the agent must not be installed, in one sentence, or None: a clone in a
    privacy-protected folder, or the port held by something other than the agent."""
    where = privacy.protected_folder(root, home)
    if where:
        return (f"this clone ({root}) is in {where}, which macOS does not let a login agent "
                "read (it would fail with Operation not permitted and restart forever): move "
                "the clone elsewhere (to ~/src/kokoro-lab, say), run rm -rf .venv && make setup "
                "there, then labkit service install")
    taken = ports.holder(cfg.serve.host, cfg.serve.port)
    if taken and not (agent_pid and taken.pid in (agent_pid, None)):
        return (f"port {cfg.serve.port} is held by {taken.describe()}, not by the login agent: "
                "stop it (or choose another port with -s serve.port=N), then run labkit "
                "service install again")
    return None


def _busy(out: subprocess.CompletedProcess) -> bool:
    text = f"{out.stderr or ''} {out.stdout or ''}"
    return out.returncode in BUSY_ERRORS or any(f"failed: {n}:" in text for n in BUSY_ERRORS)


def wait_released(run: Runner, show: list[str], limit_s: float = RELEASE_WAIT_S,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> float:
    """Poll ``launchctl print`` until launchd no longer knows the label; the seconds it
    took. A ServiceError past ``limit_s``."""
    start = clock()
    while run(show, capture_output=True, text=True).returncode == 0:
        if clock() - start > limit_s:
            raise ServiceError(f"launchd still holds {LABEL} {limit_s:.0f} s after bootout: "
                               "run labkit service install again in a minute")
        sleep(0.25)
    return clock() - start


def bootstrap(run: Runner, argv: list[str], attempts: int = BOOTSTRAP_ATTEMPTS,
              sleep: Callable[[float], None] = time.sleep) -> int:
    """``launchctl bootstrap``, retried while launchd answers 5 or 37; the attempts used."""
    attempt = 0
    while True:
        attempt += 1
        out = run(argv, capture_output=True, text=True)
        if out.returncode == 0:
            return attempt
        if not _busy(out) or attempt >= attempts:
            raise ServiceError(f"launchctl bootstrap failed ({out.returncode}) after {attempt} "
                               f"attempt(s): {(out.stderr or out.stdout).strip()}; the plist "
                               f"is at {argv[-1]}")
        sleep(float(attempt))


def install(cfg: LabConfig, config_file: str | None = None, overrides: list[str] | None = None,
            home: Path | None = None, run: Runner | None = None,
            system: str | None = None, env: dict[str, str] | None = None,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> dict:
    """Refuse what cannot run, write the plist (mode 600), create the log folder, and
    (re)load the agent: bootout, wait for the label's release, enable, bootstrap."""
    _require_macos(system or platform.system())
    run = run or subprocess.run
    before = status(home, run, system="Darwin")
    why = refusal(cfg, before["pid"], home)
    if why:
        raise ServiceError(why)
    path = plist_path(home)
    log_dir(home).mkdir(parents=True, exist_ok=True)
    files.write_bytes(path, plist_bytes(cfg, config_file, overrides, home, env), mode=0o600)
    bootout, enable, boot = commands("install", home)
    (show,) = commands("status", home)
    waited = 0.0
    if before["loaded"]:
        run(bootout, capture_output=True, text=True)
        waited = wait_released(run, show, sleep=sleep, clock=clock)
    run(enable, capture_output=True, text=True)
    attempts = bootstrap(run, boot, sleep=sleep)
    return {"installed": str(path), "logs": str(log_dir(home)),
            "program": program_arguments(cfg, config_file, overrides),
            "environment": sorted(plist(cfg, config_file, overrides, home, env)
                                  .get("EnvironmentVariables", {})),
            "replaced_running_agent": before["loaded"], "release_wait_s": round(waited, 2),
            "bootstrap_attempts": attempts}


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


_FIELDS = {"state": re.compile(r"^\s*state = (.+?)\s*$", re.M),
           "pid": re.compile(r"^\s*pid = (\d+)\s*$", re.M),
           "runs": re.compile(r"^\s*runs = (\d+)\s*$", re.M),
           "last_exit": re.compile(r"^\s*last exit code = (.+?)\s*$", re.M),
           "last_signal": re.compile(r"^\s*last terminating signal = (.+?)\s*$", re.M)}


def parse_print(text: str) -> dict:
    """The job's own fields from ``launchctl print gui/<uid>/<label>``: state, pid, runs,
    last exit code (an int; None for "(never exited)"; its words in ``last_exit_text``) and
    last terminating signal. The first match of each is the job's (nested blocks, such as
    the domain's, come after)."""
    found = {k: (m.group(1) if (m := rx.search(text)) else None) for k, rx in _FIELDS.items()}
    code = re.match(r"^(-?\d+)", found["last_exit"] or "")
    return {"state": found["state"],
            "pid": int(found["pid"]) if found["pid"] else None,
            "runs": int(found["runs"]) if found["runs"] else None,
            "last_exit": int(code.group(1)) if code else None,
            "last_exit_text": found["last_exit"],
            "last_signal": found["last_signal"]}


def tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of ``path`` (read from its end), [] when there is none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def status(home: Path | None = None, run: Runner | None = None,
           system: str | None = None) -> dict:
    """Installed (plist present), loaded, state, pid, runs, last exit status and signal
    from ``launchctl print``, and the last lines of each log."""
    _require_macos(system or platform.system())
    run = run or subprocess.run
    (show,) = commands("status", home)
    out = run(show, capture_output=True, text=True)
    info = {"plist": str(plist_path(home)), "installed": plist_path(home).exists(),
            "loaded": out.returncode == 0,
            **parse_print(out.stdout if out.returncode == 0 else ""),
            "logs": str(log_dir(home))}
    info["log_tail"] = {name: tail(log_dir(home) / name) for name in LOG_FILES}
    return info


def rotate_logs(home: Path | None = None, cap: int = LOG_CAP_BYTES,
                fds: dict[str, int] | None = None) -> list[str]:
    """At the agent's start: each log past ``cap`` bytes becomes ``<name>.1`` (replacing the
    older one) and a fresh file takes its place. When this process's stdout or stderr is
    that file (launchd opened it: ``fds`` maps a log's name to the descriptor, default
    serve.log -> 1, serve.err.log -> 2), the descriptor is pointed at the fresh file, so
    nothing more is written to the old one. Returns the names rotated."""
    fds = {LOG_FILES[0]: 1, LOG_FILES[1]: 2} if fds is None else fds
    rotated = []
    for name in LOG_FILES:
        path = log_dir(home) / name
        try:
            st = path.stat()
        except OSError:
            continue
        if st.st_size <= cap:
            continue
        fd = fds.get(name)
        try:
            same = fd is not None and os.path.samestat(os.fstat(fd), st)
        except OSError:
            same = False
        files.rotate(path)
        fresh = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if same:
            os.dup2(fresh, fd)
        os.close(fresh)
        rotated.append(name)
    return rotated


def dry_run(action: str, cfg: LabConfig, config_file: str | None = None,
            overrides: list[str] | None = None, home: Path | None = None,
            env: dict[str, str] | None = None) -> tuple[str, list[list[str]]]:
    """The plist ``install`` would write (empty for the other actions) and the commands."""
    text = (plist_bytes(cfg, config_file, overrides, home, env).decode()
            if action == "install" else "")
    return text, commands(action, home)
