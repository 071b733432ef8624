"""The stage contract: every stage writes ``artifacts/<run_id>/<stage>/metrics.json``.

A record holds the stage name, run id, status (``ok``, ``skipped: <reason>``,
``failed: <error>``), the LabConfig, the stage's own parameters, the environment
fingerprint, and the stage's metrics (timings with their spread, quality figures).
Rerunning a stage with the same run id rewrites the same folder; a stage that raises
leaves a ``failed`` record, never a missing one.

In code, as a context manager::

    with Stage("02_ort_conversion", cfg, run_id, params) as st:
        st.metrics["warm"] = ...
        st.skip("CoreMLExecutionProvider not available on Linux")   # optional

In a notebook whose stage spans cells: ``st = Stage(...).start()`` in the first cell and
``st.finish()`` in the last. If a cell in between raises, papermill stops and the batch
runner (labkit.lab.batch) writes the ``failed`` record with the cell's error and traceback.

What a stage module holds for its notebook (``NAME``, ``run``, ``record``):
labkit.lab.protocol.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from labkit import files
from labkit.host import machine
from labkit.tables import cell
from labkit.config import REPO_ROOT, ConfigError, LabConfig
from labkit.engine import assets
from labkit.engine.registries import check_config

RECORD_NAME = "metrics.json"
#: a notebook kernel's environment: "0" -- no person at this page (labkit's batch runner sets
#: it for every kernel it starts), "1" -- draw widgets (labkit.lab.page.interactive)
INTERACTIVE_ENV = "LABKIT_INTERACTIVE"
_PACKAGES = ("onnxruntime", "onnx", "numpy", "kokoro-onnx", "misaki", "spacy", "phonemizer",
             "espeakng-loader", "onnxconverter-common", "papermill", "av", "fastapi")


def new_run_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("run-%Y%m%d-%H%M%S")


def stage_dir(cfg: LabConfig, run_id: str, stage: str) -> Path:
    return cfg.resolve(cfg.artifacts_dir) / run_id / stage


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    if shutil.which("git") is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or "uncommitted"
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fingerprint(cfg: LabConfig | None = None) -> dict[str, Any]:
    """Machine, OS, CPU, ONNX Runtime and its providers, package versions, git commit,
    asset hashes: what a number depends on besides the config."""
    import onnxruntime as ort

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cores": machine.current().cores_phrase(),
        "isa": None if machine.current().isa is None else list(machine.current().isa),
        "threads": machine.thread_plan((cfg or LabConfig()).session.intra_op_threads).to_dict(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "packages": versions,
        "git_commit": git_commit(),
        "asset_sha256": assets.hashes(cfg or LabConfig()),
    }


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays, Paths, dataclasses with to_dict, NaN -> None."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_record(cfg: LabConfig, run_id: str, stage: str, status: str,
                 metrics: dict | None = None, params: dict | None = None,
                 notes: list[str] | None = None, started: str | None = None) -> Path:
    out = stage_dir(cfg, run_id, stage)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "stage": stage,
        "run_id": run_id,
        "status": status,
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "params": params or {},
        "environment": fingerprint(cfg),
        "metrics": metrics or {},
        "notes": notes or [],
    }
    return files.write_json(out / RECORD_NAME, to_jsonable(record), indent=2, allow_nan=False)


def read_record(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


class Stage:
    """Context manager around one stage run; always leaves a record."""

    def __init__(self, name: str, cfg: LabConfig, run_id: str | None = None,
                 params: dict | None = None):
        self.name = name
        self.cfg = cfg
        self.run_id = run_id or new_run_id()
        self.params = params or {}
        self.metrics: dict[str, Any] = {}
        self.notes: list[str] = []
        self.status = "ok"
        self.dir = stage_dir(cfg, self.run_id, name)
        self.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.record_path: Path | None = None

    def __enter__(self) -> "Stage":
        """Start the stage: its folder made, its configuration checked against the engine's
        registries (a config that names an unknown rewrite or plugin EP is a ``failed``
        record, written here: ``__exit__`` does not run when ``__enter__`` raises)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            check_config(self.cfg)
        except ConfigError as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def start(self) -> "Stage":
        return self.__enter__()

    def finish(self) -> Path:
        self.__exit__(None, None, None)
        return self.record_path

    def path(self, name: str) -> Path:
        """A file in this stage's artifact folder."""
        return self.dir / name

    def skip(self, reason: str) -> None:
        self.status = f"skipped: {reason}"

    def note(self, text: str) -> None:
        self.notes.append(text)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            self.status = f"failed: {type(exc).__name__}: {exc}"
            self.metrics.setdefault("traceback", "".join(
                traceback.format_exception(exc_type, exc, tb))[-4000:])
        self.record_path = write_record(self.cfg, self.run_id, self.name, self.status,
                                        self.metrics, self.params, self.notes, self.started)
        return False


def public(d: dict[str, Any]) -> dict[str, Any]:
    """A record without the keys that hold audio or run objects (``_``-prefixed)."""
    return {k: (public(v) if isinstance(v, dict) else v) for k, v in d.items() if not str(k).startswith("_")}


def figure_text(v: Any) -> str:
    """A headline figure as text: a value with its interval where it has one."""
    if isinstance(v, dict) and ("value" in v or "ratio" in v) and "ci95" in v:
        x = v.get("value", v.get("ratio"))
        lo, hi = v["ci95"]
        return f"{cell(x)} [{cell(lo)}, {cell(hi)}]"
    return cell(v)


def headline_md(headline: dict) -> str:
    """A stage's headline figures as a two-column Markdown table."""
    if not headline:
        return "(no headline figures)"
    rows = ["| figure | value |", "|---|---|"]
    rows += [f"| {k} | {figure_text(v)} |" for k, v in headline.items()]
    return "\n".join(rows)
