"""The benchmark journal: stage records -> ``artifacts/journal/JOURNAL.md`` / ``.html``,
``artifacts/best.json`` and ``docs/results.md`` (labkit.lab.results).

One section per stage with its status, key figures (``metrics["headline"]``), notes,
plots and audio, the papermill metadata of its executed notebook, and a comparison with
the previous run (changes beyond the noise band flagged).
"""
from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path

import yaml

from labkit import files
from labkit.tables import cell
from labkit.config import LabConfig, repo_relative
from labkit.lab import executed
from labkit.lab.plan import PLANS_DIR
from labkit.lab.results import (choices_table, comparison_lines, fmt_ci, headline_rows,
                                machine_lines, reproducibility_lines, write_results)
from labkit.quality import LSD_DEFINITION
from labkit.lab.selection import best_json, choice_differences
from labkit.lab.stage import RECORD_NAME, read_record

#: relative change beyond which a figure counts as moved (the machines are noisy)
NOISE_BAND = 0.15
_LOWER_BETTER = ("_s", "seconds", "rtf", "ttfa", "lsd", "_db", "underrun", "load", "ms", "time")
_HIGHER_BETTER = ("speedup", "x_sooner", "ratio", "pesq", "stoi", "mos", "coverage")


def run_records(cfg: LabConfig, run_id: str) -> list[tuple[Path, dict]]:
    run_dir = cfg.resolve(cfg.artifacts_dir) / run_id
    out = []
    for path in sorted(run_dir.glob(f"*/{RECORD_NAME}")):
        try:
            out.append((path, read_record(path)))
        except (OSError, ValueError):
            continue
    return out


#: stage -> seconds, as the batch timed each notebook (labkit.lab.batch), beside the records
WALL_TIMES_NAME = "wall_times.json"
#: the plan made for the run before it started (labkit journal --plan), beside the records
PLAN_NAME = "plan.json"


