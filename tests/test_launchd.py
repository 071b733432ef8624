"""labkit service (labkit.host.launchd): the launchd LaunchAgent, with launchd faked.

Where the fake's behaviour comes from:
* launchd.plist(5): ``KeepAlive`` true keeps the job alive unconditionally; with
  ``{SuccessfulExit: false}`` it is restarted only after a non-zero exit; jobs are spawned
  at most once every ``ThrottleInterval`` seconds (10 by default); ``EnvironmentVariables``
  is a dictionary of strings set before the job runs.
* launchctl, as it answers (quoted in Homebrew's, nix-installer's and others' issue
  threads): ``bootout`` returns at once and launchd releases the label seconds later
  ("scheduling cleanup in 5 sec after sending Terminated: 15"; the label freed ~3 s after
  bootout); a ``bootstrap`` in that window exits 5 with "Bootstrap failed: 5: Input/output
  error" (launchd logs 37, operation already in progress), and the same command seconds
  later succeeds; ``print`` of an unknown label exits 113 ("Could not find service ... in
  domain for user gui: 501"); ``bootout`` of an unloaded one exits 3 ("Boot-out failed: 3:
  No such process"); ``print`` shows ``state = running|not running``, ``pid = N`` while
  running, ``runs = N`` and ``last exit code = N`` or ``(never exited)``.
"""
from __future__ import annotations

import json
import os
import plistlib
import socket
import subprocess

import pytest

from labkit import cli
from labkit.config import REPO_ROOT, LabConfig
from labkit.host import launchd as service

NOT_FOUND = (113, "", 'Could not find service "com.kokoro-lab.serve" in domain for user gui: 501\n')
BUSY = (5, "", "Bootstrap failed: 5: Input/output error\n"
               "Try re-running the command as root for richer errors.\n")


def printed(state="running", pid=4242, runs=1, last_exit="(never exited)"):
    lines = ["gui/501/com.kokoro-lab.serve = {", "\tactive count = 1",
             "\tpath = /Users/me/Library/LaunchAgents/com.kokoro-lab.serve.plist",
             "\ttype = LaunchAgent", f"\tstate = {state}", "",
             "\tprogram = /Users/me/src/kokoro-lab/.venv/bin/labkit",
             "\tenvironment = {", "\t\tKOKORO_LAB_API_KEY => sekrit", "\t}",
             "\tdomain = gui/501 [100005]", f"\truns = {runs}"]
    if pid:
        lines.append(f"\tpid = {pid}")
    lines += [f"\tlast exit code = {last_exit}", "\tspawn type = interactive (4)", "}"]
    return "\n".join(lines) + "\n"


class FakeLaunchd:
    """launchd as launchctl shows it: a loaded label is released ``release_polls`` prints
    after bootout (asynchronously); bootstrap meanwhile is refused with error 5; the first
    ``transient`` bootstraps after the release are refused too."""

    def __init__(self, loaded=False, release_polls=3, transient=0, never_release=False):
        self.loaded, self.draining = loaded, None
        self.release_polls, self.transient, self.never = release_polls, transient, never_release
        self.calls = []

    def __call__(self, argv, **kw):
        self.calls.append(argv)
        verb = argv[1]
        if verb == "print":
            if self.draining is not None and not self.never:
                self.draining -= 1
                if self.draining <= 0:
                    self.loaded, self.draining = False, None
            return self._result((0, printed(), "") if self.loaded else NOT_FOUND)
        if verb == "bootout":
            if not self.loaded:
                return self._result((3, "", "Boot-out failed: 3: No such process\n"))
            self.draining = self.release_polls
            return self._result((0, "", ""))
        if verb == "bootstrap":
            if self.loaded:
                return self._result(BUSY)
            if self.transient:
                self.transient -= 1
                return self._result(BUSY)
            self.loaded = True
        return self._result((0, "", ""))

    def verbs(self):
        return [c[1] for c in self.calls]

    def _result(self, r):
        return subprocess.CompletedProcess(self.calls[-1], *r)


class Clock:
    def __init__(self):
        self.t = 0.0

    def sleep(self, s):
        self.t += s

    def __call__(self):
        return self.t


@pytest.fixture
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cfg(free_port):
    return LabConfig().with_overrides({"serve.port": free_port})


