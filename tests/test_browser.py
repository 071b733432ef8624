"""labkit.lab.browser's parts that need no browser: which Chromium, with which switches."""
import pytest

from labkit.lab import browser

REQUIRED = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic")


def test_chromium_runs_headless_and_off_the_network():
    assert set(REQUIRED) <= set(browser.FLAGS)


def test_chromium_named_in_the_environment_wins(monkeypatch, tmp_path):
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("LABKIT_CHROMIUM", str(fake))
    assert browser.find_chromium() == str(fake)
    monkeypatch.setenv("LABKIT_CHROMIUM", str(tmp_path / "absent"))
    assert browser.find_chromium() is None


def test_without_chromium_look_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    with pytest.raises(browser.BrowserError, match="apt-get install chromium"):
        browser.look(tmp_path / "x.ipynb", tmp_path / "x.png")


def test_the_page_is_read_by_one_expression():
    for key in ("images", "images_loaded", "audio_with_source", "audio_without_source", "widgets",
                "bare_figures"):
        assert f"{key}:" in browser.INSPECT


TRY_IT = '''import matplotlib.pyplot as plt
from labkit.lab import page
page.try_it(lambda n: [f"drew {n} points", plt.subplots(figsize=(4, 2))[1].plot(range(n))[0].figure],
            {"n": [5, 10]})'''


def test_a_try_it_box_works_in_jupyterlab(tmp_path):
    """A live JupyterLab kernel (started by the server: labkit.lab.page.interactive draws)
    shows the box; pressing its button in headless Chromium draws the action's text and
    figure in the box. The screenshot is kept under artifacts/screenshots/."""
    import nbformat

    from labkit.config import REPO_ROOT

    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium); CI does not install it")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(TRY_IT))
    nbformat.write(nb, tmp_path / "try_it.ipynb")
    shot = REPO_ROOT / "artifacts" / "screenshots" / "try-it-jupyterlab.png"
    seen = browser.press(tmp_path / "try_it.ipynb", shot, chromium=chromium)
    assert seen["box"]["errors"] == [] and "Run" in seen["box"]["buttons"], seen
    assert seen["box"]["controls"] == 1 and seen["box"]["output_images"] == 0, seen
    assert seen["pressed"]["output_images"] == 1 and "drew 5 points" in seen["pressed"]["output_text"], seen
    assert shot.read_bytes().startswith(b"\x89PNG")
