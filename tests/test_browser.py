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
