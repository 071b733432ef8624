"""``labkit doctor``: is this machine ready, and what will the lab use here?

Platform and OS version against the onnxruntime wheels' minimum, an arm64 interpreter not
translated by Rosetta, Python, a compiler where a dependency builds from source
(:mod:`labkit.host.preflight`), ONNX Runtime's version and providers, the thread count
sessions use and why (:mod:`labkit.host.machine`), the audio player ``labkit say --server``
uses, the model and voices, whether the clone sits in a folder macOS keeps from the login
agent (:mod:`labkit.host.privacy`), whether the port is free or the endpoint's
(:mod:`labkit.host.ports`), the login agent's state and last exit status
(:mod:`labkit.host.launchd`), the Accessibility permission the Raycast script needs (where
macOS lets it be read), and whether an endpoint answers. Each check is one line; a failed
requirement is one sentence (any makes ``labkit doctor`` exit 1), and so is a warning.
Checks that only mean something on a Mac say ``skipped`` elsewhere.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from labkit.config import REPO_ROOT, ConfigError, LabConfig
from labkit.engine import assets
from labkit.host import launchd, machine, ports, preflight, privacy
from labkit.host.preflight import Check
from labkit.measure.client import player_choice

COREML = "CoreMLExecutionProvider"


def check_onnxruntime(f: machine.Facts) -> Check:
    want = preflight.pinned("onnxruntime")
    try:
        import onnxruntime as ort  # third-party and heavy; a broken install is reported, not raised
    except ImportError as exc:
        return Check("onnxruntime", False, f"not importable ({exc})",
                     f"onnxruntime cannot be imported ({exc}): run make setup.")
    providers = list(ort.get_available_providers())
    found = f"{ort.__version__}, providers: {', '.join(providers)}"
    data = {"version": ort.__version__, "pinned": want, "providers": providers}
    if want and ort.__version__ != want:
        return Check("onnxruntime", False, found,
                     f"onnxruntime {ort.__version__} is installed but the lab pins {want}: "
                     "run make setup (or pip install -e .) to install the pinned version.",
                     data=data)
    if f.system == "Darwin" and COREML not in providers:
        found += f" (no {COREML}: stage 04 will record its CoreML sweep as skipped)"
    return Check("onnxruntime", True, found, data=data)


def check_threads(cfg: LabConfig, f: machine.Facts) -> Check:
    try:
        plan = machine.thread_plan(cfg.session.intra_op_threads, f)
    except ConfigError as exc:
        return Check("threads", False, str(cfg.session.intra_op_threads), f"{exc}.")
    return Check("threads", True, f"{plan.threads} ({plan.why})", data=plan.to_dict())


def check_player(choice: dict[str, Any], f: machine.Facts) -> Check:
    """No player is a failed requirement on the Mac (sounddevice is a dependency there);
    elsewhere ``labkit say --server -o FILE`` still works, so it is information."""
    if choice["player"]:
        return Check("player", True, f"{choice['player']}: {choice['detail']}", data=choice)
    darwin = f.system == "Darwin"
    return Check("player", False, choice["detail"],
                 "Nothing can play audio: sounddevice finds no output device or is not "
                 "installed (make setup installs it on macOS)." if darwin else None,
                 required=darwin, data=choice)


def check_assets(cfg: LabConfig) -> Check:
    """The configured variant's model and the voices are required; other variants are listed."""
    rows = assets.describe(cfg)
    model = str(assets.model_path(cfg, cfg.variant))
    voices = str(assets.voices_path(cfg))
    missing = [r for r in rows if not r["present"] and r["path"] in (model, voices)]
    present = [r["what"] for r in rows if r["present"]]
    found = f"{assets.assets_dir(cfg)}: {', '.join(present) or 'nothing provisioned'}"
    for path, what in ((model, f"model:{cfg.variant}"), (voices, "voices")):
        if path not in {r["path"] for r in rows}:  # an explicit path or a stage's variant
            ok = Path(path).exists()
            rows.append({"what": what, "path": path, "present": ok})
            if not ok:
                missing.append(rows[-1])
    data = {"rows": [{k: r[k] for k in ("what", "path", "present")} for r in rows]}
    if missing:
        names = ", ".join(f"{r['what']} ({r['path']})" for r in missing)
        return Check("assets", False, found, f"Missing {names}: run make assets "
                     "(labkit assets --provision).", data=data)
    return Check("assets", True, found, data=data)


def check_clone(f: machine.Facts, root: Path = REPO_ROOT, home: Path | None = None) -> Check:
    """A warning, not a requirement: the lab runs by hand from ~/Documents; the login
    agent cannot (launchd-started processes are refused there)."""
    if f.system != "Darwin":
        return Check.skip("clone", "not macOS (no privacy-protected folders)")
    where = privacy.protected_folder(root, home)
    if where:
        return Check("clone", False, f"{root} (in {where})",
                     f"The clone is in {where}, which macOS does not let the login service "
                     "read (Operation not permitted): move it (to ~/src/kokoro-lab, say) and "
                     "run rm -rf .venv && make setup there.", required=False)
    return Check("clone", True, f"{root} (outside ~/Desktop, ~/Documents, ~/Downloads)")


def check_port(cfg: LabConfig, timeout: float = 1.0) -> Check:
    """Free, or held by the Kokoro endpoint; anything else keeps labkit serve from starting."""
    host, port = cfg.serve.host, cfg.serve.port
    try:
        taken = ports.holder(host, port, timeout)
    except ports.PortUnusable as exc:
        return Check("port", False, str(exc), f"labkit serve {exc}: set serve.host and "
                     "serve.port to an address of this machine (-s serve.port=N).")
    if taken is None:
        return Check("port", True, f"{host}:{port} is free", data={"free": True})
    data = {"free": False, "holder": taken.to_dict()}
    if taken.endpoint:
        return Check("port", True, f"{host}:{port} is held by {taken.describe()}", data=data)
    return Check("port", False, f"{host}:{port} is held by {taken.describe()}",
                 f"Port {port} is held by {taken.describe()}, not the Kokoro endpoint: stop it, "
                 f"or serve on another port (-s serve.port=N, and KOKORO_URL in raycast.env).",
                 data=data)


