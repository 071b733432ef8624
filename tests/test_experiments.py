"""The batch files name real notebooks and parameters those notebooks declare."""
import json

import pytest

from labkit.lab.batch import Batch, _flatten
from labkit.config import REPO_ROOT, LabConfig

FILES = sorted((REPO_ROOT / "experiments").glob("*.yaml"))


def _declared(notebook):
    import ast

    nb = json.loads((REPO_ROOT / notebook).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_batch_file_is_consistent(path):
    batch = Batch.load(path)
    LabConfig().with_overrides(_flatten(batch.config)).validate()  # its config section is valid
    for stage in batch.stages:
        declared = _declared(stage.notebook)
        assert {"run_id", "config_path", "overrides", "fail"} <= declared, stage.notebook
        unknown = set(stage.parameters) - declared
        assert not unknown, f"{path.name}:{stage.name} sets undeclared parameters {unknown}"


def test_default_batch_runs_every_stage_notebook():
    names = {s.notebook for s in Batch.load(REPO_ROOT / "experiments/default.yaml").stages}
    assert names == {f"notebooks/{p.name}" for p in (REPO_ROOT / "notebooks").glob("*.ipynb")}


NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_papermill_reads_every_parameter(notebook):
    """papermill's own inspection (``papermill --help-notebook``) lists each parameter the
    cell assigns: a comment it cannot parse hides that parameter from the user."""
    from papermill.translators import PythonTranslator

    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    seen = {p.name for p in PythonTranslator.inspect({"source": "".join(cell["source"])})}
    assert seen == _declared(notebook.relative_to(REPO_ROOT))
