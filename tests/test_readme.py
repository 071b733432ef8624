"""The README's data-flow block: the path from ``POST /v1/audio/speech`` to the first PCM
bytes names real modules, at most eight of them on the main path, in the order a request
crosses them (serve, then the engine), each reachable from the one before it."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NAME = r"(?:labkit|serve)(?:\.\w+)+"


def flow_block(text: str) -> str:
    """The fenced block that starts at ``POST /v1/audio/speech``."""
    m = re.search(r"```\nPOST /v1/audio/speech\n(.*?)```", text, re.S)
    assert m, "README: no data-flow block starting with POST /v1/audio/speech"
    return m.group(1)


def main_path(block: str) -> list[str]:
    """The modules at the head of each ``─▶`` step (the main path)."""
    return re.findall(rf"^ ─▶ ({NAME})", block, re.M)


def side_calls(block: str) -> list[str]:
    """The modules in brackets (what a step calls on the side), functions dropped."""
    return [n for part in re.findall(r"\[([^\]]*)\]", block) for n in re.findall(NAME, part)]


def imported_by(module: str) -> set[str]:
    """The project modules ``module`` imports (relative imports resolved)."""
    path = Path(importlib.import_module(module).__file__)
    package = module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_the_path_is_short_and_real():
    block = flow_block(README.read_text())
    path = main_path(block)
    assert 4 <= len(path) <= 8, path
    assert path[0] == "serve.app" and len(set(path)) == len(path)
    for name in path + side_calls(block):
        module, _, attr = name.rpartition(".") if not _is_module(name) else (name, "", "")
        assert _is_module(module), f"README names {name}: no module {module}"
        if attr:
            assert hasattr(importlib.import_module(module), attr), f"README names {name}"
    serve_steps = [i for i, n in enumerate(path) if n.startswith("serve.")]
    assert serve_steps == list(range(len(serve_steps))), "serve's modules come first, then the engine's"


def test_each_step_is_reached_from_the_steps_before_it():
    """A step's module is imported by one of the steps before it, or (for the engine
    after the synthesizer is opened) by the engine step before it: no step out of nowhere."""
    path = main_path(flow_block(README.read_text()))
    serve_holder = {"serve.state"}  # holds the synthesizer the job is handed
    for i, name in enumerate(path[1:], 1):
        before = set(path[:i]) | (serve_holder if name.startswith("labkit.") else set())
        assert any(name in imported_by(b) for b in before), f"{name}: imported by none of {sorted(before)}"


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


def test_block_parsing():
    block = (" ─▶ serve.app  routes [serve.request]\n"
             " ─▶ labkit.engine.pipeline  opens [labkit.engine.voices.voicing, labkit.engine.text]\n")
    assert main_path(block) == ["serve.app", "labkit.engine.pipeline"]
    assert side_calls(block) == ["serve.request", "labkit.engine.voices.voicing", "labkit.engine.text"]
