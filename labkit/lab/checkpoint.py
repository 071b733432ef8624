"""A stage's finished candidates, written as each one finishes, so a stopped or killed
stage resumes from its last finished candidate (``labkit journal --resume RUN_ID``).

Usage (stage 04 does this for every configuration and candidate)::

    ck = Checkpoint(st.path(FINISHED_DIR))
    for point in points:
        row = ck.run({"point": asdict(point), "lengths": lengths}, lambda: measure(point))

Each finished candidate is one JSON file in the stage's ``finished/`` folder, written
atomically (labkit.files): a candidate that was cut short leaves no file, and a SIGKILL
cannot leave half of one. The key is the candidate's inputs (any JSON-able value): a
changed parameter is a new candidate. A candidate that failed is finished too (its
``failed: <reason>`` row is kept; resuming does not retry it).

The files are read back only when the batch resumes a run (it sets ``LABKIT_RESUME`` for
the notebook: labkit.lab.batch); otherwise the folder is emptied when the stage opens it,
so a rerun measures afresh. A result comes back as JSON would read it (tuples as lists,
numpy numbers as floats), whether it was measured now or read back, so a resumed stage's
record is the one an uninterrupted run writes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from labkit import files
from labkit.lab.stage import to_jsonable

RESUME_ENV = "LABKIT_RESUME"
FINISHED_DIR = "finished"


def resuming() -> bool:
    """Whether the batch is resuming a run (``LABKIT_RESUME=1``)."""
    return os.environ.get(RESUME_ENV) == "1"


class Checkpoint:
    """Finished candidates of one stage, one file each under ``folder``."""

    def __init__(self, folder: str | os.PathLike, resume: bool | None = None):
        self.folder = Path(folder)
        self.resume = resuming() if resume is None else resume
        if not self.resume:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        #: keys (as text) read back instead of measured, in order
        self.reused: list[str] = []

    @staticmethod
    def key_text(key: Any) -> str:
        return json.dumps(to_jsonable(key), sort_keys=True)

    def path(self, key: Any) -> Path:
        text = self.key_text(key)
        slug = re.sub(r"[^\w.-]+", "_", text)[:60].strip("_")
        return self.folder / f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"

    def get(self, key: Any) -> Any | None:
        """The recorded result for ``key``, or None."""
        try:
            data = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return data["result"] if data.get("key") == self.key_text(key) else None

    def put(self, key: Any, result: Any) -> Any:
        files.write_json(self.path(key), {"key": self.key_text(key), "result": to_jsonable(result)},
                         allow_nan=False)
        return self.get(key)

    def run(self, key: Any, measure: Callable[[], Any]) -> Any:
        """The recorded result for ``key`` when resuming, else ``measure()`` recorded."""
        if self.resume:
            done = self.get(key)
            if done is not None:
                self.reused.append(self.key_text(key))
                return done
        return self.put(key, measure())

    def finished(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json"))
