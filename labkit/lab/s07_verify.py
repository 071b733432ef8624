"""Stage 07: the combination the journal would ship, verified against the stock configuration.

Each earlier stage earned (or did not earn) its own change on its own criterion. Their
combination -- stage 02's session settings chosen on int8, stage 03's model, stage 05's
chunking, stage 06's sessions -- is never measured as a whole there. Here it is, side by
side with the stock configuration (the shipped int8 model, the default session, the default
chunking: LabConfig's defaults) on the same texts, by the one instrument
(labkit.measure.compare: interleaved rounds, an A/A control, paired ratios with intervals):

* first audio of a stream of ``text`` (TTFA);
* speed: one warm inference of the same ``speed_tokens`` phoneme tokens (wall time);
* underruns: ``text`` streamed whole under the playback simulator;
* quality against the reference variant (labkit.engine.assets.reference) on the held-out
  set, like with like (labkit.measure.vocoder): the quality ruler (labkit.quality.ruler) on
  each model's vocoder at the reference's alignment, its durations against the reference's,
  and the recognizer's word error rate (pocketsphinx) of each one's own output.

The combination **loses** when any interval lies wholly on the worse side of 1.0, when it
underruns more, when the ruler fails it on a held-out utterance it passes for the stock
configuration, or when its word error rate is more than two points above the stock's. Then
the journal ships the stock configuration (labkit.lab.selection reads :data:`VERDICT`) and
says why.
"""
from __future__ import annotations

from typing import Any, TypedDict

from labkit.config import LabConfig
from labkit.engine import assets
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.words import timed_cache_dir
from labkit.lab import listen as listening
from labkit.engine.split_runtime import split_dir
from labkit.measure import corpora, vocoder
from labkit.measure.compare import Comparison, compare
from labkit.measure.streaming import first_audio, run_stream
from labkit.measure.texts import named
from labkit.optimize import durations
from labkit.optimize import split as splitting
from labkit.quality import ruler
from labkit.best_config import resolve

NAME = "07_verify"
#: the key of the stage's record that labkit.lab.selection reads
VERDICT = "verdict"
STOCK, SHIPPED = "stock", "shipped"


def combination(cfg: LabConfig) -> dict[str, Any]:
    """The overrides the journal would ship before verification (best.json's
    ``combined_overrides``, else its ``overrides``; {} without a best.json)."""
    served = resolve(cfg)
    if served.source != "best.json":
        return {}
    best = served.best
    return dict(best.get("combined_overrides", best.get("overrides")) or {})


def speed_tokens_of(prepared: list, n: int) -> list[int]:
    toks: list[int] = []
    while len(toks) < n:
        for p in prepared:
            toks += p.tokens
    return toks[:n]


def held_out_quality(configs: dict[str, LabConfig], synths: dict[str, StreamingSynthesizer],
                     ref_cfg: LabConfig, prepared: list) -> dict[str, Any]:
    """name -> the held-out judgement of that configuration's model (labkit.measure.vocoder:
    the ruler on its vocoder at the reference's alignment, durations, word error rate of its
    own output), plus the reference's word error rate under ``"reference_wer"``."""
    def parts(cfg: LabConfig, variant: str | None = None):
        # built here when missing (a stage run alone on a fresh clone), as stage 03 builds it
        timed = durations.ensure(assets.model_path(cfg, variant), timed_cache_dir(cfg))
        return splitting.split_files(timed, split_dir(cfg))

    ref_variant = assets.reference(ref_cfg).variant
    at = vocoder.AtReference(parts(ref_cfg, ref_variant), ref_cfg.session)
    texts = {p.utt.id: p.utt.text for p in prepared}
    voices = synths[STOCK].engine.voices
    # the reference's own output (its part A, then its part B), for its word error rate
    ref_audio = {p.utt.id: at.reference(p.feeds(voices), p.utt.id)[2] for p in prepared}
    ref_wer = vocoder.reference_word_errors(ref_audio, texts)
    out: dict[str, Any] = {"reference_wer": ref_wer}
    for name, cfg in configs.items():
        eng = synths[name].engine
        whole = {p.utt.id: eng.run_tokens(p.tokens, p.utt.voice, p.utt.speed).audio for p in prepared}
        out[name] = vocoder.judge(at, parts(cfg), prepared, eng.voices, whole, ref_wer)
    return out


