"""Every stage notebook executed on the smoke batch (experiments/smoke.yaml, papermill, as
``labkit journal`` runs it), then read as a person reads the executed copies: every plot the
stage saved is on the page as an image, the page opens with this run's headline, the Listen
sections hold stock and shipped players, the Try it boxes left nothing behind, the journal
counts the plots and links the notebooks -- and, where Debian's Chromium is installed,
JupyterLab shows an executed notebook with its plots drawn (a screenshot under
``artifacts/screenshots/``).

The batch runs once per session (about seven minutes here: the smallest inputs of every
stage), so these tests run with ``make test-notebooks`` (``LABKIT_NOTEBOOK_TESTS=1``) and
are skipped by ``make test``, which stays well under CI's budget. To read a
smoke run made already from this very tree instead, set ``LABKIT_SMOKE_RUN`` to its folder
(``artifacts/run-...``); a run whose notebooks' code differs from the tree's is refused.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from labkit.config import REPO_ROOT, LabConfig
from labkit.lab import browser, executed
from labkit.lab.batch import Batch, run_batch
from labkit.lab.stage import RECORD_NAME, read_record

pytestmark = [pytest.mark.model, pytest.mark.notebooks]

SMOKE = REPO_ROOT / "experiments" / "smoke.yaml"
STAGES = [s.name for s in Batch.load(SMOKE).stages]
LISTEN = ["03_quantization", "05_chunking", "06_dual_sessions", "07_verify"]
TRY_IT = ["01_g2p_sanitization", "02_ort_conversion", "03_quantization", "05_chunking",
          "06_dual_sessions"]
REUSE_ENV = "LABKIT_SMOKE_RUN"
#: where the screenshot goes (artifacts/ is not in git)
SCREENSHOT = REPO_ROOT / "artifacts" / "screenshots" / "07_verify-jupyterlab.png"


def _code(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def _stale(run_dir: Path) -> list[str]:
    """Stages whose executed notebook's code is not this tree's notebook's."""
    out = []
    for spec in Batch.load(SMOKE).stages:
        done = run_dir / spec.name / f"{spec.name}.ipynb"
        source = json.loads((REPO_ROOT / spec.notebook).read_text())
        if not done.exists() or _code(json.loads(done.read_text())) != _code(source):
            out.append(spec.name)
    return out


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    reuse = os.environ.get(REUSE_ENV)
    if reuse:
        run_dir = Path(reuse).resolve()
        stale = _stale(run_dir)
        if stale:
            pytest.fail(f"{REUSE_ENV}={reuse}: executed from other notebooks than this tree's: {stale}")
        return run_dir
    art = tmp_path_factory.mktemp("smoke-artifacts")
    base = LabConfig.load(env={})
    # the caches (durations copies, split parts, ORT graphs) are keyed by content: shared
    shared = base.resolve(base.artifacts_dir) / "cache"
    shared.mkdir(parents=True, exist_ok=True)
    (art / "cache").symlink_to(shared, target_is_directory=True)
    # stages 07 and 08 read the journal's best.json: this run's, not the repository's
    run_id = run_batch(SMOKE, cfg=base.with_overrides({"artifacts_dir": str(art),
                                                       "serve.best_json": str(art / "best.json")}))
    return art / run_id


def _notebook(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / f"{stage}.ipynb").read_text())


def _outputs(nb: dict):
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            yield i, c, o


def _text(o: dict, mime: str) -> str:
    v = (o.get("data") or {}).get(mime, "")
    return "".join(v) if isinstance(v, list) else v


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_ran(smoke_run, stage):
    status = read_record(smoke_run / stage / RECORD_NAME)["status"]
    assert status == "ok" or status.startswith("skipped"), status


@pytest.mark.parametrize("stage", STAGES)
def test_every_plot_the_stage_saves_is_an_image_on_its_page(smoke_run, stage):
    fig = executed.figures_on_page(smoke_run / stage, smoke_run / stage / f"{stage}.ipynb")
    assert fig["saved"] >= 1, "every stage notebook draws a plot"
    assert fig["missing"] == [] and fig["bare"] == [], executed.summary(fig)


