"""The model guard (tests/conftest.py): while a test without the ``model`` marker runs,
loading the model raises and is recorded.

"Loading the model" is an ONNX Runtime session made from, or ``onnx.load`` of, a file in
the provisioned assets folder or the artifacts cache (the model, its variants and the
copies built from it). conftest installs the guard in the test process; a process a test
starts installs it through tests/standins/sitecustomize.py when ``LABKIT_TEST_NO_MODEL``
names the file violations are appended to. Nothing here is imported by the lab itself.
"""
import contextlib
import importlib.abc
import os
import sys
from pathlib import Path

ENV = "LABKIT_TEST_NO_MODEL"
_state = {"log": None, "who": None, "dirs": None}


class ModelLoaded(RuntimeError):
    """A test without the ``model`` marker loaded the model."""


def _guarded_dirs() -> list[Path]:
    if _state["dirs"] is None:
        from labkit.config import REPO_ROOT, LabConfig
        from labkit.engine.assets import assets_dir

        cfg = LabConfig.load(env={})
        dirs = {assets_dir(cfg), REPO_ROOT / "artifacts" / "assets",
                cfg.resolve(cfg.artifacts_dir) / "cache", REPO_ROOT / "artifacts" / "cache"}
        _state["dirs"] = sorted({d.resolve() for d in dirs})
    return _state["dirs"]


def _check(model) -> None:
    log = _state["log"] or os.environ.get(ENV)
    if not log or not isinstance(model, (str, os.PathLike)):
        return
    path = Path(model).resolve()
    if not any(path.is_relative_to(d) for d in _guarded_dirs()):
        return
    what = f"{_state['who'] or os.environ.get(ENV + '_TEST', '?')} loaded {path} (pid {os.getpid()})"
    with open(log, "a", encoding="utf-8") as f:
        f.write(what + "\n")
    raise ModelLoaded(f"{what}: a test that loads the model needs @pytest.mark.model")


def _guard_ort(ort) -> None:
    init = ort.InferenceSession.__init__
    if getattr(init, "model_guard", False):
        return

    def guarded_init(self, path_or_bytes, *args, **kwargs):
        _check(path_or_bytes)
        init(self, path_or_bytes, *args, **kwargs)

    guarded_init.model_guard = True
    ort.InferenceSession.__init__ = guarded_init


def _guard_onnx(onnx) -> None:
    load = onnx.load_model
    if getattr(load, "model_guard", False):
        return

    def guarded_load(f, *args, **kwargs):
        _check(f)
        return load(f, *args, **kwargs)

    guarded_load.model_guard = True
    onnx.load = onnx.load_model = guarded_load


_GUARDS = {"onnxruntime": _guard_ort, "onnx": _guard_onnx}


class _GuardOnImport(importlib.abc.MetaPathFinder):
    """Guards onnxruntime and onnx as they are imported: a process that never imports them
    imports nothing more for the guard."""

    def find_spec(self, name, path=None, target=None):
        if name not in _GUARDS:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def exec_and_guard(module, exec_module=exec_module):
                    exec_module(module)
                    _GUARDS[name](module)
                spec.loader.exec_module = exec_and_guard
                return spec
        return None


def install() -> None:
    """Guard onnxruntime.InferenceSession and onnx.load in this process: now where they
    are imported, else when they are."""
    for name, guard in _GUARDS.items():
        if name in sys.modules:
            guard(sys.modules[name])
    if not any(isinstance(f, _GuardOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _GuardOnImport())


@contextlib.contextmanager
def forbid(active: bool, who: str, log: Path):
    """Within the block (``active``): loading the model raises here and in processes
    started meanwhile, each load appended to ``log``."""
    if not active:
        yield
        return
    saved = {k: os.environ.get(k) for k in (ENV, ENV + "_TEST")}
    _state.update(log=str(log), who=who)
    os.environ[ENV], os.environ[ENV + "_TEST"] = str(log), who
    try:
        yield
    finally:
        _state.update(log=None, who=None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