@pytest.fixture
def no_lab_env(monkeypatch):
    for var in service.ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def install(cfg, home, launchd, **kw):
    clock = Clock()
    return service.install(cfg, home=home, run=launchd, system="Darwin", sleep=clock.sleep,
                           clock=clock, **kw)


def test_dry_run_prints_a_plist_that_parses_back_on_any_platform(capsys, tmp_path, monkeypatch,
                                                                   no_lab_env):
    monkeypatch.setenv("HOME", str(tmp_path))
    conf = tmp_path / "my.yaml"
    conf.write_text("voice: bf_emma\n")
    rc = cli.main(["service", "install", "--dry-run", "-c", str(conf), "-s", "serve.port=8881"])
    out = capsys.readouterr()
    assert rc == 0
    p = plistlib.loads(out.out.encode())
    assert p["Label"] == "com.kokoro-lab.serve" and p["RunAtLoad"] is True
    args = p["ProgramArguments"]
    assert args[args.index("serve") + 1:] == [
        "--as-login-agent", "-c", str(conf), "-s", "serve.port=8881",
        "-s", f"serve.best_json={REPO_ROOT / 'artifacts' / 'best.json'}",
        "--host", "127.0.0.1", "--port", "8881"]
    assert args[0].endswith("labkit") or args[1:3] == ["-m", "labkit.cli"]
    assert p["StandardErrorPath"] == str(tmp_path / "Library/Logs/kokoro-lab/serve.err.log")
    assert p["WorkingDirectory"] == str(REPO_ROOT)
    assert "EnvironmentVariables" not in p  # nothing given by environment
    assert f"# would run: launchctl bootstrap gui/{os.getuid()} " in out.err
    assert not (tmp_path / "Library").exists()  # nothing written


def test_the_plist_starts_a_serve_the_cli_accepts():
    args = service.program_arguments(LabConfig(), overrides=["voice=bf_emma"])
    argv = args[args.index("serve"):]
    parsed = cli.build_parser().parse_args(argv)
    cfg = cli.serve_config(parsed)
    assert parsed.as_login_agent and cfg.voice == "bf_emma" and cfg.serve.port == 8880
    assert cfg.serve.best_json == str(REPO_ROOT / "artifacts" / "best.json")


@pytest.mark.parametrize("action", ["install", "uninstall", "status"])
def test_not_on_a_mac_is_a_clear_error(action, monkeypatch, capsys):
    monkeypatch.setattr(service.platform, "system", lambda: "Linux")
    assert cli.main(["service", action]) == 2
    assert "macOS launchd agent and this is Linux: use --dry-run" in capsys.readouterr().err


# -- finding 5: restarted only after a failure, throttled ----------------------------------
def test_keepalive_restarts_only_after_a_failure_and_is_throttled(cfg, tmp_path):
    p = service.plist(cfg, home=tmp_path, env={})
    assert p["KeepAlive"] == {"SuccessfulExit": False}  # `true` restarts a clean exit too
    assert p["ThrottleInterval"] > 10  # launchd's default spawns it every 10 s


# -- finding 6: settings given by environment reach the agent ------------------------------
def test_environment_settings_are_carried_resolved_into_the_plist(tmp_path, free_port):
    env = {"KOKORO_LAB_API_KEY": "sekrit", "KOKORO_LAB_ASSETS": "my/assets", "HOME": "/x",
           "KOKORO_LAB_MODEL": ""}
    cfg = LabConfig.load(env=env, overrides={"serve.port": free_port})
    assert cfg.serve.api_key == "sekrit"
    p = service.plist(cfg, home=tmp_path, env=env)
    assert p["EnvironmentVariables"] == {"KOKORO_LAB_API_KEY": "sekrit",
                                         "KOKORO_LAB_ASSETS": str(REPO_ROOT / "my" / "assets")}


def test_the_written_plist_holds_the_key_and_only_its_owner_reads_it(cfg, tmp_path):
    env = {"KOKORO_LAB_API_KEY": "sekrit"}
    cfg = LabConfig.load(env=env, overrides={"serve.port": cfg.serve.port})
    out = install(cfg, tmp_path, FakeLaunchd(), env=env)
    path = service.plist_path(tmp_path)
    assert plistlib.loads(path.read_bytes())["EnvironmentVariables"] == env
    assert (path.stat().st_mode & 0o777) == 0o600
    assert out["environment"] == ["KOKORO_LAB_API_KEY"]


