"""Stage 04's third experiment, read: the static op audit of every variant present
(labkit.optimize.op_audit: which nodes CoreML's op tables cover, per format, and the
partitions that leaves), as the notebook's tables, checks and plot, and as the journal's
key figures (:func:`audit_headline`).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from labkit.lab.accelerator_result import CoreMLResult


def audit_headline(audits: Mapping[str, Any]) -> dict[str, Any]:
    """Nodes, CoreML table coverage and estimated partitions per variant and format."""
    out: dict[str, Any] = {}
    for variant, a in audits.items():
        d = a.to_dict() if hasattr(a, "to_dict") else a
        out[f"{variant} nodes"] = d["nodes"]
        for fmt, fa in d["coreml"].items():
            out[f"{variant} {fmt} table coverage %"] = fa["coverage_pct"]
            out[f"{variant} {fmt} est. partitions"] = fa["estimated_partitions"]
    return out


def audit_tables(result: CoreMLResult) -> str:
    out = []
    for variant, a in result.audits.items():
        extra = ", ".join(k for k in a.opsets if k != "ai.onnx")
        out += [f"### {variant}: {a.nodes} nodes, opsets {a.opsets.get('ai.onnx')} (+ {extra}), "
                f"weights {a.precision_mix}, dynamic axes {a.dynamic_axes}, control flow "
                f"{a.control_flow or 'none'}", "",
                "| format | nodes supported | fallback | est. partitions | largest partitions |",
                "|---|---|---|---|---|"]
        out += [f"| {f} | {fa.supported_nodes} ({fa.coverage_pct} %) | {fa.unsupported_nodes} | "
                f"{fa.estimated_partitions} | {fa.largest_partitions[:5]} |" for f, fa in a.coreml.items()]
        out += ["", "| op | count | MLProgram | NeuralNetwork |", "|---|---|---|---|"]
        out += [f"| {r['op']} | {r['count']} | {r['MLProgram']} | {r['NeuralNetwork']} |"
                for r in a.table()]
        out.append("")
    out += [f"{variant}: not audited ({why})" for variant, why in result.missing.items()]
    return "\n".join(out)


def audit_checks(result: CoreMLResult) -> str:
    out = []
    for variant, a in result.audits.items():
        out += [f"== {variant}", f"watchlist: {json.dumps(a.watchlist)}"]
        out += [f"{name}: {json.dumps(check)}" for name, check in a.checks.items()]
    return "\n".join(out)


def plot_audit(result: CoreMLResult, plt):
    audits = result.audits
    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [f"{v}\n{f}" for v, a in audits.items() for f in a.coreml]
    sup = [fa.supported_nodes for a in audits.values() for fa in a.coreml.values()]
    uns = [fa.unsupported_nodes for a in audits.values() for fa in a.coreml.values()]
    ax.bar(labels, sup, label="in CoreML's table")
    ax.bar(labels, uns, bottom=sup, label="CPU fallback")
    ax.set_ylabel("nodes")
    ax.set_title("Static audit: nodes CoreML's op tables cover")
    ax.legend()
    fig.tight_layout()
    return fig

