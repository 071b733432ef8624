"""``labkit doctor``: is this machine ready, and what will the lab use here?

Platform and OS version against the onnxruntime wheels' minimum, Python, a compiler where a
dependency builds from source (:mod:`labkit.host.preflight`), ONNX Runtime's version and providers,
the thread count sessions use and why (:mod:`labkit.host.machine`), the audio player ``labkit say
--server`` uses, the model and voices, and whether an endpoint answers on the configured port.
A failed requirement is one sentence; any makes ``labkit doctor`` exit 1.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from labkit.host import machine, preflight
from labkit.config import ConfigError, LabConfig
from labkit.engine import assets
from labkit.measure.client import player_choice
from labkit.host.preflight import Check

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


def endpoint_url(cfg: LabConfig) -> str:
    host = cfg.serve.host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: ask it on this machine
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.serve.port}"


def check_endpoint(cfg: LabConfig, timeout: float = 1.0) -> Check:
    """Information only: whether ``GET /health`` answers on the configured host and port."""
    url = endpoint_url(cfg)
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
               check_player(player_choice(), f), check_assets(cfg),
               check_endpoint(cfg, endpoint_timeout)]
    failed = preflight.problems(results)
    threads = next(c.data for c in results if c.name == "threads")
    return {"ok": not failed, "platform": {**f.to_dict(), "cores": f.cores_phrase()},
            "threads": threads,
            "checks": [c.to_dict() for c in results], "problems": failed}


def format_report(rep: dict) -> str:
    p = rep["platform"]
    lines = [f"platform    {p['system']} {p['machine']} {p['os_version']}, {p['cores']}"]
    for c in rep["checks"]:
        lines.append(f"{c['name']:<11} {c['state']:<7} {c['found']}")
    if rep["problems"]:
        lines.append("")
        lines.extend(rep["problems"])
    else:
        lines.append("\nready.")
    return "\n".join(lines)


def main(cfg: LabConfig, as_json: bool = False) -> int:
    rep = report(cfg)
    print(json.dumps(rep, indent=2) if as_json else format_report(rep))
    if rep["problems"] and as_json:
        for sentence in rep["problems"]:
            print(sentence, file=sys.stderr)
    return 1 if rep["problems"] else 0
