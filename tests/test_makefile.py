"""The Makefile on the Mac (``uname -s`` = Darwin, set on make's command line here)."""
import os
import shutil
import subprocess

import pytest

from labkit.config import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(*args: str) -> list[str]:
    # under `make test` the parent make's flags (MAKEFLAGS, MAKELEVEL) would add
    # "make[1]: Entering directory" lines: run it as a top-level make
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_journal_runs_the_mac_batch_on_darwin_unless_told_otherwise():
    assert dry_run("journal", "UNAME=Darwin")[-1].endswith("labkit journal -f experiments/m1max.yaml")
    assert dry_run("journal", "UNAME=Linux")[-1].endswith("labkit journal -f experiments/default.yaml")
    assert dry_run("journal", "UNAME=Darwin", "EXPERIMENT=experiments/full.yaml")[-1].endswith(
        "-f experiments/full.yaml")
    # the Mac batch is planned for the M1 Max's cores first, wherever it runs (docs/results.md: Plans)
    assert any(line.endswith("labkit journal -f experiments/m1max.yaml --plan --cores 8")
               for line in dry_run("journal", "UNAME=Linux"))


def test_setup_checks_the_mac_before_installing():
    mac = dry_run("-W", "pyproject.toml", "setup", "UNAME=Darwin")
    preflight = mac.index(".venv/bin/python -m labkit.host.preflight")
    install = next(i for i, line in enumerate(mac) if line.endswith("pip install --quiet -e ."))
    assert preflight < install
    assert not any("labkit.host.preflight" in line for line in dry_run("-W", "pyproject.toml", "setup",
                                                                  "UNAME=Linux"))