def verdict(ttfa: tuple, speed: tuple, underruns: dict[str, int], judged: dict[str, Any]) -> dict[str, Any]:
    """Where the shipped combination loses to the stock one (empty: it does not)."""
    losses = []
    if ttfa[1] < 1.0:
        losses.append(f"first audio: ratio interval [{ttfa[0]:.3f}, {ttfa[1]:.3f}] wholly below 1.0")
    if speed[1] < 1.0:
        losses.append(f"speed: ratio interval [{speed[0]:.3f}, {speed[1]:.3f}] wholly below 1.0")
    if underruns[SHIPPED] > underruns[STOCK]:
        losses.append(f"underruns: {underruns[SHIPPED]} against {underruns[STOCK]}")
    stock, shipped = judged[STOCK], judged[SHIPPED]
    if not shipped.get("per_utterance"):
        losses.append("quality: not measured on the held-out set")
    worse = sorted(k for k, r in (shipped.get("per_utterance") or {}).items()
                   if r["verdict"] != "pass" and stock["per_utterance"].get(k, {}).get("verdict") == "pass")
    if worse:
        losses.append(f"quality: the ruler fails {worse} for the shipped combination and passes them "
                      "for the stock one")
    w_stock, w_shipped = (stock.get("summary") or {}).get("wer"), (shipped.get("summary") or {}).get("wer")
    allowed = (shipped.get("summary") or {}).get("wer_allowed_increase", vocoder.MAX_WER_INCREASE)
    if w_stock is not None and w_shipped is not None and w_shipped > w_stock + allowed + 1e-9:
        losses.append(f"quality: word error rate {w_shipped:.3f} against {w_stock:.3f} stock "
                      f"(+{allowed:.3f} allowed)")
    return {"losses": losses, "ships": STOCK if losses else SHIPPED}


class VerifyResult(TypedDict):
    """What :func:`run` returns: the notebook's cells read it, :func:`record` writes it."""

    #: stock and the combination read against the reference (not recorded)
    _listening: listening.Listening
    #: the combination: best.json's overrides over the configuration
    overrides: dict[str, Any]
    #: time to first audio and warm seconds, stock against the combination
    ttfa: Comparison
    speed: Comparison
    #: configuration -> its stream of the text, summarized
    streams: dict[str, dict[str, Any]]
    #: held-out quality of each configuration (:func:`held_out_quality`)
    quality: dict[str, Any]
    #: the reference model variant quality is read against
    reference: str
    verdict: dict[str, Any]
    speed_tokens: int
    text: str


def run(cfg: LabConfig, st, *, text: str = "paragraph", speed_tokens: int = 120,
        rounds: int | None = None, max_rounds: int | None = None,
        heldout_ids: list[str] | None = None) -> VerifyResult:
    overrides = combination(cfg)
    configs = {STOCK: cfg, SHIPPED: cfg.with_overrides(overrides)}
    for c in configs.values():  # the split parts a choice runs on (sentence prosody), built once
        splitting.ensure_for(c)
    synths = {k: StreamingSynthesizer.from_config(c) for k, c in configs.items()}
    for s in synths.values():
        for e in s.engines:
            e.warm_up()
    # the A/A control runs on a second build of the stock configuration: stock and shipped
    # are builds of their own, and two builds of the same configuration can differ
    control = StreamingSynthesizer.from_config(cfg)
    for e in control.engines:
        e.warm_up()
    body = named(text)
    ttfa = compare({k: (lambda s=s: first_audio(s, body)) for k, s in synths.items()}, STOCK,
                   rounds=rounds, max_rounds=max_rounds, measure=float, criterion="ttfa_s",
                   control=lambda: first_audio(control, body))
    held = corpora.prepare(corpora.load("heldout", purpose="report").select(ids=heldout_ids))
    toks = speed_tokens_of(held, speed_tokens)
    voice = cfg.voice
    speed = compare({k: (lambda e=s.engine: e.run_tokens(toks, voice)) for k, s in synths.items()},
                    STOCK, rounds=rounds, max_rounds=max_rounds, criterion="seconds",
                    control=lambda: control.engine.run_tokens(toks, voice))
    streams = {k: run_stream(s, body, name=k).summary() for k, s in synths.items()}
    ref = assets.reference(cfg)
    judged = held_out_quality(configs, synths, cfg, held)
    v = verdict(ttfa.ci95(SHIPPED), speed.ci95(SHIPPED),
                {k: s["underruns"] for k, s in streams.items()}, judged)
    v["tested_overrides"] = overrides
    lst = side_by_side(cfg, synths, overrides, v["ships"])
    return VerifyResult(_listening=lst, overrides=overrides, ttfa=ttfa, speed=speed, streams=streams,
                        quality=judged, reference=ref.variant, verdict=v,
                        speed_tokens=len(toks), text=text)


def side_by_side(cfg: LabConfig, synths: dict[str, StreamingSynthesizer], overrides: dict[str, Any],
           ships: str, utt_id: str | None = None) -> listening.Listening:
    """The held-out listening sentence (labkit.lab.listen.sentence) streamed through the
    stock configuration and through the combination, each read by the ruler against the
    reference model streamed through the stock configuration (the same pieces and joins:
    what differs is the model and what the combination changed)."""
    utt = listening.sentence(utt_id)
    ref = assets.reference(cfg)
    ref_cfg = cfg.with_overrides({"variant": ref.variant, "model_path": None, "pipeline.sessions": 1})
    reference = listening.streamed(StreamingSynthesizer.from_config(ref_cfg), utt)
    what = "the combination" if overrides else "the combination (nothing earned: the stock configuration)"
    stock, shipped = listening.labels("stock configuration", what, ships == STOCK)
    takes = {stock: listening.streamed(synths[STOCK], utt), shipped: listening.streamed(synths[SHIPPED], utt)}
    return listening.listening(
        utt, f"the reference model ({ref.variant}) streamed through the stock configuration",
        reference, takes,
        note="The combination: " + (", ".join(f"{k}={v}" for k, v in overrides.items())
                                    or "no override (nothing was earned: it is the stock configuration)")
        + f". The journal ships the {ships} configuration.")


