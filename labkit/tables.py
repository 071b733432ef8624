"""Figures as text: the one cell formatter and Markdown table writer every stage and the
journal use (pandas is not a dependency)."""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

MISSING = "—"


def cell(v: Any, digits: int = 3) -> str:
    """A value as a table cell: ``digits`` significant digits for floats, a dash for
    None/NaN, JSON (cut to 200 characters) for dicts and lists."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 10 ** digits else f"{v:.{digits}g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)[:200]
    return str(v)


def fixed(v: Any, places: int = 3) -> str:
    """A number with ``places`` decimals (a dash for None/NaN)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return f"{v:.{places}f}"


def interval(ci: Sequence[float] | None, places: int = 3) -> str:
    """A 95 % interval as ``[lo, hi]`` with ``places`` decimals (empty when there is none)."""
    if not ci or len(ci) != 2 or any(x is None for x in ci):
        return ""
    return f"[{ci[0]:.{places}f}, {ci[1]:.{places}f}]"


def markdown(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 4,
             headers: Sequence[str] | None = None) -> str:
    """Rows of dicts as a Markdown table; ``headers`` rename the columns."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    heads = list(headers or columns)

    def esc(v: Any) -> str:
        return cell(v, digits).replace("|", "\\|").replace("\n", "⏎")

    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
