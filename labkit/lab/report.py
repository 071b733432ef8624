"""Reporting any stage can use: the figure formatters of its tables (a figure, a 95 %
interval, an HTML cell), shares of a total, and the listening page (one wav per take and
an HTML table of their figures). Stage-specific tables and plots live beside their stage
(e.g. labkit.lab.quantization_report); Markdown tables of dict rows are labkit.tables.markdown.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labkit.kokoro import SAMPLE_RATE
from labkit.tables import MISSING, cell, fixed


def figure(v: Any) -> str:
    """A table figure: floats with three decimals, a dash for None, anything else as text."""
    return MISSING if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def interval_cell(ci: Sequence[float] | None) -> str:
    """A 95 % interval as ``[lo, hi]`` with three decimals; a dash when there is none."""
    return MISSING if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def html_figure(v: Any) -> str:
    """A figure for an HTML cell: floats with two decimals, escaped."""
    return html.escape(fixed(v, 2) if isinstance(v, float) else cell(v))


def share(d: dict[str, float], top: int = 12) -> list[tuple[str, float, float]]:
    """The first ``top`` items of ``d`` as (key, value, share of the sum of all values)."""
    total = sum(d.values()) or 1.0
    return [(k, v, v / total) for k, v in list(d.items())[:top]]


def listening_page(out_dir: Path, sentence: str, utt_id: str, clips: dict[str, np.ndarray],
                   figures: dict[str, dict]) -> Path:
    """Write one wav per variant and an HTML table (reference first) to ``out_dir``."""
    import soundfile as sf

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, audio in clips.items():
        wav = out_dir / f"{utt_id}.{name}.wav"
        sf.write(str(wav), np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
        f = figures.get(name, {})
        cells = "".join(f"<td>{html_figure(f.get(k))}</td>" for k in ("lsd_db", "pesq_wb", "dnsmos_ovrl", "speedup"))
        rows.append(f"<tr><td>{html.escape(name)}</td><td><audio controls src='{wav.name}'></audio>"
                    f"</td>{cells}</tr>")
    page = out_dir / "listening.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>Kokoro variants</title>"
        f"<h1>Listening table: {html.escape(utt_id)}</h1><p>{html.escape(sentence)}</p>"
        "<table border=1 cellpadding=4><tr><th>variant</th><th>audio</th><th>LSD dB</th>"
        "<th>PESQ</th><th>DNSMOS</th><th>speed-up</th></tr>" + "".join(rows) + "</table>",
        encoding="utf-8")
    return page