def headline(result: dict[str, Any]) -> dict[str, Any]:
    ttfa, speed, q = result["ttfa"], result["speed"], result["quality"]
    out: dict[str, Any] = {
        "shipped overrides": result["overrides"] or "none (stock)",
        f"first audio shipped vs stock, {result['text']} (x)": {
            "value": round(ttfa.ratio(SHIPPED), 3), "ci95": [round(x, 3) for x in ttfa.ci95(SHIPPED)]},
        f"speed shipped vs stock, {result['speed_tokens']} tokens (x)": {
            "value": round(speed.ratio(SHIPPED), 3), "ci95": [round(x, 3) for x in speed.ci95(SHIPPED)]},
        f"{result['text']} TTFA stock (s)": round(ttfa.median(STOCK), 3),
        f"{result['text']} TTFA shipped (s)": round(ttfa.median(SHIPPED), 3),
    }
    out[f"word error rate, {result['reference']} (held-out)"] = round(q["reference_wer"]["corpus"], 3)
    out["word error rate allowed rise (the recognizer's jitter on inaudible changes, 0.02 at least)"] = \
        round(vocoder.wer_bound(q["reference_wer"]), 3)
    for k in (STOCK, SHIPPED):
        out[f"underruns {k}"] = result["streams"][k]["underruns"]
        sm = q[k]["summary"]
        out[f"ruler {k}: utterances passed"] = f"{sm['utterances'] - len(sm['failed_utterances'])}/{sm['utterances']}"
        if sm.get("worst_masked_lsd_db") is not None:
            out[f"masked LSD to {result['reference']} {k}, worst held-out (dB)"] = round(sm["worst_masked_lsd_db"], 2)
            out[f"worst frame to {result['reference']} {k}, worst held-out (dB)"] = round(sm["worst_masked_lsd_peak_db"], 2)
        if sm.get("wer") is not None:
            out[f"word error rate {k} (held-out)"] = round(sm["wer"], 3)
    out["ships"] = result["verdict"]["ships"]
    return out


def quality_table(result: dict[str, Any]) -> str:
    """Per held-out utterance, stock and shipped side by side: the ruler's verdict and its
    masked LSD (mean; worst frame), and the tokens whose predicted length moved."""
    q = result["quality"]
    lines = ["| utterance | stock | shipped | stock masked LSD dB | shipped masked LSD dB | "
             "tokens moved (shipped) |", "|---|---|---|---|---|---|"]
    for uid, r in q[SHIPPED]["per_utterance"].items():
        s = q[STOCK]["per_utterance"].get(uid, {})
        f, fs = r["figures"], s.get("figures") or {}
        lines.append(f"| {uid} | {s.get('verdict', '—')} | {r['verdict']} | "
                     f"{fs.get('masked_lsd_db', 0):.2f}; {fs.get('masked_lsd_peak_db', 0):.2f} | "
                     f"{f['masked_lsd_db']:.2f}; {f['masked_lsd_peak_db']:.2f} | "
                     f"{r['durations']['tokens_moved'] if r['durations']['tokens_moved'] is not None else '—'} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], plt):
    """The combination against the stock configuration: first audio and speed as paired
    ratios with their 95 % intervals (above 1: the combination is faster), each beside its
    A/A noise band (grey)."""
    items = [(f"first audio, {result['text']}", result["ttfa"]),
             (f"speed, {result['speed_tokens']} tokens", result["speed"])]
    fig, ax = plt.subplots(figsize=(8, 2.4))
    for i, (_, cmp) in enumerate(items):
        r, (lo, hi) = cmp.ratio(SHIPPED), cmp.ci95(SHIPPED)
        ax.plot(list(cmp.noise_band), [i, i], color="grey", lw=8, alpha=0.3, solid_capstyle="butt")
        ax.errorbar(r, i, xerr=[[r - lo], [hi - r]], fmt="o", color="C0", capsize=4)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(items)), [label for label, _ in items])
    ax.set_ylim(-0.6, len(items) - 0.4)
    ax.set_xlabel("stock time / combination time (x, 95 % interval; grey: the A/A noise band)")
    fig.tight_layout()
    return fig


def record(st, result: VerifyResult) -> None:
    st.metrics["comparisons"] = {f"first audio, {result['text']}": result["ttfa"].to_dict(),
                                 f"speed, {result['speed_tokens']} tokens": result["speed"].to_dict()}
    st.metrics["streams"] = result["streams"]
    st.metrics["quality"] = {"reference": result["reference"], **result["quality"],
                             "definition": ruler.definition()}
    st.metrics[VERDICT] = result["verdict"]
    if result.get("_listening") is not None:
        st.metrics["listen"] = result["_listening"].to_dict()
        listening.write(result["_listening"], st.dir)
    st.metrics["headline"] = headline(result)
    for loss in result["verdict"]["losses"]:
        st.note(f"the combination loses to the stock configuration on {loss}: the journal ships "
                "the stock configuration")
