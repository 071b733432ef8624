"""labkit service (labkit.host.launchd): the launchd LaunchAgent, with launchctl and the platform faked."""
from __future__ import annotations

import os
import plistlib
import subprocess

import pytest

from labkit import cli
from labkit.host import launchd as service
from labkit.config import REPO_ROOT, LabConfig


class FakeLaunchctl:
    def __init__(self, results=None):
        self.calls, self.results = [], results or {}

    def __call__(self, argv, **kw):
        self.calls.append(argv)
        rc, out, err = self.results.get(argv[1], (0, "", ""))
        return subprocess.CompletedProcess(argv, rc, out, err)


def test_dry_run_prints_a_plist_that_parses_back_on_any_platform(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    conf = tmp_path / "my.yaml"
    conf.write_text("voice: bf_emma\n")
    rc = cli.main(["service", "install", "--dry-run", "-c", str(conf), "-s", "serve.port=8881"])
    out = capsys.readouterr()
    assert rc == 0
    p = plistlib.loads(out.out.encode())
    assert p["Label"] == "com.kokoro-lab.serve" and p["RunAtLoad"] is True and p["KeepAlive"] is True
    args = p["ProgramArguments"]
    assert args[args.index("serve") + 1:] == [
        "-c", str(conf), "-s", "serve.port=8881",
        "-s", f"serve.best_json={REPO_ROOT / 'artifacts' / 'best.json'}",
        "--host", "127.0.0.1", "--port", "8881"]
    assert args[0].endswith("labkit") or args[1:3] == ["-m", "labkit.cli"]
    assert p["StandardErrorPath"] == str(tmp_path / "Library/Logs/kokoro-lab/serve.err.log")
    assert p["WorkingDirectory"] == str(REPO_ROOT)
    assert f"# would run: launchctl bootstrap gui/{os.getuid()} " in out.err
    assert not (tmp_path / "Library").exists()  # nothing written


def test_the_plist_starts_a_serve_the_cli_accepts():
    args = service.program_arguments(LabConfig(), overrides=["voice=bf_emma"])
    argv = args[args.index("serve"):]
    cfg = cli.serve_config(cli.build_parser().parse_args(argv))
    assert cfg.voice == "bf_emma" and cfg.serve.port == 8880
    assert cfg.serve.best_json == str(REPO_ROOT / "artifacts" / "best.json")


@pytest.mark.parametrize("action", ["install", "uninstall", "status"])
def test_not_on_a_mac_is_a_clear_error(action, monkeypatch, capsys):
    monkeypatch.setattr(service.platform, "system", lambda: "Linux")
    assert cli.main(["service", action]) == 2
    assert "macOS launchd agent and this is Linux: use --dry-run" in capsys.readouterr().err


def test_install_writes_the_plist_and_bootstraps_it(tmp_path):
    launchctl = FakeLaunchctl({"bootout": (3, "", "Boot-out failed: 3: No such process")})
    out = service.install(LabConfig(), home=tmp_path, run=launchctl, system="Darwin")
    path = tmp_path / "Library/LaunchAgents/com.kokoro-lab.serve.plist"
    assert out["installed"] == str(path) and (tmp_path / "Library/Logs/kokoro-lab").is_dir()
    assert plistlib.loads(path.read_bytes())["KeepAlive"] is True
    uid = os.getuid()
    assert launchctl.calls == [
        ["launchctl", "bootout", f"gui/{uid}/com.kokoro-lab.serve"],
        ["launchctl", "enable", f"gui/{uid}/com.kokoro-lab.serve"],
        ["launchctl", "bootstrap", f"gui/{uid}", str(path)]]


def test_a_refused_bootstrap_says_why(tmp_path):
    launchctl = FakeLaunchctl({"bootstrap": (5, "", "Bootstrap failed: 5: Input/output error")})
    with pytest.raises(service.ServiceError, match="bootstrap failed \\(5\\): Bootstrap failed: 5"):
        service.install(LabConfig(), home=tmp_path, run=launchctl, system="Darwin")


def test_uninstall_boots_out_and_removes_the_plist(tmp_path):
    service.install(LabConfig(), home=tmp_path, run=FakeLaunchctl(), system="Darwin")
    launchctl = FakeLaunchctl()
    out = service.uninstall(home=tmp_path, run=launchctl, system="Darwin")
    assert out["was_loaded"] and out["removed"]
    assert not service.plist_path(tmp_path).exists()
    assert launchctl.calls == [["launchctl", "bootout", f"gui/{os.getuid()}/com.kokoro-lab.serve"]]
    again = service.uninstall(home=tmp_path, run=FakeLaunchctl({"bootout": (3, "", "")}),
                              system="Darwin")
    assert again == {"removed": None, "was_loaded": False}


def test_status_reads_launchctl_print(tmp_path):
    printed = ("gui/501/com.kokoro-lab.serve = {\n\tactive count = 1\n\tstate = running\n"
               "\tprogram = /Users/me/kokoro-lab/.venv/bin/labkit\n\tpid = 4242\n}\n")
    st = service.status(home=tmp_path, run=FakeLaunchctl({"print": (0, printed, "")}), system="Darwin")
    assert st["loaded"] and st["state"] == "running" and st["pid"] == 4242 and not st["installed"]
    gone = service.status(home=tmp_path, run=FakeLaunchctl({"print": (113, "", "Could not find")}),
                          system="Darwin")
    assert not gone["loaded"] and gone["state"] is None


def test_service_cli_on_a_faked_mac(monkeypatch, tmp_path, capsys):
    import json

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(service.platform, "system", lambda: "Darwin")
    launchctl = FakeLaunchctl()
    monkeypatch.setattr(service.subprocess, "run", launchctl)
    assert cli.main(["service", "install"]) == 0
    assert json.loads(capsys.readouterr().out)["installed"].startswith(str(tmp_path))
    assert [c[1] for c in launchctl.calls] == ["bootout", "enable", "bootstrap"]
