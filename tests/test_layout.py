"""The package's shape: layers that import downwards only, no circles, no project
imports hidden inside functions, and one of each instrument."""
from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("labkit", "serve")

#: layer of each module prefix; a module may import its own layer or lower ones
#: (measure and optimize are siblings: neither imports the other)
LAYERS = {"labkit.engine": 1, "labkit.measure": 2, "labkit.optimize": 2, "labkit.lab": 3,
          "labkit.cli": 4, "labkit.host": 4, "serve": 4,
          # the host's machine facts (thread count) are read by the engine: the bottom layer
          "labkit.host.machine": 0}
SIBLINGS = {("labkit.measure", "labkit.optimize"), ("labkit.optimize", "labkit.measure")}
#: serve/ ships the engine: it may import nothing of the lab
SERVE_MAY_IMPORT = ("labkit.engine", "labkit.kokoro", "labkit.config", "labkit.best_config", "labkit.files",
                    "labkit.host.machine", "labkit.procs", "serve")
#: the CLI may defer loading a subcommand's module (start-up time)
LAZY_ALLOWED = {"labkit.cli"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = modules()


def group(name: str) -> str:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return "labkit"  # the bottom layer: config, quality, timing, files, ...


def layer(name: str) -> int:
    return LAYERS.get(group(name), 0)


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    base = node.module or ""
    if node.level:
        pkg = module.split(".")
        if not MODULES[module].name == "__init__.py":
            pkg = pkg[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        targets.append(sub if sub in MODULES else base)
    return [t for t in targets if t in MODULES]


def imports(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(project modules imported at module level, (line, target) of those imported inside
    function bodies)."""
    tree = ast.parse(MODULES[module].read_text())
    top: set[str] = set()
    inner: list[tuple[int, str]] = []
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    in_func = {id(s) for f in funcs for s in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = _resolve(module, node)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name in MODULES]
        else:
            continue
        if id(node) in in_func:
            inner += [(node.lineno, t) for t in targets]
        else:
            top.update(t for t in targets if t != module)
    return top, inner


GRAPH = {m: imports(m)[0] for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_down():
    wrong = []
    for m, targets in GRAPH.items():
        for t in targets:
            if layer(t) > layer(m) or (group(m), group(t)) in SIBLINGS:
                wrong.append(f"{m} -> {t}")
    assert wrong == []


def test_serve_imports_only_the_engine_and_config():
    wrong = [f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith("serve")
             for t in targets if not t.startswith(SERVE_MAY_IMPORT)]
    assert wrong == []


def test_no_project_imports_inside_functions():
    hidden = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
              for m in MODULES if m not in LAZY_ALLOWED for line, t in imports(m)[1]]
    assert hidden == []


def test_labkit_has_its_layers():
    subpackages = {m for m in MODULES if m.count(".") == 1 and MODULES[m].name == "__init__.py"}
    assert {"labkit.engine", "labkit.measure", "labkit.optimize", "labkit.lab"} <= subpackages


@pytest.mark.parametrize("needle, allowed", [
    ("InferenceSession(", {"labkit/engine/sessions.py"}),
    ("os.replace(", {"labkit/files.py"}),
    ("mkstemp(", {"labkit/files.py"}),
])
def test_one_of_each_instrument(needle, allowed):
    """Sessions are made by engine.ort.new_session; files are written by labkit.files."""
    sites = {str(p.relative_to(ROOT)) for p in MODULES.values() if needle in p.read_text()}
    assert sites <= allowed


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _code(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]
            if c["cell_type"] == "code"]


def thin_problems(cells: list[str]) -> list[str]:
    """Why a notebook is not thin: function definitions, a loop holding an `if` (logic that
    belongs in labkit), or not exactly one `with Stage(...)` running the stage."""
    problems = []
    for i, src in enumerate(cells):
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                problems.append(f"cell {i} defines {node.name}")
            if isinstance(node, (ast.For, ast.While)) and any(isinstance(n, ast.If) for n in ast.walk(node)):
                problems.append(f"cell {i} has a loop with an if in it (line {node.lineno})")
    stages = sum(src.count("with Stage(") for src in cells)
    if stages != 1:
        problems.append(f"{stages} `with Stage(...)` blocks (one runs the stage)")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_thin(path):
    assert thin_problems(_code(path)) == []


def test_the_thin_check_catches_logic_in_a_notebook():
    fat = ["x = 1", "def helper():\n    return 2",
           "for r in rows:\n    if r:\n        print(r)", "with Stage(a, b) as st:\n    pass"]
    problems = thin_problems(fat)
    assert any("defines helper" in p for p in problems)
    assert any("loop with an if" in p for p in problems)
    assert thin_problems(["print(1)"]) == ["0 `with Stage(...)` blocks (one runs the stage)"]


#: Kokoro's facts, written once in labkit.kokoro and imported everywhere else
KOKORO_FACTS = {"SAMPLE_RATE", "SAMPLES_PER_FRAME", "MAX_TOKENS", "SPEED_RANGE", "VOICE_SHAPE",
                "STYLE_DIM", "VOCAB", "TOKEN_INPUTS"}


def fact_definitions(tree: ast.Module) -> list[str]:
    """The Kokoro facts a module assigns at its top level (names or the 24 kHz literal)."""
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out += [t.id for t in targets if isinstance(t, ast.Name) and t.id in KOKORO_FACTS]
            out += [f"{ast.unparse(node)[:40]}" for n in ast.walk(node)
                    if isinstance(n, ast.Constant) and n.value in (24_000, 24_000.0)]
    return out


def test_fact_definitions_sees_a_second_home():
    tree = ast.parse("SAMPLE_RATE = 24_000\nRATE = 24000\nOTHER = 3\n")
    assert fact_definitions(tree) == ["SAMPLE_RATE", "SAMPLE_RATE = 24000", "RATE = 24000"]


def test_kokoro_facts_live_in_one_module():
    homes = {m: fact_definitions(ast.parse(p.read_text())) for m, p in MODULES.items()
             if m != "labkit.kokoro"}
    assert {m: f for m, f in homes.items() if f} == {}
    assert KOKORO_FACTS <= set(dir(importlib.import_module("labkit.kokoro"))) | {"VOCAB"}


MAX_LINES = 500


def test_modules_are_short_or_say_why():
    """No module over 500 lines unless its docstring says why it stays whole (names the limit)."""
    long = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()
            if len(p.read_text().splitlines()) > MAX_LINES}
    unexplained = [f"{m} ({n} lines)" for m, n in long.items()
                   if f"{MAX_LINES} lines" not in (ast.get_docstring(ast.parse(MODULES[m].read_text())) or "")]
    assert unexplained == []


def private_reads(tree: ast.Module) -> list[str]:
    """Attributes named ``_x`` read on anything but ``self``/``cls``/``super()`` (another
    object's internals)."""
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
                continue
            out.append(f"{node.lineno}: {ast.unparse(node)}")
    return out


def test_private_reads_are_found():
    tree = ast.parse("self._a\nsuper()._b()\nengine._cache\nx.__class__\n")
    assert private_reads(tree) == ["3: engine._cache"]


def test_serve_uses_the_engines_public_surface():
    """serve/ calls what the engine offers by name, never another object's internals."""
    found = {m: private_reads(ast.parse(p.read_text())) for m, p in MODULES.items()
             if m.startswith("serve")}
    assert {m: f for m, f in found.items() if f} == {}
