"""The stage protocol: what a stage module (``labkit/lab/sNN_*.py``) holds for its notebook.

A stage is a notebook (``notebooks/NN_name.ipynb``) run by the batch
(``experiments/*.yaml`` -> labkit.lab.batch) and a module that does its work. The notebook
stays thin (tests/test_layout.py): it loads the configuration, opens the stage's record
and hands over to the module in one block::

    from labkit.lab import s00_baseline as stage
    cfg = LabConfig.load(config_path, overrides)
    params = dict(texts=texts, rounds=rounds)             # the notebook's parameters
    with Stage(stage.NAME, cfg, run_id, params) as st:
        result = stage.run(cfg, st, **params)
        stage.record(st, result)

so a stage module has, at its top level:

``NAME``
    the stage's name: its notebook's file name without ``.ipynb`` and the ``name`` of its
    entry in every batch file; its records live in ``artifacts/<run_id>/<NAME>/``.
``run(cfg, st, **params)``
    does the work and returns the result the notebook's later cells show (tables, plots,
    audio: keys that start with ``_`` hold what is not written to the record). ``cfg`` and
    ``st`` (the open :class:`labkit.lab.stage.Stage`: ``st.path(name)`` for a file in
    the stage's folder, ``st.skip(reason)``, ``st.note(text)``) come first and positional;
    every other parameter is keyword-only and named as the notebook's parameter is.
``record(st, result)``
    writes the figures into ``st.metrics``; ``st.metrics["headline"]`` holds the figures
    the journal and docs/results.md show (labkit.lab.journal, labkit.lab.results), and
    ``st.metrics["candidates"]`` what the stage offers the selection (labkit.lab.selection).
    It may return what the notebook shows next (stage 02's measured rows).

Anything else a module holds (tables, plots, "Try it" controls) is for its own notebook.
:func:`problems` says where a module breaks the protocol (tests/test_stage_protocol.py
checks every stage module with it).
"""
from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from labkit.config import LabConfig
from labkit.lab.stage import Stage

#: the positional parameters of run() and record(), in order
RUN_POSITIONAL = ("cfg", "st")
RECORD_POSITIONAL = ("st", "result")


@runtime_checkable
class StageModule(Protocol):
    """A stage module, as its notebook and the batch use it (see the module docstring)."""

    NAME: str

    def run(self, cfg: LabConfig, st: Stage, **params: Any) -> Any: ...

    def record(self, st: Stage, result: Any) -> Any: ...


def _positional(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def problems(module: ModuleType) -> list[str]:
    """Where ``module`` breaks the stage protocol ([] when it follows it)."""
    out = []
    if not isinstance(getattr(module, "NAME", None), str):
        out.append("NAME is not a string")
    for name, positional in (("run", RUN_POSITIONAL), ("record", RECORD_POSITIONAL)):
        fn = getattr(module, name, None)
        if not callable(fn):
            out.append(f"no {name}()")
        elif tuple(_positional(fn)) != positional:
            out.append(f"{name}() takes {', '.join(_positional(fn))} positionally, not "
                       f"{', '.join(positional)}")
    return out


def accepts(module: ModuleType, params: list[str]) -> list[str]:
    """The names in ``params`` that ``module.run`` takes no keyword for."""
    sig = inspect.signature(module.run).parameters
    if any(p.kind is p.VAR_KEYWORD for p in sig.values()):
        return []
    keywords = {n for n, p in sig.items() if p.kind is p.KEYWORD_ONLY}
    return [p for p in params if p not in keywords]
