"""The console script, as a user runs it."""
import json
import shutil
import subprocess
import sys

import pytest
import soundfile as sf

from labkit.config import REPO_ROOT

LABKIT = [sys.executable, "-m", "labkit.cli"]


def _offline_prefix():
    """Run with no network at all (a fresh network namespace), where the machine allows it."""
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return ["unshare", "-n"] if probe.returncode == 0 else None


@pytest.mark.model
def test_say_works_with_no_network(tmp_path):
    prefix = _offline_prefix()
    if prefix is None:
        pytest.skip("cannot make a network namespace here (needs unshare and root)")
    out = tmp_path / "gb.wav"
    proc = subprocess.run(prefix + LABKIT + ["say", "Tomatoes, and a flibbertigibbet.", "-o", str(out),
                                             "--voice", "bf_emma"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    audio, sr = sf.read(out)
    assert sr == 24000 and len(audio) / sr > 1.0


@pytest.mark.model
@pytest.mark.parametrize("voice,text,first", [("jf_alpha", "東京タワーは333メートルです。", "東京"),
                                              ("zf_xiaobei", "北京是中国的首都。", "北京")])
def test_say_japanese_and_chinese_with_words(tmp_path, voice, text, first):
    """j and z voices speak with misaki's own G2P, with no network where the machine can
    take it away (nothing is downloaded at first use); each word points into the text."""
    prefix = _offline_prefix() or []
    out, words = tmp_path / f"{voice}.wav", tmp_path / f"{voice}.json"
    proc = subprocess.run(prefix + LABKIT + ["say", text, "-o", str(out), "--voice", voice,
                                             "--words", str(words)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    audio, sr = sf.read(out)
    assert sr == 24000 and len(audio) / sr > 1.0 and abs(audio).max() > 0.05
    entries = json.loads(words.read_text(encoding="utf-8"))
    assert entries[0]["word"] == first and len(entries) >= 3
    assert all(text[e["input_start"]:e["input_end"]] == e["word"] for e in entries)


def test_phonemize_prints_json_and_refuses_empty_input():
    proc = subprocess.run(LABKIT + ["phonemize", "Hello, world."], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["pieces"] and "wˈɜɹld" in data["pieces"][0]["phonemes"]
    refused = subprocess.run(LABKIT + ["phonemize", "-"], input="   \n", capture_output=True,
                             text=True, cwd=REPO_ROOT, timeout=300)
    assert refused.returncode == 2
    assert "nothing to read" in refused.stderr


def test_assets_lists_sources_and_hashes():
    proc = subprocess.run(LABKIT + ["assets"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb" in proc.stdout
    assert "npm kokoro-js@1.2.1" in proc.stdout
    assert "reference variant: " in proc.stdout


def test_bad_setting_is_one_clear_line():
    proc = subprocess.run(LABKIT + ["say", "hi", "-s", "session.intra_op_threads=0", "-o", "/dev/null"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 2
    assert "intra_op_threads=0" in proc.stderr and "Traceback" not in proc.stderr
