"""Where ONNX Runtime placed each node, read from ORT itself.

With session logging at VERBOSE, ORT prints each execution provider's ``GetCapability``
summary (partitions, nodes in the graph, nodes the provider takes) and, for every
provider, ``Node(s) placed on [EP]. Number of nodes: N`` followed by one line per node.
:func:`capture_ort_log` catches that text (file descriptor 2, so it works in notebooks);
:func:`parse_placement_log` reads it. Nothing here is estimated.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

CPU = "CPUExecutionProvider"
#: the provider whose coverage is reported by default
PROVIDER = "CoreMLExecutionProvider"


@contextlib.contextmanager
def capture_ort_log() -> Iterator[list[str]]:
    """Capture what ONNX Runtime writes to the process's stderr (its default log sink)
    inside the block; the list holds the text once the block exits. Works in notebooks too:
    it redirects file descriptor 2, not ``sys.stderr``."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


_CAPABILITY = re.compile(
    r"(?P<ep>\w+)ExecutionProvider::GetCapability,\s*number of partitions supported by "
    r"\w+:\s*(?P<partitions>\d+)\s*number of nodes in the graph:\s*(?P<nodes>\d+)\s*"
    r"number of nodes supported by \w+:\s*(?P<supported>\d+)")
_PLACED = re.compile(
    r"(?P<all>All nodes|Node\(s\)) placed on \[(?P<ep>[\w.]+)\]\.\s*Number of nodes:\s*(?P<n>\d+)")
_NODE_LINE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]?\s{2,}(?P<op>[^\s(]+)\s*\((?P<name>[^)]*)\)")
_BARE_NODE_LINE = re.compile(r"^\s{2,}(?P<op>[A-Za-z_][\w.]*)\s*\((?P<name>[^)]*)\)\s*$")
_LOG_PREFIX = re.compile(r"^.*?\[[VIWEF]:onnxruntime:[^\]]*\]\s?")


@dataclass
class Capability:
    """One ``GetCapability`` summary: ORT prints one per graph it offers the EP (the main
    graph, then e.g. subgraphs or a re-check after other EPs), in order."""

    ep: str
    partitions: int
    nodes_in_graph: int
    nodes_supported: int


@dataclass
class Placement:
    """What ONNX Runtime reported about where the nodes went, parsed from its log."""

    capabilities: list[Capability] = field(default_factory=list)
    #: provider -> number of (possibly fused) nodes assigned to it
    nodes_by_provider: dict[str, int] = field(default_factory=dict)
    #: provider -> op type -> count, from the per-node lines (VERBOSE log only)
    ops_by_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    all_on: str | None = None

    @property
    def main(self) -> Capability | None:
        """The first GetCapability summary: the main graph (largest node count wins ties)."""
        if not self.capabilities:
            return None
        return max(self.capabilities, key=lambda c: c.nodes_in_graph)

    def coverage(self, ep: str = PROVIDER) -> dict[str, Any]:
        """Nodes on ``ep`` and on the CPU, in how many partitions: the sweep's coverage figures.
        ``None`` where the log held no such line (never a guess)."""
        short = ep.replace("ExecutionProvider", "")
        caps = [c for c in self.capabilities if c.ep == short]
        main = max(caps, key=lambda c: c.nodes_in_graph) if caps else None
        out: dict[str, Any] = {
            "nodes_in_graph": main.nodes_in_graph if main else None,
            "nodes_on_ep": main.nodes_supported if main else None,
            "partitions": main.partitions if main else None,
            "fused_nodes_on_ep": self.nodes_by_provider.get(ep),
            "nodes_on_cpu": self.nodes_by_provider.get(CPU),
            "all_on": self.all_on,
        }
        if main is None and self.all_on == ep:
            out["partitions"] = None
        if main is not None:
            out["nodes_fallback"] = main.nodes_in_graph - main.nodes_supported
            out["coverage_pct"] = round(100.0 * main.nodes_supported / max(main.nodes_in_graph, 1), 2)
        elif self.all_on == CPU:
            out["nodes_on_ep"] = 0
            out["coverage_pct"] = 0.0
        cpu_ops = self.ops_by_provider.get(CPU)
        if cpu_ops:
            out["cpu_ops"] = dict(sorted(cpu_ops.items(), key=lambda kv: -kv[1]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"capabilities": [asdict(c) for c in self.capabilities],
                "nodes_by_provider": self.nodes_by_provider,
                "ops_by_provider": self.ops_by_provider, "all_on": self.all_on}


def parse_placement_log(text: str | Iterable[str]) -> Placement:
    """Parse ORT's session log (any prefix style: Python's ``[V:onnxruntime:, file:line Fn]``,
    the Rust ``ort`` crate's tracing lines, or bare message text) into a :class:`Placement`."""
    lines = text.splitlines() if isinstance(text, str) else [l for t in text for l in t.splitlines()]
    p = Placement()
    current: str | None = None
    for raw in lines:
        m = _CAPABILITY.search(raw)
        if m:
            p.capabilities.append(Capability(m["ep"], int(m["partitions"]), int(m["nodes"]),
                                             int(m["supported"])))
            current = None
            continue
        m = _PLACED.search(raw)
        if m:
            ep, n = m["ep"], int(m["n"])
            p.nodes_by_provider[ep] = p.nodes_by_provider.get(ep, 0) + n
            if m["all"] == "All nodes":
                p.all_on = ep
                current = None
            else:
                current = ep
            continue
        if current is not None:
            m = _NODE_LINE.search(raw)
            if not m:
                body = _LOG_PREFIX.sub("", raw) if _LOG_PREFIX.match(raw) else raw
                m = _BARE_NODE_LINE.match(body) if body.startswith("  ") else None
            if m:
                op = m["op"]
                if op.startswith("CoreML_") or op.startswith(f"{PROVIDER}_"):
                    op = "CoreML partition"
                ops = p.ops_by_provider.setdefault(current, {})
                ops[op] = ops.get(op, 0) + 1
                continue
            if "VerifyEachNodeIsAssignedToAnEp" not in raw:
                current = None
    return p


