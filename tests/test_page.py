"""What a stage notebook puts on its page (labkit.lab.page), what an executed copy shows
(labkit.lab.executed), the Listen section's pieces (labkit.lab.listen) and the journal's
count of plots on the page. No model: figures, widgets and audio are made here."""
from __future__ import annotations

import base64
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labkit.config import LabConfig  # noqa: E402
from labkit.lab import batch, executed, journal, listen, page  # noqa: E402
from labkit.lab.stage import INTERACTIVE_ENV, Stage, write_record  # noqa: E402
from labkit.measure import corpora  # noqa: E402

SR = 24000


class Shown:
    """Records what page.display was given (outside a kernel nothing is drawn)."""

    def __init__(self):
        self.items = []

    def __call__(self, *objs, **kwargs):
        self.items += [(o, kwargs) for o in objs]


@pytest.fixture
def shown(monkeypatch):
    rec = Shown()
    monkeypatch.setattr(page, "display", rec)
    return rec


def _figure():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 0, 1])
    return fig


def _speech(seconds=1.2, seed=0):
    """Speech-like test audio: a buzzy tone whose level moves like syllables."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t) ** 2
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.1 * env * voiced + noise).astype(np.float32)


# -- figures on the page ----------------------------------------------------------------------------
def test_show_figure_saves_the_png_and_puts_the_same_bytes_on_the_page(tmp_path, shown):
    fig = _figure()
    assert page.show_figure(fig, tmp_path / "plot.png") is None  # a cell ending with it shows no path
    png = (tmp_path / "plot.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    [(img, kwargs)] = shown.items
    assert img.data == png  # the very file the journal shows
    assert kwargs["metadata"] == {"labkit": {"figure": "plot.png"}}
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend will not show it twice


def _executed(tmp_path, outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("stage.plot(...)")
    cell.outputs = outputs
    nb.cells.append(cell)
    path = tmp_path / "stage.ipynb"
    nbformat.write(nb, path)
    return path


def _image_output(png: bytes, name: str | None = None):
    return nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode(),
                                                        "text/plain": "<IPython.core.display.Image object>"},
                                  metadata={"labkit": {"figure": name}} if name else {})


BARE = nbformat.v4.new_output("execute_result", data={"text/plain": "<Figure size 1000x300 with 1 Axes>"},
                              execution_count=1)


def test_a_saved_figure_shown_as_an_image_is_counted(tmp_path, shown):
    page.show_figure(_figure(), tmp_path / "a.png")
    nb = _executed(tmp_path, [_image_output((tmp_path / "a.png").read_bytes(), "a.png")])
    fig = executed.figures_on_page(tmp_path, nb)
    assert fig == {"saved": 1, "shown": 1, "missing": [], "bare": []}
    assert executed.image_outputs(nb)[0]["figure"] == "a.png"
    assert executed.summary(fig).startswith("1 of 1 saved plots shown")


def test_a_figure_left_as_text_is_missing_from_the_page(tmp_path, shown):
    """The bug this guards against: Agg + a bare figure at the end of a cell."""
    page.show_figure(_figure(), tmp_path / "a.png")
    nb = _executed(tmp_path, [BARE])
    fig = executed.figures_on_page(tmp_path, nb)
    assert fig["shown"] == 0 and fig["missing"] == ["a.png"] and fig["bare"] == [0]
    assert "not on the page: a.png" in executed.summary(fig)


def test_another_picture_does_not_stand_in_for_the_saved_one(tmp_path, shown):
    page.show_figure(_figure(), tmp_path / "a.png")
    other = tmp_path / "elsewhere"
    other.mkdir()
    page.show_figure(_figure(), other / "b.png", dpi=50)  # a different picture, same name claimed
    nb = _executed(tmp_path, [_image_output((other / "b.png").read_bytes(), "a.png")])
    assert "a.png" in executed.figures_on_page(tmp_path, nb)["missing"]


# -- the journal ----------------------------------------------------------------------------------
def _journal_run(tmp_path, outputs_for):
    cfg = LabConfig(artifacts_dir=str(tmp_path / "art"), results_md="")
    run = "run-20990101-000000"
    write_record(cfg, run, "01_x", "ok", {"headline": {"a": 1}})
    sdir = tmp_path / "art" / run / "01_x"
    fig = _figure()
    fig.savefig(sdir / "p.png")
    plt.close(fig)
    _executed(sdir, outputs_for(sdir / "p.png")).rename(sdir / "01_x.ipynb")
    journal.write_journal(cfg, run)
    return (tmp_path / "art" / "journal" / "JOURNAL.md").read_text()


def test_the_journal_counts_plots_on_the_page_and_links_the_executed_notebook(tmp_path):
    md = _journal_run(tmp_path, lambda png: [_image_output(png.read_bytes())])
    assert "Plots on the page: 1 of 1 saved plots shown as images" in md
    assert "[executed notebook: 01_x.ipynb](../run-20990101-000000/01_x/01_x.ipynb)" in md


def test_the_journal_says_which_plot_the_page_lacks(tmp_path):
    md = _journal_run(tmp_path, lambda png: [BARE])
    assert "0 of 1 saved plots shown as images in the executed notebook; not on the page: p.png" in md
    assert "1 cell(s) show a figure only as text" in md


# -- interactive or not -------------------------------------------------------------------------------
class ZMQInteractiveShell:  # the name is what interactive() reads
    pass


@pytest.mark.parametrize("env, shell, expected", [
    ({}, ZMQInteractiveShell(), False),                                          # papermill, nbclient
    ({"JPY_SESSION_NAME": "x.ipynb"}, ZMQInteractiveShell(), True),              # JupyterLab
    ({"JPY_SESSION_NAME": "x.ipynb"}, None, False),                              # no kernel at all
    ({"JPY_SESSION_NAME": "x.ipynb", INTERACTIVE_ENV: "0"}, ZMQInteractiveShell(), False),  # labkit journal
    ({INTERACTIVE_ENV: "1"}, None, True),                                        # said so
])
def test_interactive(env, shell, expected):
    assert page.interactive(env, shell) is expected


def test_the_batch_tells_its_kernels_no_one_is_at_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv(INTERACTIVE_ENV, "1")
    with batch._kernel_env(tmp_path, "01_x", resume=False):
        import os

        inside = os.environ[INTERACTIVE_ENV]
        assert page.interactive() is False
    assert inside == "0"
    assert os.environ[INTERACTIVE_ENV] == "1"  # restored


# -- try it -----------------------------------------------------------------------------------------
def test_try_it_draws_nothing_and_builds_nothing_under_papermill(shown):
    calls = []
    assert page.try_it(lambda **kw: calls.append(kw), {"x": [1, 2]}, env={}) is None
    assert shown.items == [] and calls == []


def test_try_it_draws_the_box_where_a_person_is(shown):
    page.try_it(lambda x: str(x), {"x": [1, 2]}, env={INTERACTIVE_ENV: "1"})
    [(box, _)] = shown.items
    assert type(box).__name__ == "VBox"


def test_the_button_runs_the_action_with_the_controls_values():
    seen = {}

    def action(level, fast, n, text, fixed):
        seen.update(level=level, fast=fast, n=n, text=text, fixed=fixed)
        return ["ran", {"speed-up (x)": 1.25}, _figure()]

    box = page.try_box(action, {"level": ["all", "basic"], "fast": False, "n": 30, "text": "hi"},
                       fixed="kept")
    level, fast, n, text, button, out = box.children
    level.value, fast.value, n.value = "basic", True, 120
    button.click()
    assert seen == {"level": "basic", "fast": True, "n": 120, "text": "hi", "fixed": "kept"}
    kinds = [o["output_type"] for o in out.outputs]
    assert kinds == ["stream", "display_data", "display_data"]
    assert "| speed-up (x) | 1.25 |" in out.outputs[1]["data"]["text/markdown"]
    assert "image/png" in out.outputs[2]["data"]


def test_an_action_that_fails_says_why_in_the_box():
    box = page.try_box(lambda x: 1 / 0, {"x": [1]})
    box.children[1].click()
    [o] = box.children[2].outputs
    assert o["name"] == "stderr" and "ZeroDivisionError" in o["text"]


def test_controls():
    ws = page.controls({"a": [("first", 1), ("second", 2)], "b": True, "c": 0.5, "d": "x" * 80, "e": 3})
    assert ws["a"].value == 1
    assert [type(w).__name__ for w in ws.values()] == ["Dropdown", "Checkbox", "FloatText", "Textarea", "IntText"]
    with pytest.raises(TypeError, match="no widget"):
        page.controls({"z": object()})
    with pytest.raises(ValueError, match="no options"):
        page.controls({"z": []})


# -- listen ------------------------------------------------------------------------------------------
UTT = corpora.Utterance("held-x", "A test sentence.", "af_sky")


def test_listening_reads_each_take_with_the_ruler_and_a_damaged_one_fails():
    ref = _speech()
    damaged = ref.copy()
    damaged[int(0.4 * SR):int(0.6 * SR)] = 0.0  # a 200 ms dropout inside speech
    lst = listen.listening(UTT, "the reference", ref, {"stock: a": ref.copy(), "shipped: b": damaged},
                           extra={"shipped: b": {"clicks": 0}})
    stock, shipped = lst.takes
    assert stock.verdict == "pass" and stock.figures["gap_ms"] == 0
    assert shipped.verdict == "fail" and shipped.figures["gap_ms"] > 100
    assert any("gap_ms" in r for r in shipped.reasons)
    d = lst.to_dict()
    assert [t["label"] for t in d["takes"]] == ["stock: a", "shipped: b"]
    assert "audio" not in d["takes"][0] and len(json.dumps(d)) < 5000  # the record holds no samples
    assert all(isinstance(v, (float, int, type(None))) for t in d["takes"] for v in t["figures"].values())


def test_the_listen_table_puts_players_side_by_side_with_the_figures_under_them():
    ref = _speech()
    lst = listen.listening(UTT, "the reference", ref, {"stock: a": ref, "shipped: b": ref * 0.5})
    html = listen.html_table(lst)
    assert html.count("<audio controls preload='none' src='data:audio/wav;base64,") == 3  # + the reference
    assert "<source" not in html  # JupyterLab strips <source src> from an untrusted notebook
    assert html.index("stock: a") < html.index("shipped: b")
    assert "masked LSD (dB)" in html and "level (dB)" in html
    rows = dict(listen.figure_rows(lst.take("shipped: b")))
    assert rows["level (dB)"].startswith("-6.0")  # half as loud: the ruler reports the level


def test_a_take_can_be_the_reference_the_others_are_read_against():
    ref = _speech()
    lst = listen.listening(UTT, "the first take", None, {"stock: a": ref, "shipped: b": ref * 0.5},
                           reference_take="stock: a")
    stock, shipped = lst.takes
    assert stock.verdict is None and stock.figures == {} and lst.reference is None
    assert round(shipped.figures["level_db"]) == -6
    html = listen.html_table(lst)
    assert html.count("<audio") == 2 and "— (the reference)" in html


def test_labels_say_when_the_stage_ships_the_stock_configuration():
    assert listen.labels("int8", "fp16", False) == ("stock: int8", "shipped: fp16")
    assert listen.labels("int8", "fp16", True) == ("stock: int8", "tried, not shipped: fp16")


def test_listening_takes_are_written_for_the_journal(tmp_path):
    ref = _speech()
    lst = listen.listening(UTT, "the reference", ref, {"stock: int8": ref})
    paths = listen.write(lst, tmp_path)
    assert sorted(p.name for p in paths) == ["listen-reference.wav", "listen-stock-int8.wav"]


def test_the_listening_sentence_is_held_out_and_long_enough_to_be_cut():
    utt = listen.sentence()
    assert utt.size == "medium" and utt.id in corpora.load("heldout", purpose="report").ids()
    assert listen.sentence("held-02").text == "Mind the gap."


def test_output_of_a_listening_is_its_table():
    ref = _speech()
    out = page.output_of(listen.listening(UTT, "the reference", ref, {"stock: a": ref}))
    assert "<audio" in out["data"]["text/html"]


def test_play_uses_a_player_an_executed_copy_keeps(shown):
    page.play(_speech(0.2), "a label")
    [(h, _)] = shown.items
    assert "<audio controls preload='none' src='data:audio/wav;base64," in h.data and "a label" in h.data


def test_opening_is_generated_from_the_record(tmp_path):
    cfg = LabConfig(artifacts_dir=str(tmp_path))
    with Stage("01_x", cfg, "run-x") as st:
        st.metrics["headline"] = {"TTFA (s)": 0.123, "ratio": {"value": 1.5, "ci95": [1.2, 1.8]}}
    md = page.opening_md(st)
    assert "run `run-x`, status `ok`" in md
    assert "| TTFA (s) | 0.123 |" in md and "| ratio | 1.5 [1.2, 1.8] |" in md
