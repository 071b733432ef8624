"""environment.yml (the Mac's conda env) and pyproject.toml name the same packages."""
import re
import tomllib

import yaml

from labkit.config import REPO_ROOT


def _names(specs):
    return {re.split(r"[<>=!~\[ ;]", s, maxsplit=1)[0].strip().lower().replace("_", "-") for s in specs}


def test_environment_and_pyproject_agree():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(project["dependencies"]) == sorted(pip_section)
    assert _names(project["dependencies"]) == _names(pip_section)
    assert "python=3.11" in env["dependencies"]


def test_exactly_one_phonemizer_and_no_torch():
    deps = _names(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "phonemizer" in deps and "phonemizer-fork" not in deps
    assert "torch" not in deps and not any("misaki[" in d for d in deps)


def test_only_one_phonemizer_installed():
    import importlib.metadata as md

    installed = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "phonemizer" in installed
    assert "phonemizer-fork" not in installed


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