def read_plan(run_dir: Path) -> dict:
    """The run's plan (labkit.lab.plan), or {}."""
    try:
        data = json.loads((Path(run_dir) / PLAN_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def saved_plans(artifacts: Path) -> list[dict]:
    """The latest plan of each batch ``labkit journal --plan`` kept (artifacts/plans/)."""
    out = []
    for path in sorted((Path(artifacts) / PLANS_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def plan_lines(plan: dict, wall: dict[str, float]) -> list[str]:
    """Planned against ran: the plan's minutes per stage beside the notebooks' wall times."""
    if not plan.get("stages"):
        return []
    planned = {s["stage"]: s["minutes"] for s in plan["stages"]}
    ran = {k: v / 60 for k, v in wall.items() if k in planned}
    line = (f"Planned before the run: ~{plan['total']['minutes']:.0f} min, "
            f"{plan['total']['disk_gb']:.1f} GB peak disk (labkit journal --plan, "
            f"{plan.get('created', '')}, RTF {plan['costs']['rtf']:.2f} at "
            f"{plan['costs']['threads']} threads)")
    if ran:
        line += (f"; the {len(ran)} stage(s) that ran took {sum(ran.values()):.0f} min against "
                 f"~{sum(planned[k] for k in ran):.0f} planned for them")
    return [line + ".", ""]


def read_wall_times(run_dir: Path) -> dict[str, float]:
    try:
        data = json.loads((Path(run_dir) / WALL_TIMES_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def batch_name(cfg: LabConfig, run_id: str) -> str | None:
    """The name of the batch a run was made by (its copy of the batch file), or None."""
    path = cfg.resolve(cfg.artifacts_dir) / run_id / "batch.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data.get("name") if isinstance(data, dict) else None


def run_is_complete(cfg: LabConfig, run_id: str) -> bool:
    """Does the run hold a record for every stage of the batch that made it? (True for a
    run without its batch file: nothing says it is partial.)"""
    run_dir = cfg.resolve(cfg.artifacts_dir) / run_id
    try:
        data = yaml.safe_load((run_dir / "batch.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return True
    stages = [s.get("name") for s in (data or {}).get("stages") or [] if isinstance(s, dict)]
    return all((run_dir / str(s) / RECORD_NAME).exists() for s in stages)


def previous_run(cfg: LabConfig, run_id: str) -> str | None:
    """The newest earlier run made by the same batch (a smoke run is not compared with a
    full one), with at least one record."""
    root = cfg.resolve(cfg.artifacts_dir)
    name = batch_name(cfg, run_id)
    runs = sorted(p.name for p in root.glob("run-*") if p.is_dir() and p.name < run_id
                  and any(p.glob(f"*/{RECORD_NAME}")) and batch_name(cfg, p.name) == name)
    return runs[-1] if runs else None


def _run_base(cfg: LabConfig, run_id: str) -> LabConfig:
    """The configuration a run started from (its config.yaml), else ``cfg``."""
    path = cfg.resolve(cfg.artifacts_dir) / run_id / "config.yaml"
    return LabConfig.from_yaml(path) if path.exists() else cfg


def against_previous(cfg: LabConfig, run_id: str, best: dict, previous: str | None) -> dict:
    """Did the previous run of the same batch make the same choices? Its records are
    judged again by today's rules, so the answer is about the measurements, not the code."""
    if not previous:
        return {"previous_run": None, "same": None, "differences": []}
    records = [r for _, r in run_records(cfg, previous)]
    before = best_json(records, cfg.selection, _run_base(cfg, previous), previous, [])
    diffs = choice_differences(best, before, previous)
    return {"previous_run": previous, "same": not diffs, "differences": diffs}


def direction(key: str) -> int:
    """-1: lower is better, 1: higher is better, 0: unknown."""
    k = key.lower()
    if any(t in k for t in _HIGHER_BETTER):
        return 1
    if any(t in k for t in _LOWER_BETTER):
        return -1
    return 0


def _values(headline: dict) -> dict:
    """Headline figures with ``{"value"|"ratio": x, "ci95": [...]}`` entries unwrapped to x."""
    return {k: v for k, v, _ in headline_rows({"headline": headline})}


def compare_headlines(now: dict, before: dict, band: float = NOISE_BAND) -> dict[str, str]:
    """key -> "" (within band), "improved", "REGRESSED", or "changed" (direction unknown)."""
    out = {}
    now, before = _values(now), _values(before)
    for key, v in now.items():
        b = before.get(key)
        if not isinstance(v, (int, float)) or not isinstance(b, (int, float)) or isinstance(v, bool):
            continue
        if b == 0:
            continue
        rel = (v - b) / abs(b)
        if abs(rel) <= band:
            out[key] = ""
            continue
        d = direction(key)
        if d == 0:
            out[key] = f"changed {rel:+.0%}"
        else:
            out[key] = f"{'improved' if rel * d > 0 else 'REGRESSED'} {rel:+.0%}"
    return out


def _stage_files(stage_dir: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in stage_dir.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def build_sections(cfg: LabConfig, run_id: str) -> dict:
    records = run_records(cfg, run_id)
    prev = previous_run(cfg, run_id)
    prev_records = {r["stage"]: r for _, r in run_records(cfg, prev)} if prev else {}
    sections = []
    for path, rec in records:
        sdir = path.parent
        nb = sdir / f"{rec['stage']}.ipynb"
        headline = rec.get("metrics", {}).get("headline") or {}
        before = prev_records.get(rec["stage"], {}).get("metrics", {}).get("headline") or {}
        sections.append({
            "record": rec, "path": path, "dir": sdir, "headline": headline,
            "changes": compare_headlines(headline, before) if before else {},
            "papermill": papermill_metadata(nb) if nb.exists() else {},
            "notebook": nb if nb.exists() else None,
            # the saved plots the executed notebook shows as images (labkit.lab.executed)
            "figures": executed.figures_on_page(sdir, nb) if nb.exists() else None,
            "plots": _stage_files(sdir, (".png", ".svg")),
            "audio": _stage_files(sdir, (".wav", ".mp3")),
            "html": [p for p in _stage_files(sdir, (".html",))],
        })
    return {"run_id": run_id, "previous": prev, "sections": sections, "records": records,
            "plan": read_plan(cfg.resolve(cfg.artifacts_dir) / run_id),
            "wall": read_wall_times(cfg.resolve(cfg.artifacts_dir) / run_id)}


def _rel(p: Path, base: Path) -> str:
    return os.path.relpath(p, base)


def render_markdown(cfg: LabConfig, data: dict, best: dict, out_dir: Path) -> str:
    run_id = data["run_id"]
    lines = [f"# Kokoro Lab journal — {run_id}", ""]
    env = data["records"][0][1].get("environment", {}) if data["records"] else {}
    if env:
        lines += ["## Environment", ""] + machine_lines(env)  # the results page's lines
    lines += [f"Compared with the previous run of this batch: {data['previous'] or 'none (first run)'}; "
              f"changes within ±{NOISE_BAND:.0%} count as noise.", ""]
    lines += reproducibility_lines(best.get("reproducibility") or {}) + [""]
    lines += plan_lines(data.get("plan") or {}, data.get("wall") or {})
    planned = {s["stage"]: s["minutes"] for s in (data.get("plan") or {}).get("stages", [])}

    lines += ["## Best configuration", ""]
    if best.get("choices"):
        lines += choices_table(best["choices"])
        lines += ["", f"LSD dB: the {LSD_DEFINITION}. Stage 03 chooses on the development set "
                  "(its held-out figures are reported in its section); the other stages' column "
                  "holds their own quality cost: stage 02 the drift from the default session "
                  "(`drift_vs_default_db`), stage 05 the seam excess over mid-piece "
                  "(`seam_excess_db`), stage 06 the change from the first layout (`change_vs_first_db`)."]
        lines += ["", "Overrides in `artifacts/best.json`: `" + json.dumps(best["overrides"]) + "`", ""]
    else:
        lines += ["No stage offered candidates; best.json holds the defaults.", ""]
    if best.get("rejected"):
        lines += ["Rejected candidates: " + "; ".join(
            f"{r['stage']}/{r.get('candidate', '*')}: {r['reason']}" for r in best["rejected"]), ""]

    for s in data["sections"]:
        rec = s["record"]
        pm = s["papermill"]
        dur = pm.get("duration")
        lines += [f"## {rec['stage']}", "",
                  f"**status:** {rec['status']}" + (f" · ran {dur:.0f} s" if dur else "")
                  + (f" · planned ~{planned[rec['stage']]:.1f} min" if rec["stage"] in planned else "")
                  + f" · finished {rec.get('finished')}", ""]
        if s["headline"]:
            lines += ["| figure | value | 95 % interval | vs previous |", "|---|---|---|---|"]
            for k, v, ci in headline_rows(rec.get("metrics") or {}):
                lines.append(f"| {k} | {cell(v)} | {fmt_ci(ci)} | {s['changes'].get(k, '')} |")
            lines.append("")
        for title, cmp in (rec.get("metrics", {}).get("comparisons") or {}).items():
            lines += comparison_lines(title, cmp, cfg.selection.threshold)
        for note in rec.get("notes") or []:
            lines.append(f"- {note}")
        if rec.get("notes"):
            lines.append("")
        if rec["status"].startswith("failed"):
            tb = rec.get("metrics", {}).get("traceback")
            if tb:
                lines += ["```", tb.strip()[-1500:], "```", ""]
        params = {k: v for k, v in (rec.get("params") or {}).items() if k not in ("config_path",)}
        if params:
            lines += ["Parameters: `" + json.dumps(params)[:600] + "`", ""]
        for p in s["plots"]:
            lines += [f"![{p.stem}]({_rel(p, out_dir)})", ""]
        if s.get("figures"):
            lines += [f"Plots on the page: {executed.summary(s['figures'])}.", ""]
        links = []
        if s["notebook"]:
            links.append(f"[executed notebook: {s['notebook'].name}]({_rel(s['notebook'], out_dir)})")
        else:
            links.append("no executed notebook (the stage ran outside a batch)")
        links.append(f"[metrics.json]({_rel(s['path'], out_dir)})")
        links += [f"[{p.name}]({_rel(p, out_dir)})" for p in s["html"]]
        lines += [" · ".join(links), ""]
    return "\n".join(lines)


def render_html(markdown_text: str, data: dict, out_dir: Path) -> str:
    import mistune

    body = mistune.html(markdown_text)
    players = []
    for s in data["sections"]:
        for a in s["audio"][:12]:
            players.append(f"<figure><figcaption>{html.escape(s['record']['stage'])}: "
                           f"{html.escape(a.name)}</figcaption><audio controls preload='none' "
                           f"src='{html.escape(_rel(a, out_dir))}'></audio></figure>")
    audio = ("<h2>Listen</h2>" + "\n".join(players)) if players else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Kokoro Lab journal</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
            "img{max-width:100%}code{background:#f4f4f4}</style></head><body>"
            + body + audio + "</body></html>")


def write_journal(cfg: LabConfig, run_id: str) -> dict[str, Path]:
    """Write JOURNAL.md/HTML for ``run_id``, artifacts/best.json and, once the run holds
    every stage of its batch, the results page (``cfg.results_md``, docs/results.md: a
    partial run, e.g. ``--only`` into a new run, must not replace the README's figures);
    returns their paths."""
    root = cfg.resolve(cfg.artifacts_dir)
    out_dir = root / "journal"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_sections(cfg, run_id)
    records = [r for _, r in data["records"]]
    best = best_json(records, cfg.selection, _run_base(cfg, run_id), run_id,
                     [str(p) for p, _ in data["records"]])
    best["reproducibility"] = against_previous(cfg, run_id, best, data["previous"])
    md = render_markdown(cfg, data, best, out_dir)
    paths = {"markdown": out_dir / "JOURNAL.md", "html": out_dir / "JOURNAL.html",
             "best": root / "best.json"}
    paths["markdown"].write_text(md)
    paths["html"].write_text(render_html(md, data, out_dir))
    files.write_json(paths["best"], repo_relative(best), indent=2)  # portable: see config
    # keep a copy of the run's journal beside its records
    shutil.copy(paths["markdown"], root / run_id / "JOURNAL.md")
    # "" for batches whose figures are not for the README (smoke runs)
    if cfg.results_md and run_is_complete(cfg, run_id):
        paths["results"] = write_results(cfg.resolve(cfg.results_md), run_id, records, best,
                                         wall=read_wall_times(root / run_id),
                                         run_plan=read_plan(root / run_id),
                                         saved_plans=saved_plans(root))
    return paths


def papermill_metadata(notebook: Path) -> dict:
    """Parameters, duration and exception recorded by papermill in an executed notebook."""
    try:
        nb = json.loads(Path(notebook).read_text())
    except (OSError, ValueError):
        return {}
    meta = nb.get("metadata", {}).get("papermill", {})
    return {k: meta.get(k) for k in ("parameters", "duration", "exception", "start_time", "end_time")}
