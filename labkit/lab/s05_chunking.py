"""Stage 05: chunking and streaming: first audio fast, no gaps, no audible seams."""
from __future__ import annotations

import dataclasses
from typing import Any

from labkit.engine.pipeline import StreamingSynthesizer
from labkit.measure.texts import word_count
from labkit.measure.baseline import KokoroBaseline
from labkit.measure.streaming import Run, run_stream, stream_failures, summarize_runs

NAME = "05_chunking"


def pick(results: list[dict[str, Any]], max_underruns: int = 0, tie_band: float = 0.05) -> dict[str, Any] | None:
    """The best row: every word present, at most ``max_underruns``; then the lowest
    ttfa_s, ties (within ``tie_band``) broken by fewer chunks (fewer seams), then rtf."""
    ok = [r for r in results if r.get("words_present", True)
          and r.get("underruns_max", 0) <= max_underruns and r.get("ttfa_s") is not None]
    if not ok:
        return None
    best_ttfa = min(r["ttfa_s"] for r in ok)
    near = [r for r in ok if r["ttfa_s"] <= best_ttfa * (1 + tie_band)]
    return min(near, key=lambda r: (r.get("chunks", 0), r.get("rtf", 0)))


def chunking_label(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or "default"


def chunking_sweep(engine, text_: str, variants: list[dict[str, Any]], repeats: int = 3,
                   startup_buffer_s: float = 0.0, engines=None) -> list[dict[str, Any]]:
    """Stream ``text_`` with each chunking variant (overrides of ``cfg.chunking``): one
    row per variant with the medians, the worst playback figures and the first piece."""
    rows = []
    for overrides in variants:
        ccfg = dataclasses.replace(engine.cfg.chunking, **overrides)
        synth = StreamingSynthesizer(engine, engines, chunking_cfg=ccfg)
        runs = [run_stream(synth, text_, name=chunking_label(overrides)) for _ in range(max(1, repeats))]
        row = summarize_runs(runs, startup_buffer_s)
        row.update(label=chunking_label(overrides), overrides=dict(overrides),
                   chunking=dataclasses.asdict(ccfg), first_piece=runs[0].chunks[0]["text"],
                   first_tokens=runs[0].chunks[0]["tokens"],
                   tokens=[c["tokens"] for c in runs[0].chunks])
        rows.append(row)
    return rows


def side_by_side(synth, baseline: KokoroBaseline, text_: str, repeats: int = 3,
                 startup_buffer_s: float = 0.0, keep_audio: bool = False) -> dict[str, Any]:
    """ours / create / create_stream on one text, interleaved in each repeat so that the
    machine's noise hits all three alike; medians and the ratios the issue asks for."""
    runs: dict[str, list[Run]] = {"labkit": [], "create": [], "create_stream": []}
    for r in range(max(1, repeats)):
        keep = keep_audio and r == 0
        runs["labkit"].append(run_stream(synth, text_, keep_audio=keep, name="labkit"))
        runs["create"].append(baseline.run_create(text_, keep_audio=keep))
        runs["create_stream"].append(baseline.run_create_stream(text_, keep_audio=keep))
    out: dict[str, Any] = {"words": word_count(text_)}
    for name, rs in runs.items():
        out[name] = summarize_runs(rs, startup_buffer_s)
    ours, create, cstream = out["labkit"], out["create"], out["create_stream"]
    out["ratios"] = {
        "ttfa_create_over_labkit": create["ttfa_s"] / ours["ttfa_s"],
        "ttfa_create_stream_over_labkit": cstream["ttfa_s"] / ours["ttfa_s"],
        "total_labkit_over_create": ours["total_s"] / create["total_s"],
    }
    out["_audio"] = {k: rs[0].audio for k, rs in runs.items() if rs[0].audio is not None}
    out["_runs"] = runs
    return out


def chunking_candidates(rows: list[dict[str, Any]], chosen_label: str | None, base_chunking,
                        seam_cost_db: float | None) -> list[dict[str, Any]]:
    """Stage 05's sweep rows as candidates, the stage's choice first. Chunking changes the
    audio only at the seams; that cost (seam LSD minus mid-piece LSD) is measured for the
    chosen variant, so only it carries ``lsd_db`` (the others are listed, not eligible)."""
    base = dataclasses.asdict(base_chunking)
    out = []
    for r in sorted(rows, key=lambda r: r["label"] != chosen_label):
        chosen = r["label"] == chosen_label
        out.append({
            "name": f"chunking {r['label']}",
            "overrides": {f"chunking.{k}": v for k, v in r["chunking"].items() if base.get(k) != v},
            "ttfa_s": r["ttfa_s"], "rtf": r["rtf"],
            "lsd_db": (max(0.0, seam_cost_db) if chosen and seam_cost_db is not None else None),
            "lsd_basis": "seam cost (LSD at the seams minus mid-piece) vs unchunked audio" if chosen
                         else "seam cost not measured for this variant",
            "failed_checks": stream_failures(r),
        })
    return out
