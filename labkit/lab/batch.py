"""Papermill batches: ``experiments/*.yaml`` -> executed notebooks -> the journal.

A batch file::

    name: default
    config: {}                 # LabConfig settings every stage starts from (optional)
    stages:
      - name: 00_baseline
        notebook: notebooks/00_baseline.ipynb
        parameters: {repeats: 5}

Each stage is executed into ``artifacts/<run_id>/<stage>/<stage>.ipynb``. A stage that
fails is recorded as failed (its error and the executed notebook kept) and the batch goes
on. ``only`` runs some stages (into the newest run made by the same batch unless ``resume``
names one);
``resume`` continues a run, skipping stages whose record is already ``ok``; a stage that
is run again there continues from its last finished candidate where it records them as
they finish (labkit.lab.checkpoint). Progress: one task per stage, and the notebook's own
tasks drawn under it (labkit.progress).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labkit.config import REPO_ROOT, ConfigError, LabConfig
from labkit import files, progress
from labkit.engine.registries import check_config
from labkit.lab.checkpoint import RESUME_ENV
from labkit.lab.journal import PLAN_NAME, WALL_TIMES_NAME, batch_name, read_wall_times, write_journal
from labkit.lab.plan import batch_sha, plan_name
from labkit.lab.stage import (INTERACTIVE_ENV, RECORD_NAME, new_run_id, read_record, stage_dir,
                              write_record)

log = logging.getLogger(__name__)
LATEST_NAME = "LATEST"


@dataclass
class StageSpec:
    name: str
    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    name: str
    stages: list[StageSpec]
    config: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "Batch":
        path = Path(path)
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        data = yaml.safe_load(path.read_text()) or {}
        stages = []
        for i, s in enumerate(data.get("stages") or []):
            if "notebook" not in s:
                raise ConfigError(f"{path}: stage #{i + 1} has no notebook")
            name = s.get("name") or Path(s["notebook"]).stem
            stages.append(StageSpec(name, s["notebook"], dict(s.get("parameters") or {})))
        if not stages:
            raise ConfigError(f"{path}: no stages")
        names = [s.name for s in stages]
        if len(names) != len(set(names)):
            raise ConfigError(f"{path}: stage names repeat: {names}")
        return cls(data.get("name") or path.stem, stages, dict(data.get("config") or {}), str(path))


def latest_run(cfg: LabConfig) -> str | None:
    marker = cfg.resolve(cfg.artifacts_dir) / LATEST_NAME
    return marker.read_text().strip() if marker.exists() else None


def latest_run_of(cfg: LabConfig, name: str) -> str | None:
    """The newest run made by the batch called ``name``."""
    runs = sorted(p.name for p in cfg.resolve(cfg.artifacts_dir).glob("run-*") if p.is_dir())
    return next((r for r in reversed(runs) if batch_name(cfg, r) == name), None)


def fresh_run_id(cfg: LabConfig) -> str:
    """A new run id whose folder does not exist yet (two batches started within the same
    second get ``run-...-2``, which sorts after the first)."""
    base = new_run_id()
    root = cfg.resolve(cfg.artifacts_dir)
    run_id, n = base, 1
    while (root / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def record_wall_time(cfg: LabConfig, run_id: str, stage: str, seconds: float) -> None:
    """The stage's whole wall time as the batch saw it (kernel start, imports and the
    notebook's display cells included) into the run's ``wall_times.json``."""
    path = cfg.resolve(cfg.artifacts_dir) / run_id / WALL_TIMES_NAME
    times = read_wall_times(path.parent)
    times[stage] = round(seconds, 1)
    files.write_json(path, times, indent=2)


def _parse_value(raw: str) -> Any:
    return yaml.safe_load(raw)


def run_batch(file: str | Path, only: list[str] | None = None, resume: str | None = None,
              cfg: LabConfig | None = None, parameters: dict[str, str] | None = None,
              execute=None) -> str:
    """Run a batch; returns the run id. ``parameters`` holds ``STAGE.NAME=VALUE`` overrides
    (e.g. ``{"03_quantization.fail": "true"}``). ``execute`` replaces papermill (tests)."""
    batch = Batch.load(file)
    base = cfg or LabConfig.load()
    cfg = base.with_overrides(_flatten(batch.config)) if batch.config else base
    check_config(cfg)
    known = {s.name for s in batch.stages}
    for name in only or []:
        if name not in known:
            raise ConfigError(f"--only {name}: no such stage in {batch.path}; stages: {', '.join(sorted(known))}")
    if resume and (cfg.resolve(cfg.artifacts_dir) / resume).is_dir():
        made_by = batch_name(cfg, resume)
        if made_by not in (None, batch.name):
            raise ConfigError(f"--resume {resume}: that run was made by batch {made_by!r}, not "
                              f"{batch.name!r} ({batch.path}); resume it with its own batch file")
    # --only adds to the latest run made by this batch: a smoke stage must never overwrite a
    # stage of the full journal's run
    run_id = resume or (latest_run_of(cfg, batch.name) if only else None) or fresh_run_id(cfg)
    run_dir = cfg.resolve(cfg.artifacts_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    config_path.write_text(cfg.to_yaml())
    _take_plan(cfg, batch, run_dir)
    (run_dir / "batch.yaml").write_text(Path(batch.path).read_text())
    extra = _stage_params(parameters or {})
    execute = execute or _papermill

    todo = [spec for spec in batch.stages if not only or spec.name in only]
    before = _previous_wall_times(cfg, batch.name, run_id)
    with progress.task("stages", total=len(todo)) as bar:
        for i, spec in enumerate(todo):
            out_dir = stage_dir(cfg, run_id, spec.name)
            record = out_dir / RECORD_NAME
            if resume and record.exists() and read_record(record).get("status") == "ok":
                progress.say(f"[{spec.name}] already ok in {run_id}; skipped (resume)")
                bar.advance(f"{spec.name}: already ok")
                continue
            out_dir.mkdir(parents=True, exist_ok=True)
            record.unlink(missing_ok=True)  # a stale record must not pass for this run's
            params = {**spec.parameters, **extra.get(spec.name, {}),
                      "run_id": run_id, "config_path": str(config_path)}
            output = out_dir / f"{spec.name}.ipynb"
            progress.say(f"[{spec.name}] running {spec.notebook} -> {output}"
                         + _estimate_line(before, [s.name for s in todo[i:]]))
            t0 = time.perf_counter()
            error, tb = None, None
            try:
                with _kernel_env(run_dir, spec.name, resume=bool(resume)):
                    execute(REPO_ROOT / spec.notebook, output, params)
            except Exception as exc:  # noqa: BLE001 - record it and go on with the batch
                error, tb = _describe_failure(exc)
            except BaseException as exc:  # Ctrl-C, SIGTERM: record why, then stop
                if not record.exists():
                    write_record(cfg, run_id, spec.name,
                                 f"failed: stopped ({type(exc).__name__} {exc})".rstrip(),
                                 params=params, notes=["the batch was stopped during this stage"])
                raise
            seconds = time.perf_counter() - t0
            record_wall_time(cfg, run_id, spec.name, seconds)
            if not record.exists() or (error and read_record(record).get("status") == "ok"):
                # the notebook died before its Stage wrote its record: leave a failed one
                write_record(cfg, run_id, spec.name, f"failed: {error or 'no record written'}",
                             metrics={"traceback": tb} if tb else {}, params=params,
                             notes=[f"the notebook failed; see {output.name}"])
            status = read_record(record)["status"]
            progress.say(f"[{spec.name}] {status} ({seconds:.0f} s)")
            bar.advance(f"{spec.name}: {status.split(':')[0]}")
            # the journal and best.json after every stage: a later stage (the endpoint bench)
            # measures what the earlier ones selected
            (cfg.resolve(cfg.artifacts_dir) / LATEST_NAME).write_text(run_id + "\n")
            write_journal(cfg, run_id)

    (cfg.resolve(cfg.artifacts_dir) / LATEST_NAME).write_text(run_id + "\n")
    paths = write_journal(cfg, run_id)
    for p in paths.values():
        print(f"wrote {p}")
    return run_id


def _take_plan(cfg: LabConfig, batch: Batch, run_dir: Path) -> None:
    """The plan ``labkit journal --plan`` made from this very batch file (make journal
    makes one first), kept beside the run's records: the journal sets it against the
    stages' wall times."""
    made = cfg.resolve(cfg.artifacts_dir) / plan_name(batch.name)
    try:
        data = json.loads(made.read_text())
    except (OSError, ValueError):
        return
    if data.get("batch_sha") == batch_sha(batch.path):
        files.write_json(run_dir / PLAN_NAME, data, indent=2)