def check_service(f: machine.Facts, home: Path | None = None, run=None) -> Check:
    """The login agent: not installed, running, or stopped with its last exit status."""
    if f.system != "Darwin":
        return Check.skip("service", "not macOS (the login service is a launchd agent)")
    try:
        st = launchd.status(home, run, system=f.system)
    except OSError as exc:  # no launchctl on the PATH: not a normal macOS
        return Check("service", False, f"launchctl could not be run ({exc})",
                     "launchctl could not be run, so the login service cannot be checked: "
                     "run labkit doctor from Terminal with /bin in PATH.", required=False)
    data = {k: st[k] for k in ("installed", "loaded", "state", "pid", "runs", "last_exit",
                               "last_exit_text")}
    last = f"last exit code {st['last_exit_text']}" if st["last_exit_text"] else "never exited"
    if not st["installed"] and not st["loaded"]:
        return Check("service", True, "not installed (labkit service install starts the "
                     "endpoint at login)", required=False, data=data)
    if not st["loaded"]:
        return Check("service", False, f"installed ({st['plist']}) but not loaded",
                     "The login service is installed but launchd has not loaded it: run "
                     "labkit service install.", required=False, data=data)
    if st["pid"]:
        return Check("service", True, f"{st['state']}, pid {st['pid']}, {last}",
                     required=False, data=data)
    if st["last_exit"]:
        return Check("service", False, f"{st['state']}, {last} after {st['runs']} run(s)",
                     f"The login service is not running and last exited with status "
                     f"{st['last_exit']}: labkit service status shows its log's last lines; fix "
                     "what they say, then run labkit service install.", required=False, data=data)
    return Check("service", True, f"{st['state']}, {last}", required=False, data=data)


def check_accessibility(f: machine.Facts, app: Path = privacy.RAYCAST_APP,
                        db: Path = privacy.TCC_DB) -> Check:
    """Raycast's Accessibility permission (the script presses Cmd-C), where it can be read."""
    if f.system != "Darwin":
        return Check.skip("raycast", "not macOS")
    if not app.exists():
        return Check.skip("raycast", f"Raycast is not installed ({app})")
    granted = privacy.accessibility_granted(privacy.RAYCAST_BUNDLE, db)
    if granted is None:
        return Check.skip("raycast", "macOS lets only apps with Full Disk Access read the "
                          "permission database; the Raycast script says when it is refused")
    if not granted:
        return Check("raycast", False, "Raycast has no Accessibility permission",
                     "Raycast needs the Accessibility permission to copy the selection: System "
                     "Settings > Privacy & Security > Accessibility, turn on Raycast.",
                     required=False)
    return Check("raycast", True, "Raycast has the Accessibility permission", required=False)


def check_endpoint(cfg: LabConfig, timeout: float = 1.0) -> Check:
    """Information only: whether ``GET /health`` answers on the configured host and port."""
    url = ports.url(cfg.serve.host, cfg.serve.port)
    try:
        resp = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.HTTPError:
        return Check("endpoint", False, f"not running at {url} (labkit serve)", required=False,
                     data={"url": url, "running": False})
    try:
        body = resp.json()
    except ValueError:
        body = {}
    status = body.get("status", f"HTTP {resp.status_code}")
    found = f"running at {url}: {status}"
    if body.get("variant"):
        found += f", variant {body['variant']}"
    return Check("endpoint", resp.status_code == 200, found, required=False,
                 data={"url": url, "running": True, "http_status": resp.status_code,
                       "health": body})


def report(cfg: LabConfig, f: machine.Facts | None = None, endpoint_timeout: float = 1.0) -> dict:
    """Everything ``labkit doctor`` prints, as a JSON-ready dict."""
    f = f or machine.current()
    results = [*preflight.checks(f), check_onnxruntime(f), check_threads(cfg, f),
               check_player(player_choice(), f), check_assets(cfg), check_clone(f),
               check_port(cfg, endpoint_timeout), check_service(f), check_accessibility(f),
               check_endpoint(cfg, endpoint_timeout)]
    failed = preflight.problems(results)
    warnings = [c.problem for c in results if not c.required and not c.ok and c.problem]
    threads = next(c.data for c in results if c.name == "threads")
    return {"ok": not failed, "platform": {**f.to_dict(), "cores": f.cores_phrase()},
            "threads": threads,
            "checks": [c.to_dict() for c in results], "problems": failed, "warnings": warnings}


def format_report(rep: dict) -> str:
    p = rep["platform"]
    lines = [f"platform    {p['system']} {p['machine']} {p['os_version']}, {p['cores']}"]
    for c in rep["checks"]:
        lines.append(f"{c['name']:<11} {c['state']:<7} {c['found']}")
    if rep["problems"]:
        lines.append("")
        lines.extend(rep["problems"])
    if rep["warnings"]:
        lines.append("")
        lines.extend(f"warning: {w}" for w in rep["warnings"])
    if not rep["problems"]:
        lines.append("\nready.")
    return "\n".join(lines)


def main(cfg: LabConfig, as_json: bool = False) -> int:
    rep = report(cfg)
    print(json.dumps(rep, indent=2) if as_json else format_report(rep))
    if rep["problems"] and as_json:
        for sentence in rep["problems"]:
            print(sentence, file=sys.stderr)
    return 1 if rep["problems"] else 0
