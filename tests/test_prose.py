"""Prose that cannot drift: every dotted ``labkit.x.y`` / ``serve.x`` name written in the
notebooks (markdown and code), in labkit/ and serve/ (docstrings, comments, code), in
README.md and docs/*.md names a module or attribute that exists; and every package says
in its docstring what its layer holds."""
from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path

import pytest

from labkit.config import ServeConfig

ROOT = Path(__file__).resolve().parent.parent
#: a dotted name starting at labkit or serve (not inside a path, a longer name or a URL)
DOTTED = re.compile(r"(?<![\w./-])((?:labkit|serve)(?:\.[A-Za-z_]\w*)+)")
#: ``serve.<setting>`` is a LabConfig key (``-s serve.port=8881``), not the serve package
SERVE_SETTINGS = {f"serve.{f.name}" for f in dataclasses.fields(ServeConfig)}
#: dotted words that name no Python object: the login agent's log files, and the
#: placeholder of ``-s serve.key=value``
NOT_NAMES = {"serve.log", "serve.err.log", "serve.key"}
#: (file, name) drift found in files another restructuring owns, fixed when it is merged
#: (issue #29): remove an entry once its file names what exists
ELSEWHERE: set[tuple[str, str]] = set()


def texts() -> dict[Path, list[str]]:
    out = {p: p.read_text().splitlines()
           for pkg in ("labkit", "serve") for p in sorted((ROOT / pkg).rglob("*.py"))}
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out[p] = p.read_text().splitlines()
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out[p] = [line for c in json.loads(p.read_text())["cells"]
                  for line in "".join(c["source"]).splitlines()]
    return out


def exists(name: str) -> bool:
    """Does the dotted name resolve: its longest importable prefix, then attributes (a
    dataclass's fields count as its attributes)?"""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            continue
    else:
        return False
    for attr in parts[i:]:
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
        elif dataclasses.is_dataclass(obj) and attr in {f.name for f in dataclasses.fields(obj)}:
            return True
        else:
            return False
    return True


def drift(sources: dict[Path, list[str]]) -> list[str]:
    """``path:line: name`` for each dotted name that names nothing."""
    seen: dict[str, bool] = {}
    out = []
    for path, lines in sources.items():
        for n, line in enumerate(lines, 1):
            for m in DOTTED.finditer(line):
                name = m.group(1)
                if name in SERVE_SETTINGS or name in NOT_NAMES:
                    continue
                if name not in seen:
                    seen[name] = exists(name)
                if not seen[name]:
                    out.append(f"{path.relative_to(ROOT)}:{n}: {name}")
    return out


def _file_and_name(found: str) -> tuple[str, str]:
    path, _, name = found.split(":")
    return path, name.strip()


def test_written_names_exist():
    assert [f for f in drift(texts()) if _file_and_name(f) not in ELSEWHERE] == []


def test_drift_left_elsewhere_is_still_there():
    assert ELSEWHERE <= {_file_and_name(f) for f in drift(texts())}


def test_drift_is_found():
    found = drift({ROOT / "x.md": ["see `labkit.engine.ort.new_session` and labkit.config.LabConfig.voice",
                                   "and serve.port, serve.server, labkit/lab/stage.py, labkit.engine.sessions."]})
    assert found == ["x.md:1: labkit.engine.ort.new_session", "x.md:2: serve.server"]


#: the layers' packages: labkit, its subpackages and serve
PACKAGES = [ROOT / "labkit", *sorted(p.parent for p in (ROOT / "labkit").glob("*/__init__.py")),
            ROOT / "serve"]


@pytest.mark.parametrize("package", PACKAGES, ids=[str(p.relative_to(ROOT)) for p in PACKAGES])
def test_each_package_says_what_its_layer_holds(package):
    name = ".".join(package.relative_to(ROOT).parts)
    doc = importlib.import_module(name).__doc__ or ""
    assert "layer" in " ".join(doc.splitlines()[:3]) and "import" in " ".join(doc.splitlines()[:3])