@pytest.mark.parametrize("stage", STAGES)
def test_the_page_opens_with_this_runs_headline(smoke_run, stage):
    nb = _notebook(smoke_run, stage)
    run_cell = next(i for i, c in enumerate(nb["cells"]) if "with Stage(" in "".join(c["source"]))
    assert all(c["cell_type"] != "code" or "injected-parameters" in c["metadata"].get("tags", [])
               or "parameters" in c["metadata"].get("tags", []) for c in nb["cells"][:run_cell])
    opening = [_text(o, "text/markdown") for o in nb["cells"][run_cell].get("outputs", [])]
    found = [t for t in opening if t.startswith("**What this run found**")]
    assert found and f"run `{smoke_run.name}`" in found[0] and "| figure | value |" in found[0]
    assert "**What this stage asks.**" in "".join(nb["cells"][0]["source"])


@pytest.mark.parametrize("stage", LISTEN)
def test_listen_puts_stock_and_shipped_side_by_side(smoke_run, stage):
    takes = read_record(smoke_run / stage / RECORD_NAME)["metrics"]["listen"]["takes"]
    assert len(takes) == 2
    assert takes[0]["label"].startswith("stock: ")
    assert takes[1]["label"].startswith(("shipped: ", "tried, not shipped: "))
    # the ruler read the shipped take (and the stock one, unless stock is the reference: 06)
    assert takes[1]["verdict"] in ("pass", "fail") and takes[1]["figures"]["masked_lsd_db"] is not None
    assert takes[0]["verdict"] in ("pass", "fail", None)
    pages = [_text(o, "text/html") for _, _, o in _outputs(_notebook(smoke_run, stage))]
    page = next(h for h in pages if "Figures: the quality ruler" in h)
    players = 2 if takes[0]["verdict"] is None else 3  # + the reference's own player
    assert page.count("<audio controls preload='none' src='data:audio/wav;base64,") == players
    assert all(t["label"] in page for t in takes)
    assert sorted(p.name for p in (smoke_run / stage).glob("listen-*.wav"))


@pytest.mark.parametrize("stage", TRY_IT)
def test_try_it_leaves_nothing_in_an_executed_copy(smoke_run, stage):
    nb = _notebook(smoke_run, stage)
    cells = [c for c in nb["cells"] if "page.try_it(" in "".join(c["source"])]
    assert len(cells) == 1 and cells[0]["outputs"] == []
    assert not any("application/vnd.jupyter.widget-view+json" in (o.get("data") or {})
                   for _, _, o in _outputs(nb))
    assert "widgets" not in nb["metadata"]


def test_the_journal_counts_the_plots_and_links_each_executed_notebook(smoke_run):
    md = (smoke_run / "JOURNAL.md").read_text()
    for stage in STAGES:
        section = md.split(f"\n## {stage}\n", 1)[1].split("\n## ", 1)[0]
        m = re.search(r"Plots on the page: (\d+) of (\d+) saved plots shown as images", section)
        assert m and m.group(1) == m.group(2) and int(m.group(2)) >= 1, stage
        assert f"[executed notebook: {stage}.ipynb](../{smoke_run.name}/{stage}/{stage}.ipynb)" in section


def test_jupyterlab_shows_an_executed_notebooks_plots_in_chromium(smoke_run):
    """Headless Chromium (Debian's package) on JupyterLab serving the executed 07_verify
    notebook: the page draws its plot (a loaded image), its players have their audio, and
    nothing is left as a bare figure; the screenshot is kept under artifacts/screenshots/."""
    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium); CI does not install it")
    seen = browser.look(smoke_run / "07_verify" / "07_verify.ipynb", SCREENSHOT, chromium)
    assert seen["images"] >= 1 and seen["images_loaded"] == seen["images"], seen
    assert all(w > 100 and h > 100 for w, h in seen["image_sizes"]), seen
    assert seen["audio_with_source"] >= 3 and seen["audio_without_source"] == 0, seen
    assert seen["markdown"] >= 1 and seen["markdown_drawn"] == seen["markdown"], seen
    assert seen["bare_figures"] == 0 and seen["widgets"] == 0, seen
    for shot in (seen["screenshot"], seen["top_screenshot"]):
        png = Path(shot).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000
