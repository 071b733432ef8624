"""Stage 05's tables and figures (labkit.lab.s05_chunking's result, as the notebook shows
it): the sweep, what a listener heard, the article, the seams. The opening sweep's are in
labkit.lab.opening_choice."""
from __future__ import annotations

from typing import Any

from labkit.tables import interval

#: the batch that streams the article when the default one leaves it out for time
FULL_BATCH = "experiments/full.yaml"


def sweep_table(result: dict[str, Any]) -> str:
    rows = ["| variant | chunks | TTFA med s | TTFA vs default | 95 % interval | total s | RTF | "
            "underruns (max) | words |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rows.append(f"| {r['label']} | {r['chunks']} | {r['ttfa_s']:.3f} | {r['ttfa_ratio']:.3f} | "
                    f"{interval(r['ttfa_ci95'], 3)} | {r['total_s']:.2f} | "
                    f"{r['rtf']:.3f} | {r['underruns_max']} | {r.get('words_present')} |")
    return "\n".join(rows)


def listener_table(result: dict[str, Any]) -> str:
    """What a listener hears, per chunking and load (worst over the rounds)."""
    rows = ["| chunking | load | repeats | first piece (tokens, each) | first audio s | "
            "underruns (each) | silence s (worst) | seams | RTF |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in result.get("listener", []):
        load = f"+{r['load_processes']} busy" if r["load_processes"] else "idle"
        rows.append(f"| {r['label']} | {load} | {r['repeats']} | {r.get('first_tokens_each', '')} | "
                    f"{r['ttfa_s']:.3f} | {r['underruns_each']} | {r['underrun_s_max']:.2f} | "
                    f"{max(r['seams_each'])} | {r['rtf']:.3f} |")
    for a in result.get("article_rows", []):
        load = f"+{a['load_processes']} busy" if a.get("load_processes") else "idle"
        rows.append(f"| article, {result['label']} | {load} | {a['repeats']} | "
                    f"{a.get('first_tokens_each', '')} | {a['ttfa_s']:.3f} | {a['underruns_each']} | "
                    f"{a['underrun_s_max']:.2f} | {a['chunks'] - 1} | {a['rtf']:.3f} |")
    return "\n".join(rows)


def plot_sweep(result: dict[str, Any], plt):
    rows = result["rows"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
    labels = [r["label"] for r in rows]
    ax[0].barh(labels, [r["ttfa_ratio"] for r in rows], color="tab:blue",
               xerr=[[r["ttfa_ratio"] - r["ttfa_ci95"][0] for r in rows],
                     [r["ttfa_ci95"][1] - r["ttfa_ratio"] for r in rows]])
    ax[0].axvline(1.0, color="grey", lw=0.8)
    ax[0].set_xlabel("TTFA speed-up vs default (95 % interval)")
    ax[1].barh(labels, [r["rtf"] for r in rows], color="tab:orange")
    ax[1].set_xlabel("end-to-end RTF")
    ax[1].set_yticks([])
    fig.tight_layout()
    return fig


def article_summary(result: dict[str, Any]) -> str:
    """The article's figures in one line, or why there are none."""
    if not result.get("article"):
        return f"the article was not streamed in this batch (article_text is empty; {FULL_BATCH} streams it)"
    return str({k: v for k, v in result["article"].items()})


def plot_article_slack(result: dict[str, Any], plt):
    run_ = result["_article_run"]
    if run_ is None:
        fig, ax = plt.subplots(figsize=(10, 1.2))
        ax.axis("off")
        ax.text(0.0, 0.5, article_summary(result), va="center")
        return fig
    pb = run_.playback(0.0)
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(range(len(run_.arrivals)), [s - a for s, a in zip(pb.starts, run_.arrivals)], ".-")
    ax.axhline(0, color="tab:red")
    ax.set_xlabel("chunk")
    ax.set_ylabel("slack: play start - arrival (s)")
    ax.set_title("Article: how far ahead of playback each chunk arrived (below 0 = gap)")
    fig.tight_layout()
    return fig


def plot_seams(result: dict[str, Any], plt):
    fig, axes = plt.subplots(1, len(result["seams"]), figsize=(6 * len(result["seams"]), 3),
                             squeeze=False)
    for ax, (label, s) in zip(axes[0], result["seams"].items()):
        xs = range(len(s["rows"]))
        ax.bar([x - 0.2 for x in xs], [r["seam_lsd_db"] or 0 for r in s["rows"]], 0.4, label="at the seam")
        ax.bar([x + 0.2 for x in xs], [r["control_lsd_db"] or 0 for r in s["rows"]], 0.4,
               label="mid-piece (control)")
        ax.set_xticks(list(xs), [f"{r['position_s']:.1f}s" for r in s["rows"]], rotation=30)
        ax.set_ylabel("LSD vs unchunked (dB)")
        ax.set_title(label)
        ax.legend()
    fig.tight_layout()
    return fig
