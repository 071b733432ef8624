"""What an executed notebook shows a reader: its image outputs, set against the figures its
stage saved for the journal.

A figure drawn with the Agg backend and left at the end of a cell reaches the page as the
text ``<Figure size 1000x300 with 1 Axes>``; its PNG exists in the stage's folder and in the
journal, but not where a person reads the notebook. :func:`figures_on_page` finds each
saved figure among the notebook's image outputs by its bytes (labkit.lab.page.show_figure
puts the saved file's very bytes on the page), so a figure is counted only when the page
shows that picture.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

#: the figure files a stage saves, as the journal lists them
FIGURE_SUFFIXES = (".png", ".svg")
#: what matplotlib's text form of a figure looks like
BARE_FIGURE = re.compile(r"^<Figure size \d+(\.\d+)?x\d+(\.\d+)? with \d+ Axes>$")


def read(notebook: str | Path | dict) -> dict:
    return notebook if isinstance(notebook, dict) else json.loads(Path(notebook).read_text())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _joined(v: Any) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def image_outputs(notebook: str | Path | dict) -> list[dict[str, Any]]:
    """Every image output of the notebook: the cell's index, its MIME type, the sha256 of
    its bytes, and the file it names (labkit.lab.page.show_figure's metadata), if any."""
    out = []
    for i, c in enumerate(read(notebook).get("cells", [])):
        for o in c.get("outputs", []) if c.get("cell_type") == "code" else []:
            data = o.get("data") or {}
            for mime in ("image/png", "image/svg+xml"):
                if mime not in data:
                    continue
                raw = _joined(data[mime])
                blob = base64.b64decode(raw) if mime == "image/png" else raw.encode()
                named = ((o.get("metadata") or {}).get("labkit") or {}).get("figure")
                out.append({"cell": i, "mime": mime, "sha256": _digest(blob), "figure": named})
    return out


def bare_figures(notebook: str | Path | dict) -> list[int]:
    """Cells whose output shows a figure only as its text (``<Figure size ... Axes>``)."""
    cells = []
    for i, c in enumerate(read(notebook).get("cells", [])):
        for o in c.get("outputs", []) if c.get("cell_type") == "code" else []:
            data = o.get("data") or {}
            text = _joined(data.get("text/plain", "")).strip()
            if BARE_FIGURE.match(text) and not any(k.startswith("image/") for k in data):
                cells.append(i)
    return cells


def saved_figures(stage_dir: str | Path) -> list[Path]:
    """The figure files in a stage's folder (and below it), as the journal shows them."""
    root = Path(stage_dir)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FIGURE_SUFFIXES)


def figures_on_page(stage_dir: str | Path, notebook: str | Path | dict) -> dict[str, Any]:
    """Each figure the stage saved, found (or not) among the executed notebook's image
    outputs by its bytes: ``saved`` and ``shown`` (counts), ``missing`` (the files not
    shown, relative to the stage's folder) and ``bare`` (cells showing a figure only as
    text)."""
    root = Path(stage_dir)
    shown = {o["sha256"] for o in image_outputs(notebook)}
    saved = saved_figures(root)
    missing = [str(p.relative_to(root)) for p in saved if _digest(p.read_bytes()) not in shown]
    return {"saved": len(saved), "shown": len(saved) - len(missing), "missing": missing,
            "bare": bare_figures(notebook)}


def summary(fig: dict[str, Any]) -> str:
    """One line for the journal: ``3 of 3 saved plots shown as images``, with what is not."""
    line = f"{fig['shown']} of {fig['saved']} saved plots shown as images in the executed notebook"
    if fig["missing"]:
        line += f"; not on the page: {', '.join(fig['missing'])}"
    if fig["bare"]:
        line += f"; {len(fig['bare'])} cell(s) show a figure only as text"
    return line