def test_dry_run_with_the_key_in_the_environment(monkeypatch, capsys, tmp_path, no_lab_env):
    """The issue's Done-when: KOKORO_LAB_API_KEY=... labkit service install --dry-run."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KOKORO_LAB_API_KEY", "sekrit")
    assert cli.main(["service", "install", "--dry-run"]) == 0
    p = plistlib.loads(capsys.readouterr().out.encode())
    assert p["EnvironmentVariables"] == {"KOKORO_LAB_API_KEY": "sekrit"}
    assert p["KeepAlive"] != True  # noqa: E712 - `true` is the unconditional form


# -- finding 2: reinstalling over a running agent ------------------------------------------
def test_install_over_a_running_agent_waits_for_launchd_to_release_it(cfg, tmp_path):
    launchd = FakeLaunchd(loaded=True, release_polls=4)
    out = install(cfg, tmp_path, launchd)
    verbs = launchd.verbs()
    assert verbs[:2] == ["print", "bootout"] and verbs[-2:] == ["enable", "bootstrap"]
    assert verbs[2:-2] == ["print"] * 4  # polled until launchd no longer knew the label
    assert launchd.loaded and out["replaced_running_agent"] and out["bootstrap_attempts"] == 1
    path = service.plist_path(tmp_path)
    uid = os.getuid()
    assert launchd.calls[-1] == ["launchctl", "bootstrap", f"gui/{uid}", str(path)]
    assert launchd.calls[1] == ["launchctl", "bootout", f"gui/{uid}/com.kokoro-lab.serve"]


def test_a_fresh_install_does_not_boot_out_and_retries_a_transient_refusal(cfg, tmp_path):
    launchd = FakeLaunchd(transient=2)
    out = install(cfg, tmp_path, launchd)
    assert launchd.verbs() == ["print", "enable", "bootstrap", "bootstrap", "bootstrap"]
    assert launchd.loaded and out["bootstrap_attempts"] == 3 and not out["replaced_running_agent"]


def test_the_waits_are_bounded_and_say_what_to_do(cfg, tmp_path):
    with pytest.raises(service.ServiceError, match="still holds com.kokoro-lab.serve 30 s after bootout"):
        install(cfg, tmp_path, FakeLaunchd(loaded=True, never_release=True))
    launchd = FakeLaunchd(transient=99)
    with pytest.raises(service.ServiceError,
                       match=r"bootstrap failed \(5\) after 5 attempt\(s\): Bootstrap failed: 5"):
        install(cfg, tmp_path, launchd)
    assert launchd.verbs().count("bootstrap") == service.BOOTSTRAP_ATTEMPTS


def test_a_refusal_that_is_not_launchd_being_busy_is_not_retried(cfg, tmp_path):
    def broken(argv, **kw):
        if argv[1] == "bootstrap":
            return subprocess.CompletedProcess(argv, 1, "", "Bootstrap failed: 1: Operation not permitted\n")
        return subprocess.CompletedProcess(argv, *NOT_FOUND) if argv[1] == "print" else \
            subprocess.CompletedProcess(argv, 0, "", "")
    with pytest.raises(service.ServiceError, match=r"\(1\) after 1 attempt\(s\): Bootstrap failed: 1"):
        install(cfg, tmp_path, broken)


# -- finding 5: a port held by something else ----------------------------------------------
def test_install_refuses_a_port_held_by_something_else_and_names_it(listener, tmp_path):
    cfg = LabConfig().with_overrides({"serve.port": listener})
    with pytest.raises(service.ServiceError) as exc:
        install(cfg, tmp_path, FakeLaunchd())
    assert f"port {listener} is held by pid {os.getpid()}" in str(exc.value)
    assert "not by the login agent" in str(exc.value)
    assert not service.plist_path(tmp_path).exists()


def test_the_agents_own_port_is_no_reason_to_refuse(listener, tmp_path):
    """Reinstalling while the agent itself serves: launchctl print's pid holds the port."""
    cfg = LabConfig().with_overrides({"serve.port": listener})
    assert service.refusal(cfg, agent_pid=os.getpid(), home=tmp_path) is None
    assert service.refusal(cfg, agent_pid=None, home=tmp_path).startswith(f"port {listener}")