def failed_stages(file: str | Path, run_id: str, cfg: LabConfig | None = None,
                  only: list[str] | None = None) -> list[str]:
    """The stages of the batch (or of ``only``) whose record in ``run_id`` is failed or
    missing; ``skipped: ...`` is not a failure."""
    batch = Batch.load(file)
    base = cfg or LabConfig.load()
    cfg = base.with_overrides(_flatten(batch.config)) if batch.config else base
    check_config(cfg)
    out = []
    for spec in batch.stages:
        if only and spec.name not in only:
            continue
        path = stage_dir(cfg, run_id, spec.name) / RECORD_NAME
        status = read_record(path).get("status", "") if path.exists() else "missing"
        if status == "missing" or status.startswith("failed"):
            out.append(spec.name)
    return out


def _previous_wall_times(cfg: LabConfig, name: str, run_id: str) -> dict[str, float]:
    """Stage -> seconds in the newest other run of the same batch (for estimates)."""
    root = cfg.resolve(cfg.artifacts_dir)
    runs = sorted((p.name for p in root.glob("run-*") if p.is_dir() and p.name != run_id),
                  reverse=True)
    for r in runs:
        if batch_name(cfg, r) == name:
            times = read_wall_times(root / r)
            if times:
                return times
    return {}


def _estimate_line(before: dict[str, float], rest: list[str]) -> str:
    """" (took 8.1 min last time; ~25 min left in the batch)" from the previous run."""
    if not before or rest[0] not in before:
        return ""
    known = [before[s] for s in rest if s in before]
    left = f"; ~{progress.fmt_seconds(sum(known))} left in the batch" + (
        "" if len(known) == len(rest) else f" (+{len(rest) - len(known)} stages not timed before)")
    return f" (took {progress.fmt_seconds(before[rest[0]])} last time{left})"


