"""Every stage module follows the stage protocol (labkit.lab.protocol), and its notebook and
the batch files call it by the names it has."""
from __future__ import annotations

import ast
import importlib
import json
import re
import types
from pathlib import Path

import pytest
import yaml

from labkit.lab import protocol
from labkit.lab.protocol import StageModule

ROOT = Path(__file__).resolve().parent.parent
STAGES = sorted(p.stem for p in (ROOT / "labkit" / "lab").glob("s*.py") if re.match(r"s\d\d_", p.name))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BATCHES = sorted((ROOT / "experiments").glob("*.yaml"))


def _cells(path: Path, kind: str = "code") -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def notebook_of(module: str) -> Path:
    """The one notebook that imports the stage module as ``stage``."""
    line = f"from labkit.lab import {module} as stage"
    found = [nb for nb in NOTEBOOKS if any(line in "".join(c["source"]) for c in _cells(nb))]
    assert len(found) == 1, f"{module}: imported as `stage` by {found}"
    return found[0]


def passed_params(nb: Path) -> list[str]:
    """The keywords of the notebook's ``params = dict(...)``: what it hands to run()."""
    for c in _cells(nb):
        for node in ast.walk(ast.parse("".join(c["source"]))):
            if (isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["params"]
                    and isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "dict"):
                return [k.arg for k in node.value.keywords]
    raise AssertionError(f"{nb.name}: no `params = dict(...)`")


def parameter_names(nb: Path) -> set[str]:
    """The names the notebook's papermill ``parameters`` cell sets."""
    cell = next(c for c in _cells(nb) if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name)}


@pytest.mark.parametrize("name", STAGES)
def test_stage_module_follows_the_protocol(name):
    module = importlib.import_module(f"labkit.lab.{name}")
    assert protocol.problems(module) == []
    assert isinstance(module, StageModule)


@pytest.mark.parametrize("name", STAGES)
def test_stage_name_is_its_notebook_and_batch_entry(name):
    module = importlib.import_module(f"labkit.lab.{name}")
    nb = notebook_of(name)
    assert module.NAME == nb.stem
    for batch in BATCHES:
        for s in yaml.safe_load(batch.read_text())["stages"]:
            if Path(s["notebook"]).name == nb.name:
                assert s.get("name", nb.stem) == module.NAME, f"{batch.name}: {s}"


@pytest.mark.parametrize("name", STAGES)
def test_run_takes_what_the_notebook_passes(name):
    module = importlib.import_module(f"labkit.lab.{name}")
    nb = notebook_of(name)
    assert protocol.accepts(module, passed_params(nb)) == []


@pytest.mark.parametrize("batch", BATCHES, ids=[b.stem for b in BATCHES])
def test_batch_parameters_are_notebook_parameters(batch):
    """papermill sets a parameter the notebook does not have without a word: a typo in a
    batch file would change nothing."""
    wrong = []
    for s in yaml.safe_load(batch.read_text())["stages"]:
        names = parameter_names(ROOT / s["notebook"])
        wrong += [f"{s['name']}.{k}" for k in s.get("parameters") or {} if k not in names]
    assert wrong == []


def test_the_protocol_check_names_what_is_missing():
    bare = types.ModuleType("s99_bare")
    assert protocol.problems(bare) == ["NAME is not a string", "no run()", "no record()"]
    bent = types.ModuleType("s99_bent")
    bent.NAME = "99_bent"
    bent.run = lambda st, cfg, *, texts: None
    bent.record = lambda st, result: None
    assert protocol.problems(bent) == ["run() takes st, cfg positionally, not cfg, st"]
    assert protocol.accepts(bent, ["texts", "rounds"]) == ["rounds"]