# -- finding 4: a clone in a privacy-protected folder --------------------------------------
def test_install_refuses_a_clone_in_documents(cfg, tmp_path):
    (tmp_path / "Documents").symlink_to(REPO_ROOT.parent)  # this clone is in ~/Documents
    with pytest.raises(service.ServiceError, match=r"is in ~/Documents, which macOS does not let "
                                                   r"a login agent read"):
        install(cfg, tmp_path, FakeLaunchd())
    assert not service.plist_path(tmp_path).exists()


# -- logs: rotated when the agent starts ---------------------------------------------------
def test_logs_past_the_cap_are_rotated_and_the_agent_writes_to_the_fresh_file(tmp_path):
    logs = service.log_dir(tmp_path)
    logs.mkdir(parents=True)
    big, small = logs / "serve.err.log", logs / "serve.log"
    big.write_text("old line\n" * 20)
    small.write_text("short\n")
    fd = os.open(big, os.O_WRONLY | os.O_APPEND)  # as launchd hands it to the agent
    try:
        assert service.rotate_logs(tmp_path, cap=100, fds={"serve.err.log": fd}) == ["serve.err.log"]
        os.write(fd, b"new line\n")
    finally:
        os.close(fd)
    assert big.read_text() == "new line\n"
    assert (logs / "serve.err.log.1").read_text() == "old line\n" * 20
    assert small.read_text() == "short\n" and not (logs / "serve.log.1").exists()


# -- status: the last exit status and the logs' tails --------------------------------------
def test_status_shows_the_last_exit_status_and_the_log_tail(tmp_path):
    logs = service.log_dir(tmp_path)
    logs.mkdir(parents=True)
    (logs / "serve.err.log").write_text("".join(f"line {i}\n" for i in range(40)) +
                                        "labkit serve: port 8880 on 127.0.0.1 is held by pid 9\n")
    crashed = printed(state="not running", pid=None, runs=14, last_exit="1")
    st = service.status(home=tmp_path, run=lambda argv, **kw: subprocess.CompletedProcess(
        argv, 0, crashed, ""), system="Darwin")
    assert st["loaded"] and st["state"] == "not running" and st["pid"] is None
    assert st["last_exit"] == 1 and st["runs"] == 14
    tail = st["log_tail"]["serve.err.log"]
    assert len(tail) == service.TAIL_LINES and tail[-1].endswith("is held by pid 9")
    assert st["log_tail"]["serve.log"] == []
    assert "sekrit" not in json.dumps(st)  # launchctl print lists the environment: not echoed
    running = service.parse_print(printed())
    assert running["pid"] == 4242 and running["last_exit"] is None
    assert running["last_exit_text"] == "(never exited)"
    assert service.parse_print("\tlast exit code = 78: EX_CONFIG\n")["last_exit"] == 78
    gone = service.status(home=tmp_path, run=lambda argv, **kw: subprocess.CompletedProcess(
        argv, *NOT_FOUND), system="Darwin")
    assert not gone["loaded"] and gone["state"] is None and gone["last_exit"] is None


def test_uninstall_boots_out_and_removes_the_plist(cfg, tmp_path):
    install(cfg, tmp_path, FakeLaunchd())
    launchd = FakeLaunchd(loaded=True)
    out = service.uninstall(home=tmp_path, run=launchd, system="Darwin")
    assert out["was_loaded"] and out["removed"]
    assert not service.plist_path(tmp_path).exists()
    assert launchd.calls == [["launchctl", "bootout", f"gui/{os.getuid()}/com.kokoro-lab.serve"]]
    again = service.uninstall(home=tmp_path, run=FakeLaunchd(), system="Darwin")
    assert again == {"removed": None, "was_loaded": False}


def test_service_cli_on_a_faked_mac(monkeypatch, tmp_path, capsys, free_port, no_lab_env):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(service.platform, "system", lambda: "Darwin")
    launchd = FakeLaunchd()
    monkeypatch.setattr(service.subprocess, "run", launchd)
    assert cli.main(["service", "install", "-s", f"serve.port={free_port}"]) == 0
    assert json.loads(capsys.readouterr().out)["installed"].startswith(str(tmp_path))
    assert launchd.verbs() == ["print", "enable", "bootstrap"]
    assert cli.main(["service", "status"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["state"] == "running" and st["pid"] == 4242 and "log_tail" in st
