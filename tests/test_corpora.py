"""The corpora: a development set to choose on, a held-out set that is only reported."""
from __future__ import annotations

import json
import re

import pytest

from labkit.config import REPO_ROOT
from labkit.measure import corpora
from labkit.measure.corpora import CorpusError


def held():
    return corpora.load("heldout", purpose="report")


def test_heldout_shares_nothing_with_the_development_set():
    for dev in ("dev", "calibration"):
        shared = corpora.overlap(corpora.load(dev), held())
        assert shared == {"sentences": [], "shingles": [], "ids": []}, dev
    # and the check does find overlap when there is some
    assert corpora.overlap(held(), held())["sentences"]
    h = held()
    copied = corpora.Corpus("x", [corpora.Utterance("x-1", "So: " + h.utterances[10].text, "af_heart")])
    assert corpora.overlap(copied, h)["shingles"]


def test_heldout_meets_its_requirements():
    h = held()
    assert corpora.requirements(h) == []
    assert len(h) >= 24 and len({u.voice for u in h}) >= 4
    assert {u.lang for u in h} == {"en-us", "en-gb"}
    assert {u.size for u in h} == set(corpora.SIZE_BANDS)
    # each requirement fails on a corpus that lacks it
    few = h.select(limit=5)
    assert any("utterances < 24" in p for p in corpora.requirements(few))
    us = corpora.Corpus("us", [u for u in h if u.lang == "en-us"])
    assert any("no en-gb voice" in p for p in corpora.requirements(us, min_utterances=1))
    one_voice = corpora.Corpus("one", [u for u in h if u.voice == "af_bella"])
    assert any("voices < 4" in p for p in corpora.requirements(one_voice, min_utterances=1))


def test_development_set_covers_voices_accents_and_lengths():
    for name in ("dev", "calibration"):
        c = corpora.load(name)
        assert {u.lang for u in c} == {"en-us", "en-gb"}, name
        assert len({u.voice for u in c}) >= 5, name


def test_the_heldout_set_refuses_to_be_chosen_on():
    for purpose in ("choose", "calibrate", None):
        with pytest.raises(CorpusError, match="held out"):
            corpora.load("heldout", purpose=purpose)
    with pytest.raises(CorpusError, match="held out"):  # by path too: the file names itself
        corpora.load(corpora.DATA_DIR / "heldout.yaml", purpose="choose")
    with pytest.raises(CorpusError, match="purpose 'pick'"):
        corpora.load("dev", purpose="pick")
    assert corpora.load("dev", purpose="choose").name == "dev"


def _code_sources():
    for path in sorted((REPO_ROOT / "labkit").rglob("*.py")):
        yield path.relative_to(REPO_ROOT), path.read_text(encoding="utf-8")
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        yield path.relative_to(REPO_ROOT), code


def test_every_heldout_load_is_for_reporting():
    """Every place the code loads the held-out set says it reports with it; the modules
    that choose (block lists, calibration, session settings, selection) never name it."""
    loads = 0
    for where, code in _code_sources():
        for m in re.finditer(r"corpora\.load\(\s*['\"]heldout['\"]([^)]*)\)", code):
            loads += 1
            assert re.search(r"purpose\s*=\s*['\"]report['\"]", m.group(1)), (str(where), m.group(0))
    assert loads >= 1  # the scan sees the stage-03 notebook's loads
    for module in ("labkit/optimize/quantize.py", "labkit/lab/selection.py",
                   "labkit/lab/s02_ort_conversion.py"):
        assert "heldout" not in (REPO_ROOT / module).read_text(encoding="utf-8").replace(
            "heldout_lsd_db", ""), module


@pytest.mark.model
def test_heldout_token_counts_and_size_bands():
    h = held()
    prepared = corpora.prepare(h)
    assert corpora.requirements(h, prepared=prepared) == []
    for p in prepared:
        assert corpora.size_of(p.n_tokens) == p.utt.size, (p.utt.id, p.n_tokens)
    assert any("outside 3-20" in p for p in corpora.requirements(h, tokens=(3, 20), prepared=prepared))
