"""The batch files name real notebooks and parameters those notebooks declare."""
import json

import pytest

from labkit.batch import Batch, _flatten
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
