"""labkit.host.preflight and labkit doctor, with the Mac's facts faked: every requirement has a
case where it fails with its one sentence, and the JSON report carries the chosen threads."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labkit import cli
from labkit.host import doctor, machine, preflight
from labkit.config import REPO_ROOT, LabConfig

M1_MAX = machine.Facts("Darwin", "arm64", "14.5", "Apple M1 Max", 10, 10, 8, 2)
LINUX = machine.Facts("Linux", "x86_64", "6.1", "EPYC", 2, 2, usable_cpus=2)


@pytest.mark.parametrize("version, ok", [("14.0", True), ("15.1.1", True), ("13.6.7", False),
                                         ("12", False), ("", False)])
def test_macos_version_against_the_onnxruntime_wheels(version, ok):
    c = preflight.check_os(machine.Facts("Darwin", "arm64", version, "Apple M1 Max", 10, 10, 8, 2))
    assert c.ok is ok
    if not ok:
        assert "onnxruntime 1.31.1" in c.problem and "macOS 14.0" in c.problem
        assert c.problem.count(". ") == 0 and c.problem.endswith(".")  # one sentence


def test_linux_has_no_os_minimum():
    assert preflight.check_os(LINUX).ok


def test_pinned_versions_come_from_pyproject():
    assert preflight.pinned("onnxruntime") == "1.31.1"
    assert preflight.pinned("no-such-package") is None


def test_python_must_be_3_11():
    assert preflight.check_python((3, 11, 9)).ok
    bad = preflight.check_python((3, 12, 1))
    assert not bad.ok and "Python 3.12.1 is not 3.11" in bad.problem


def test_compiler_on_the_mac_needs_the_command_line_tools(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "package_version", lambda name: None)
    monkeypatch.setattr(preflight, "xcode_clt", lambda: None)
    c = preflight.check_compiler(M1_MAX)
    assert not c.ok and "xcode-select --install" in c.problem and "pesq" in c.problem
    monkeypatch.setattr(preflight, "xcode_clt", lambda: "/Library/Developer/CommandLineTools")
    assert preflight.check_compiler(M1_MAX).ok
    monkeypatch.setattr(preflight, "package_version", lambda name: "0.0.4")
    monkeypatch.setattr(preflight, "xcode_clt", lambda: None)
    assert "not needed" in preflight.check_compiler(M1_MAX).found  # pesq is already built


def test_compiler_elsewhere(monkeypatch):
    monkeypatch.setattr(preflight, "package_version", lambda name: None)
    monkeypatch.setattr(preflight.shutil, "which", lambda n: "/usr/bin/gcc" if n == "gcc" else None)
    assert preflight.check_compiler(LINUX).ok
    monkeypatch.setattr(preflight.shutil, "which", lambda n: None)
    c = preflight.check_compiler(LINUX)
    assert not c.ok and "no C compiler" in c.problem


def test_xcode_select_probe(monkeypatch, tmp_path):
    import subprocess

    def run(argv, **kw):
        assert argv == ["xcode-select", "-p"]
        return subprocess.CompletedProcess(argv, 0, f"{tmp_path}\n", "")

    monkeypatch.setattr(preflight.subprocess, "run", run)
    assert preflight.xcode_clt() == str(tmp_path)

    def missing(argv, **kw):
        return subprocess.CompletedProcess(argv, 2, "", "xcode-select: error: unable to get "
                                           "active developer directory")

    monkeypatch.setattr(preflight.subprocess, "run", missing)
    assert preflight.xcode_clt() is None


def test_onnxruntime_version_and_coreml_note(monkeypatch):
    import onnxruntime as ort

    assert doctor.check_onnxruntime(LINUX).ok
    mac = doctor.check_onnxruntime(M1_MAX)
    assert mac.ok and "stage 04 will record its CoreML sweep as skipped" in mac.found
    monkeypatch.setattr(ort, "__version__", "1.20.0")
    bad = doctor.check_onnxruntime(LINUX)
    assert not bad.ok and "1.20.0 is installed but the lab pins 1.31.1" in bad.problem


def test_threads_check_says_why():
    c = doctor.check_threads(LabConfig(), M1_MAX)
    assert c.data == {"threads": 8, "source": "performance cores", "why": c.data["why"]}
    fixed = doctor.check_threads(LabConfig().with_overrides({"session.intra_op_threads": 2}), M1_MAX)
    assert fixed.data["threads"] == 2 and fixed.data["source"] == "setting"


def test_no_player_fails_only_on_the_mac():
    none = {"player": None, "detail": "no sounddevice output, ffplay, play or aplay"}
    mac = doctor.check_player(none, M1_MAX)
    assert not mac.ok and mac.required and "Nothing can play audio" in mac.problem
    linux = doctor.check_player(none, LINUX)
    assert not linux.ok and not linux.required
    assert doctor.check_player({"player": "sounddevice", "detail": "one stream"}, M1_MAX).ok


def test_missing_assets_name_the_file_and_the_fix(tmp_path):
    cfg = LabConfig().with_overrides({"assets_dir": str(tmp_path)})
    c = doctor.check_assets(cfg)
    assert not c.ok and "model:int8" in c.problem and "voices" in c.problem
    assert "make assets" in c.problem
    missing = LabConfig().with_overrides({"model_path": str(tmp_path / "mine.onnx")})
    assert "mine.onnx" in doctor.check_assets(missing).problem


@pytest.mark.model
def test_provisioned_assets_pass():
    assert doctor.check_assets(LabConfig()).ok


class Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        data = json.dumps({"status": "ok", "variant": "qdq-cheap-blocks"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_endpoint_running_or_not():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = LabConfig().with_overrides({"serve.port": server.server_port, "serve.host": "0.0.0.0"})
        c = doctor.check_endpoint(cfg)
        assert c.ok and c.found.endswith(": ok, variant qdq-cheap-blocks")
        assert c.data["url"] == f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
    down = doctor.check_endpoint(cfg, timeout=0.5)
    assert not down.ok and not down.required and "not running" in down.found


def test_doctor_json_reports_threads_and_exits_1_with_one_sentence_per_problem(monkeypatch, capsys,
                                                                                tmp_path):
    old_mac = machine.Facts("Darwin", "arm64", "13.6", "Apple M1 Max", 10, 10, 8, 2)
    monkeypatch.setattr(machine, "current", lambda: old_mac)
    monkeypatch.setattr(preflight, "package_version", lambda name: None)
    monkeypatch.setattr(preflight, "xcode_clt", lambda: None)
    monkeypatch.setattr(doctor, "player_choice", lambda: {"player": "sounddevice", "detail": "x"})
    rc = cli.main(["doctor", "--json", "-s", f"assets_dir={tmp_path}", "-s", "serve.port=9"])
    out = capsys.readouterr()
    rep = json.loads(out.out)
    assert rc == 1 and rep["ok"] is False
    assert rep["threads"]["threads"] == 8 and rep["platform"]["apple_silicon"]
    assert [c["name"] for c in rep["checks"] if c["required"] and not c["ok"]] == [
        "os", "compiler", "assets"]
    assert len(rep["problems"]) == 3 and out.err.strip().splitlines() == rep["problems"]
    text = doctor.format_report(rep)
    assert "8 performance + 2 efficiency cores (Apple M1 Max)" in text and "FAILED" in text


def test_doctor_passes_on_a_ready_machine(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(machine, "current", lambda: M1_MAX)
    monkeypatch.setattr(preflight, "xcode_clt", lambda: "/Library/Developer/CommandLineTools")
    monkeypatch.setattr(doctor, "player_choice", lambda: {"player": "sounddevice", "detail": "x"})
    monkeypatch.setattr(doctor, "check_assets", lambda cfg: preflight.Check("assets", True, "ok"))
    assert cli.main(["doctor", "-s", "serve.port=9"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("ready.")


def test_preflight_runs_with_only_yaml_and_psutil():
    """make setup runs it before the project's dependencies are installed."""
    import subprocess
    import sys

    probe = ("import sys, labkit.host.preflight; "
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # (the test suite's model guard, tests/standins, is in every process the tests start)
    loaded = set(out.stdout.split()) - {"labkit", "__main__", "sitecustomize", "standin_no_model"}
    third_party = {m for m in loaded if not m.startswith("_") and m != "cython_runtime"}
    assert third_party == {"psutil", "yaml"}


# -- the interpreter's architecture (finding 3) ---------------------------------------------
# Facts: `sysctl -n sysctl.proc_translated` prints 1 in a process Rosetta translates, 0 in a
# native one, and fails (unknown oid) on an Intel Mac (Apple, "About the Rosetta translation
# environment"); such a process's platform.machine() is x86_64. onnxruntime's macOS x86_64
# wheels stop at 1.23.2 (pip download --platform macosx_14_0_x86_64 onnxruntime==1.31.1:
# "No matching distribution", versions 1.15.0 ... 1.23.2).
ROSETTA = machine.Facts("Darwin", "x86_64", "14.5", "Apple M1 Max", 10, 10, translated=True)
INTEL = machine.Facts("Darwin", "x86_64", "14.5", "Intel(R) Core(TM) i9-9980HK", 16, 8)


def test_a_rosetta_or_intel_python_is_refused_before_pip_fails():
    rosetta = preflight.check_arch(ROSETTA)
    assert not rosetta.ok and rosetta.required
    assert "runs under Rosetta" in rosetta.problem and "no macOS x86_64 wheel (the last is 1.23.2)" in rosetta.problem
    assert "make PYTHON=" in rosetta.problem and rosetta.problem.count(". ") == 0
    intel = preflight.check_arch(INTEL)
    assert not intel.ok and "Intel Mac" in intel.problem and "Apple-silicon Mac" in intel.problem
    native = preflight.check_arch(machine.Facts("Darwin", "arm64", "14.5", "Apple M1 Max", 10, 10, 8, 2,
                                                translated=False))
    assert native.ok and "native" in native.found
    assert [c.name for c in preflight.checks(ROSETTA) if not c.ok][:1] == ["arch"]


def test_the_arch_check_is_skipped_off_the_mac():
    c = preflight.check_arch(LINUX)
    assert c.skipped and c.state == "skipped" and c.to_dict()["state"] == "skipped"


def test_facts_read_rosetta_from_sysctl(monkeypatch):
    answers = {"sysctl.proc_translated": "1", "machdep.cpu.brand_string": "Apple M1 Max"}
    monkeypatch.setattr(machine.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(machine.platform, "mac_ver", lambda: ("14.5", ("", "", ""), "x86_64"))
    monkeypatch.setattr(machine, "sysctl", answers.get)
    assert machine.facts().translated is True
    answers["sysctl.proc_translated"] = "0"
    assert machine.facts().translated is False
    del answers["sysctl.proc_translated"]  # an Intel Mac has no such key
    assert machine.facts().translated is None


def test_preflight_main_refuses_a_rosetta_python(monkeypatch, capsys):
    monkeypatch.setattr(machine, "current", lambda: ROSETTA)
    monkeypatch.setattr(preflight, "xcode_clt", lambda: "/Library/Developer/CommandLineTools")
    assert preflight.main() == 1
    out = capsys.readouterr()
    assert "arch       FAILED" in out.out and "runs under Rosetta" in out.err


# -- the Mac-facing checks: clone, port, login service, Raycast's permission -----------------
def test_doctor_json_has_the_mac_checks_skipped_off_the_mac(monkeypatch, capsys, tmp_path):
    """The issue's Done-when: labkit doctor --json here lists them as skipped."""
    monkeypatch.setattr(machine, "current", lambda: LINUX)
    cli.main(["doctor", "--json", "-s", f"assets_dir={tmp_path}", "-s", "serve.port=9"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert {"arch", "clone", "port", "service", "raycast"} <= set(checks)
    assert [n for n in ("arch", "clone", "service", "raycast") if checks[n]["state"] == "skipped"] == [
        "arch", "clone", "service", "raycast"]
    assert checks["port"]["state"] == "ok"  # ports exist everywhere: checked here too


def test_a_clone_in_documents_is_a_warning_with_its_fix(tmp_path):
    """Finding 4: a launchd-started process may not read ~/Documents, ~/Desktop or
    ~/Downloads without the user's grant (macOS privacy protection, TCC)."""
    (tmp_path / "Documents").mkdir()
    clone = tmp_path / "Documents" / "kokoro-lab"
    c = doctor.check_clone(M1_MAX, root=clone, home=tmp_path)
    assert not c.ok and not c.required and c.state == "warn"
    assert "in ~/Documents, which macOS does not let the login service read" in c.problem
    assert c.problem.count(". ") == 0
    assert doctor.check_clone(M1_MAX, root=tmp_path / "src" / "kokoro-lab", home=tmp_path).ok
    assert doctor.check_clone(LINUX, root=clone, home=tmp_path).skipped


def test_a_port_held_by_something_else_fails_and_names_it(listener):
    c = doctor.check_port(LabConfig().with_overrides({"serve.port": listener}), timeout=0.5)
    assert not c.ok and c.required
    assert f"Port {listener} is held by pid" in c.problem and "not the Kokoro endpoint" in c.problem


def test_a_port_held_by_the_endpoint_is_fine():
    class Ours(Health):
        def do_GET(self):  # noqa: N802
            self.send_response(503)
            self.send_header("X-Kokoro-Variant", "int8")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ours)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = doctor.check_port(LabConfig().with_overrides({"serve.port": server.server_port}))
    finally:
        server.shutdown()
        server.server_close()
    assert c.ok and "held by the Kokoro endpoint" in c.found


def launchctl_print(code, text=""):
    import subprocess

    return lambda argv, **kw: subprocess.CompletedProcess(argv, code, text, "")


def test_the_login_service_state_and_last_exit_status(tmp_path):
    """launchctl print's fields (state, pid, runs, last exit code) as tests/test_launchd.py
    documents them."""
    gone = doctor.check_service(M1_MAX, tmp_path, launchctl_print(113))
    assert gone.ok and "not installed" in gone.found
    crashed = doctor.check_service(M1_MAX, tmp_path, launchctl_print(
        0, "\tstate = not running\n\truns = 14\n\tlast exit code = 1\n"))
    assert crashed.state == "warn" and "last exited with status 1" in crashed.problem
    assert "labkit service status" in crashed.problem
    running = doctor.check_service(M1_MAX, tmp_path, launchctl_print(
        0, "\tstate = running\n\truns = 1\n\tpid = 4242\n\tlast exit code = (never exited)\n"))
    assert running.ok and running.found == "running, pid 4242, last exit code (never exited)"
    assert running.data["pid"] == 4242
    assert doctor.check_service(LINUX).skipped


def test_raycasts_accessibility_permission_where_it_can_be_read(tmp_path):
    """TCC's database: table access (service, client, client_type, auth_value, ...),
    auth_value 2 allowed, 0 denied; readable only with Full Disk Access."""
    import sqlite3

    app = tmp_path / "Raycast.app"
    app.mkdir()
    db = tmp_path / "TCC.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE access (service TEXT NOT NULL, client TEXT NOT NULL, "
                "client_type INTEGER NOT NULL, auth_value INTEGER NOT NULL)")
    con.execute("INSERT INTO access VALUES ('kTCCServiceAccessibility', 'com.raycast.macos', 0, 0)")
    con.commit()
    denied = doctor.check_accessibility(M1_MAX, app, db)
    assert denied.state == "warn" and "Privacy & Security > Accessibility" in denied.problem
    con.execute("UPDATE access SET auth_value = 2")
    con.commit()
    con.close()
    assert doctor.check_accessibility(M1_MAX, app, db).ok
    unreadable = doctor.check_accessibility(M1_MAX, app, tmp_path / "no" / "TCC.db")
    assert unreadable.skipped and "Full Disk Access" in unreadable.skipped
    assert doctor.check_accessibility(M1_MAX, tmp_path / "nowhere.app", db).skipped
