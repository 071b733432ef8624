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
  set: standard LSD (time-aligned where a variant changes durations), worst utterance and
  mean.

The combination **loses** when any interval lies wholly on the worse side of 1.0, when it
underruns more, or when its worst held-out utterance is more than ``quality_margin_db``
further from the reference than the stock's. Then the journal ships the stock
configuration (labkit.lab.selection reads :data:`VERDICT`) and says why.
"""
from __future__ import annotations

from typing import Any

from labkit import quality
from labkit.config import LabConfig
from labkit.engine import assets
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.measure import corpora
from labkit.measure.compare import compare
from labkit.measure.streaming import first_audio, run_stream
from labkit.measure.texts import named
from labkit.optimize import split as splitting
from labkit.served import resolve

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


def held_out_quality(engines: dict[str, Engine], ref: Engine, prepared: list) -> dict[str, dict]:
    """name -> {utterance id: LSD to the reference (aligned where durations differ)}."""
    out: dict[str, dict] = {name: {} for name in engines}
    for p in prepared:
        want = ref.run_tokens(p.tokens, p.utt.voice, p.utt.speed).audio
        for name, eng in engines.items():
            got = eng.run_tokens(p.tokens, p.utt.voice, p.utt.speed).audio
            out[name][p.utt.id] = (quality.lsd_db(want, got) if got.size == want.size
                                   else quality.aligned_lsd_db(want, got))
    return out


def verdict(ttfa: tuple, speed: tuple, underruns: dict[str, int], worst: dict[str, float | None],
            margin_db: float) -> dict[str, Any]:
    """Where the shipped combination loses to the stock one (empty: it does not)."""
    losses = []
    if ttfa[1] < 1.0:
        losses.append(f"first audio: ratio interval [{ttfa[0]:.3f}, {ttfa[1]:.3f}] wholly below 1.0")
    if speed[1] < 1.0:
        losses.append(f"speed: ratio interval [{speed[0]:.3f}, {speed[1]:.3f}] wholly below 1.0")
    if underruns[SHIPPED] > underruns[STOCK]:
        losses.append(f"underruns: {underruns[SHIPPED]} against {underruns[STOCK]}")
    if worst[SHIPPED] is None:
        losses.append("quality: not measured on every held-out utterance")
    elif worst[STOCK] is not None and worst[SHIPPED] > worst[STOCK] + margin_db:
        losses.append(f"quality: worst held-out LSD {worst[SHIPPED]:.2f} dB against "
                      f"{worst[STOCK]:.2f} dB (margin {margin_db} dB)")
    return {"losses": losses, "ships": STOCK if losses else SHIPPED}


def run(cfg: LabConfig, st, *, text: str = "paragraph", speed_tokens: int = 120,
        rounds: int | None = None, max_rounds: int | None = None,
        heldout_ids: list[str] | None = None, quality_margin_db: float = 1.0) -> dict[str, Any]:
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
    ref_engine = Engine(cfg, variant=ref.variant)
    lsd = held_out_quality({k: s.engine for k, s in synths.items()}, ref_engine, held)
    summaries = {k: quality.summary(v) for k, v in lsd.items()}
    v = verdict(ttfa.ci95(SHIPPED), speed.ci95(SHIPPED),
                {k: s["underruns"] for k, s in streams.items()},
                {k: s["worst"] for k, s in summaries.items()}, quality_margin_db)
    v["tested_overrides"] = overrides
    return {"overrides": overrides, "ttfa": ttfa, "speed": speed, "streams": streams,
            "lsd": lsd, "quality": summaries, "reference": ref.variant, "verdict": v,
            "speed_tokens": len(toks), "text": text}


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
    for k in (STOCK, SHIPPED):
        out[f"underruns {k}"] = result["streams"][k]["underruns"]
        if q[k]["worst"] is not None:
            out[f"LSD to {result['reference']} {k}, worst held-out (dB)"] = round(q[k]["worst"], 2)
        if q[k]["mean"] is not None:
            out[f"LSD to {result['reference']} {k}, mean held-out (dB)"] = round(q[k]["mean"], 2)
    out["ships"] = result["verdict"]["ships"]
    return out


def record(st, result: dict[str, Any]) -> None:
    st.metrics["comparisons"] = {f"first audio, {result['text']}": result["ttfa"].to_dict(),
                                 f"speed, {result['speed_tokens']} tokens": result["speed"].to_dict()}
    st.metrics["streams"] = result["streams"]
    st.metrics["quality"] = {"reference": result["reference"], "per_utterance": result["lsd"],
                             "summary": result["quality"], "definition": quality.LSD_DEFINITION}
    st.metrics[VERDICT] = result["verdict"]
    st.metrics["headline"] = headline(result)
    for loss in result["verdict"]["losses"]:
        st.note(f"the combination loses to the stock configuration on {loss}: the journal ships "
                "the stock configuration")
