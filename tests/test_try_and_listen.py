"""The functions behind the notebooks' "Try it" boxes (stages 02, 03, 05, 06) and "Listen"
sections (stages 03, 05, 06, 07), each on its own: what a learner's button press or a
stage's Listen section computes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labkit.engine import assets  # noqa: E402
from labkit.engine.pipeline import StreamingSynthesizer  # noqa: E402
from labkit.lab import listen  # noqa: E402
from labkit.lab import s02_ort_conversion as s02  # noqa: E402
from labkit.lab import quantization_report  # noqa: E402
from labkit.lab.quantization_result import QuantizationResult  # noqa: E402
from labkit.measure.variant_bench import REFERENCE  # noqa: E402
from labkit.lab import s05_chunking as s05  # noqa: E402
from labkit.lab import s06_dual_sessions as s06  # noqa: E402
from labkit.lab import s07_verify as s07  # noqa: E402
from labkit.measure.streaming import Run  # noqa: E402

SR = 24000
TEXT = "Hello there. This is a short test, with two sentences."


def _speech(seconds=1.0, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t) ** 2
    return (0.1 * env * voiced + 0.01 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


def _labels(lst):
    return [t.label for t in lst.takes]


# -- stage 02 --------------------------------------------------------------------------------------
def test_stage02_try_controls_start_at_the_configured_session(cfg):
    c = s02.try_controls(cfg, ["int8"], 120)
    assert c["graph_optimization_level"][0] == cfg.session.graph_optimization_level
    assert c["intra_op_threads"][0] == cfg.session.intra_op_threads
    assert c["denormal_as_zero"] is cfg.session.denormal_as_zero
    assert set(c) - {"variant", "tokens"} == set(s02.TRY_SETTINGS)
    assert len(c["execution_mode"]) == len(set(c["execution_mode"]))


def test_stage02_try_session_refuses_a_setting_it_does_not_turn(cfg):
    with pytest.raises(ValueError, match="Try it turns"):
        s02.try_session(cfg, providers=["CoreMLExecutionProvider"])


@pytest.mark.model
def test_stage02_try_session_times_one_change_and_reads_its_drift(cfg):
    [d] = s02.try_session(cfg, tokens=30, rounds=1, denormal_as_zero=not cfg.session.denormal_as_zero)
    assert d["changed"] == {"denormal_as_zero": not cfg.session.denormal_as_zero}
    assert d["configured median s"] > 0 and d["changed median s"] > 0 and d["speed-up (x)"] > 0
    assert d["95 % interval"].startswith("[") and d["A/A noise band"].startswith("[")
    assert d["drift: standard LSD dB (reported)"] >= 0
    assert d["drift: the ruler"].split()[0] in ("pass", "fail")


# -- stage 03 --------------------------------------------------------------------------------------
def _result03(fast, rows=None, clips=None, ships="int8"):
    ref = _speech()
    rows = rows or {REFERENCE: {"ok": True}, "int8": {"ok": True, "speedup": 1.0},
                    "fp16-dec": {"ok": True, "speedup": 0.97}, "dyn-u8": {"ok": True, "speedup": 1.3},
                    "broken": {"ok": False, "speedup": 2.0}}
    clips = clips or {n: ref * (1.0 if n == REFERENCE else 0.9) for n in rows}
    return QuantizationResult(baseline="int8", rows=rows, clips=clips, listen={"id": "held-09"},
                              reference={"variant": "fp32-recon"}, ships=ships,
                              selection={"fast": {"variant": fast} if fast else None})


def test_stage03_ships_what_the_selection_takes_else_shows_the_best_it_tried():
    assert quantization_report.shipped_variant(_result03("dyn-u8", ships="dyn-u8")) == ("dyn-u8", True)
    # the ruler passed fp16-dec but it is not faster than int8: int8 ships, fp16-dec is heard
    assert quantization_report.shipped_variant(_result03("fp16-dec")) == ("fp16-dec", False)
    # int8 itself was the fast pick, or nothing passed: the fastest that ran (never a failed one)
    assert quantization_report.shipped_variant(_result03("int8")) == ("dyn-u8", False)
    assert quantization_report.shipped_variant(_result03(None)) == ("dyn-u8", False)
    only = _result03(None, rows={REFERENCE: {"ok": True}, "int8": {"ok": True}})
    assert quantization_report.shipped_variant(only) == (None, False)


def test_stage03_side_by_side_reads_stock_and_shipped_against_the_reference():
    lst = quantization_report.side_by_side(_result03("fp16-dec", ships="fp16-dec"))
    assert _labels(lst) == ["stock: int8", "shipped: fp16-dec"]
    assert lst.utterance == "held-09" and "fp32-recon" in lst.against
    assert all(t.verdict in ("pass", "fail") for t in lst.takes)
    assert round(lst.takes[0].figures["level_db"], 1) == pytest.approx(-0.9, abs=0.1)  # 0.9x: -0.92 dB
    assert _labels(quantization_report.side_by_side(_result03(None))) == ["stock: int8", "tried, not shipped: dyn-u8"]


def test_stage03_try_controls_offer_what_ships_and_the_listening_sentence_first():
    c = quantization_report.try_controls(_result03("dyn-u8", ships="fp16-dec"))
    assert c["variant"][0] == "fp16-dec" and REFERENCE not in c["variant"]
    assert c["utterance"][0][1] == "held-09" and len(c["utterance"]) > 20


@pytest.mark.model
def test_stage03_try_variant_reads_a_model_against_the_reference(cfg):
    rows = {REFERENCE: {"path": str(assets.reference(cfg).path)},
            "int8": {"path": str(assets.model_path(cfg, "int8"))}}
    result = QuantizationResult(rows=rows, reference={"variant": assets.reference(cfg).variant})
    [lst] = quantization_report.try_variant(result, "int8", "held-02", cfg)
    assert lst.text == "Mind the gap." and _labels(lst) == ["int8"]
    assert lst.reference.size > SR // 4 and lst.takes[0].audio.size > SR // 4
    assert lst.takes[0].verdict in ("pass", "fail") and lst.takes[0].figures["masked_lsd_db"] >= 0
    with pytest.raises(KeyError, match="benched"):
        quantization_report.try_variant(result, "nope", "held-02", cfg)


# -- stage 05 --------------------------------------------------------------------------------------
def _run(arrivals, durations):
    chunks = [{"tokens": 10 * (i + 1), "started_at": a - 0.1, "synth_s": 0.1} for i, a in enumerate(arrivals)]
    return Run("x", arrivals, durations, arrivals[-1], sum(durations), chunks=chunks)


def _red_bars(fig):
    red = mcolors.to_rgb("tab:red")
    return sum(1 for p in fig.axes[0].patches if mcolors.to_rgb(p.get_facecolor()) == red)


def test_stage05_timeline_marks_where_the_listener_waits():
    on_time = s05.plot_timeline(_run([0.2, 0.5, 0.9], [1.0, 1.0, 1.0]), plt)
    late = s05.plot_timeline(_run([0.2, 2.0, 2.5], [1.0, 1.0, 1.0]), plt)  # piece 2 comes 0.8 s late
    assert _red_bars(on_time) == 0 and _red_bars(late) == 1
    assert len(late.axes[0].patches) == 7  # 3 synthesis + 3 playback bars + the wait
    plt.close("all")


def test_stage05_try_controls_start_at_the_configured_chunking(cfg):
    c = s05.try_controls(cfg, TEXT)
    assert c["schedule"][0] == cfg.chunking.schedule and c["prosody"][0] == cfg.chunking.prosody
    assert c["primer_max_words"] == cfg.chunking.primer_max_words and c["text"] == TEXT


@pytest.mark.model
def test_stage05_try_chunking_streams_with_the_knobs_turned(engine):
    summary, fig, lst = s05.try_chunking(engine, TEXT, "ramp", 3, "piece", plt)
    assert summary["pieces"] >= 2 and summary["first audio s"] > 0
    assert summary["every word present"] is True
    assert summary["chunking"] == "schedule=ramp, primer_max_words=3, prosody=piece"
    assert len(fig.axes[0].patches) >= 2 * summary["pieces"]
    [take] = lst.takes
    assert take.verdict in ("pass", "fail") and "clicks per minute" in take.extra
    plt.close("all")


@pytest.mark.model
def test_stage05_side_by_side_streams_stock_and_the_other_chunking(engine):
    synths = s05.synthesizers(engine, [{"primer_max_words": 3}])
    lst = s05.side_by_side(engine, synths, s05.BASELINE, "primer_max_words=3", utt_id="held-09")
    assert _labels(lst) == ["stock: chunking default", "tried, not shipped: chunking primer_max_words=3"]
    assert all(t.audio.size > SR and "clicks" in t.extra for t in lst.takes)
    shipped = s05.side_by_side(engine, synths, "primer_max_words=3", s05.BASELINE, utt_id="held-09")
    assert _labels(shipped)[1] == "shipped: chunking primer_max_words=3"


# -- stage 06 --------------------------------------------------------------------------------------
SINGLE = {"name": "single session", "sessions": 1}
COREML = {"name": "coreml", "sessions": 1, "session": {"providers": ["CoreMLExecutionProvider"]}}


def test_stage06_try_controls_offer_the_layouts_that_ran():
    result = {"rows": [{"candidate": "single session", "status": "ok"},
                       {"candidate": "coreml", "status": "skipped: no CoreML"},
                       {"candidate": "single session", "status": "ok"}]}
    assert s06.try_controls(result, TEXT) == {"layout": ["single session"], "text": TEXT}


@pytest.mark.model
def test_stage06_try_sessions_streams_one_layout(cfg):
    summary, fig, lst = s06.try_sessions(cfg, [SINGLE], "single session", TEXT, plt)
    assert summary["sessions"] == 1 and summary["first audio s"] > 0
    pieces = sum(summary["pieces per session"].values())
    assert len(fig.axes[0].patches) - _red_bars(fig) == 2 * pieces  # a synthesis and a play bar each
    assert _red_bars(fig) == summary["underruns"]
    assert _labels(lst) == ["single session"]
    with pytest.raises(KeyError, match="candidates"):
        s06.try_sessions(cfg, [SINGLE], "two", TEXT, plt)
    plt.close("all")


def test_stage06_try_sessions_says_why_a_layout_cannot_run_here(cfg):
    if "CoreMLExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("CoreML is available here")
    [why] = s06.try_sessions(cfg, [COREML], "coreml", TEXT, plt)
    assert why.startswith("skipped: CoreMLExecutionProvider not available")


@pytest.mark.model
def test_stage06_side_by_side_plays_the_first_layout_and_the_pair(cfg):
    dual = {"name": "dual 1+1", "sessions": 2, "session": {"intra_op_threads": 1},
            "second_session": {"intra_op_threads": 1}}
    rows = [{"candidate": "single session", "status": "ok"}, {"candidate": "dual 1+1", "status": "ok"}]
    rule = {"use_dual": False, "candidate": "single session", "per_text": {"phrase": {"dual": "dual 1+1"}}}
    lst = s06.side_by_side(cfg, [SINGLE, dual], rows, rule, utt_id="held-02")
    assert _labels(lst) == ["stock: single session", "tried, not shipped: dual 1+1"]
    stock, pair = lst.takes
    assert stock.verdict is None and lst.reference is None  # the first layout is the reference
    assert pair.verdict in ("pass", "fail") and pair.figures["masked_lsd_db"] is not None
    assert s06.side_by_side(cfg, [SINGLE], [{"candidate": "single session", "status": "failed: x"}], rule) is None


# -- stage 07 --------------------------------------------------------------------------------------
@pytest.mark.model
def test_stage07_side_by_side_plays_stock_and_the_combination_against_the_reference(cfg):
    synth = StreamingSynthesizer.from_config(cfg)
    lst = s07.side_by_side(cfg, {s07.STOCK: synth, s07.SHIPPED: synth}, {}, s07.SHIPPED, utt_id="held-02")
    assert _labels(lst) == ["stock: stock configuration",
                            "shipped: the combination (nothing earned: the stock configuration)"]
    assert assets.reference(cfg).variant in lst.against and "no override" in lst.note
    assert all(t.verdict in ("pass", "fail") for t in lst.takes)
    assert lst.reference.size > SR // 4
    assert listen.html_table(lst).count("<audio") == 3