@contextmanager
def _kernel_env(run_dir: Path, stage: str, resume: bool):
    """What the notebook kernel is told through its environment: where to report its
    progress (progress.ENV; a thread draws it here, under the stage's own line, and the
    file is removed when the stage ends), whether this is a resumed run (a stage's
    finished candidates are then read back: labkit.lab.checkpoint), and that no person is
    at the page (INTERACTIVE_ENV=0: "Try it" widgets draw nothing, labkit.lab.page)."""
    path = run_dir / f".progress-{stage}.jsonl"
    path.unlink(missing_ok=True)
    stop = threading.Event()
    target = progress.sink()
    thread = threading.Thread(target=progress.follow, args=(path, target, stop),
                              kwargs={"depth_offset": 1}, daemon=True)
    env = {progress.ENV: str(path), RESUME_ENV: "1" if resume else "0", INTERACTIVE_ENV: "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    thread.start()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop.set()
        thread.join(timeout=5)
        path.unlink(missing_ok=True)


def _describe_failure(exc: Exception) -> tuple[str, str | None]:
    """One line for the status, and the cell's traceback where papermill has it."""
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        lines = str(exc).strip().splitlines()
        evalue = lines[-1] if lines else ""
    tb = getattr(exc, "traceback", None)
    if isinstance(tb, list):
        import re

        tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(tb))[-4000:]
    return f"{ename}: {evalue}", tb if isinstance(tb, str) else None


def _papermill(notebook: Path, output: Path, params: dict) -> None:
    import papermill as pm

    pm.execute_notebook(str(notebook), str(output), parameters=params, kernel_name="python3",
                        cwd=str(REPO_ROOT), progress_bar=False, log_output=False)


def _stage_params(pairs: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, raw in pairs.items():
        if "." not in key:
            raise ConfigError(f"parameter {key!r}: expected STAGE.NAME=VALUE")
        stage, name = key.split(".", 1)
        out.setdefault(stage, {})[name] = _parse_value(raw) if isinstance(raw, str) else raw
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in ("provider_options", "second_session"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
