"""An executed notebook as a person sees it: JupyterLab serving it, headless Chromium
showing it, a screenshot and what the page rendered.

:func:`look` starts JupyterLab on the notebook's folder (a fresh settings folder: no
windowing, no news, no update check) and Chromium in headless mode with a fresh profile and
no network beyond localhost (:data:`FLAGS`), drives the page over the DevTools protocol,
waits until the notebook's image outputs are drawn, and writes two screenshots: the page's
top (the opening) and the first image scrolled into view. It returns what the page holds:
rendered images (loaded, with their size), audio players with and without a source,
widgets, and bare ``<Figure ...>`` texts.

Chromium is Debian's ``chromium`` package (``apt-get install chromium``); where it is
absent :func:`find_chromium` returns None and callers say so.

    python -m labkit.lab.browser artifacts/<run>/07_verify/07_verify.ipynb artifacts/page.png
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from labkit import files

#: Chromium's switches: headless, no sandbox (root in CI containers), no GPU, and nothing
#: that reaches the network on its own
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic")
#: where Chromium may be, first found wins (LABKIT_CHROMIUM names another)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: JupyterLab settings for a page read by a machine: every cell drawn (no windowing), no
#: news, no update check
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}
#: what the page holds, read in the page (one JavaScript expression)
INSPECT = """(() => {
  const imgs = [...document.querySelectorAll('.jp-Notebook .jp-RenderedImage img')];
  const audio = [...document.querySelectorAll('.jp-Notebook audio')];
  const src = a => a.getAttribute('src') || [...a.querySelectorAll('source')].some(s => s.getAttribute('src'));
  return {
    cells: document.querySelectorAll('.jp-Notebook .jp-Cell').length,
    images: imgs.length,
    images_loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    image_sizes: imgs.slice(0, 20).map(i => [i.naturalWidth, i.naturalHeight]),
    audio_with_source: audio.filter(src).length,
    audio_without_source: audio.filter(a => !src(a)).length,
    markdown: document.querySelectorAll('.jp-Notebook .jp-RenderedMarkdown').length,
    markdown_drawn: [...document.querySelectorAll('.jp-Notebook .jp-RenderedMarkdown')]
        .filter(e => e.children.length > 0).length,
    widgets: document.querySelectorAll('.jp-Notebook .widget-box, .jp-Notebook .jupyter-widgets').length,
    bare_figures: [...document.querySelectorAll('.jp-Notebook .jp-RenderedText')]
        .filter(e => /^<Figure size [0-9.]+x[0-9.]+ with [0-9]+ Axes>$/.test(e.textContent.trim())).length,
    title: document.title,
  };
})()"""
#: the first image output, centred in the window
SCROLL = """(() => { const i = document.querySelector('.jp-Notebook .jp-RenderedImage img');
  if (i) { i.closest('.jp-Cell').scrollIntoView({block: 'start'}); return true; } return false; })()"""


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """The Chromium executable: ``$LABKIT_CHROMIUM``, else the first of :data:`CANDIDATES`
    on the PATH, else None."""
    named = os.environ.get("LABKIT_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).exists() else None)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - localhost only
        return r.read()


def _wait(what: str, probe, timeout: float, proc: subprocess.Popen | None = None,
          log: Path | None = None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise BrowserError(f"{what}: the process exited ({proc.returncode}): {tail}")
        try:
            got = probe()
        except (OSError, ValueError):
            got = None
        if got:
            return got
        time.sleep(0.5)
    raise BrowserError(f"{what}: not ready after {timeout:.0f} s")


def _stop(proc: subprocess.Popen, group: bool = False) -> None:
    """End ``proc`` (with ``group``: every process of the session it leads -- Chromium's
    zygotes, renderers and crash handlers)."""
    def signal_(sig):
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    if proc.poll() is None or group:
        signal_(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            signal_(signal.SIGKILL)
            proc.wait(timeout=15)


def _idle() -> None:
    """In the browser's process before it starts: the idle scheduling class, which the
    browser's own priority changes (it raises its threads' priority where it may) do not
    leave -- a check must not take the CPU from measurements on the same machine."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


@contextmanager
def jupyter_lab(root: Path, work: Path, timeout: float = 180.0) -> Iterator[tuple[str, str]]:
    """JupyterLab serving ``root`` on a free loopback port with its own settings, workspace
    and runtime folders under ``work``; yields (its base URL, its token)."""
    token = secrets.token_hex(16)
    port = free_port()
    settings = work / "settings"
    for rel, data in SETTINGS.items():
        files.write_json(settings / rel, data)
    log = work / "jupyterlab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "JUPYTER_CONFIG_DIR": str(work / "config")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={work / 'workspaces'}", "--LabApp.extension_manager=readonly",
           "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("JupyterLab", lambda: _get(f"{base}/api/status?token={token}"), timeout, proc, log)
        yield base, token
    finally:
        _stop(proc, group=True)  # the server and the kernel it started for the page


class DevTools:
    """One page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, chromium: str, work: Path, size: tuple[int, int] = (1280, 1600),
                 timeout: float = 120.0):
        from websocket import create_connection  # websocket-client

        profile = work / "chromium-profile"  # fresh: nothing from another run
        profile.mkdir(parents=True, exist_ok=True)
        self.log = work / "chromium.log"
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
               f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", "about:blank"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_idle)
        try:
            port = _wait("Chromium", lambda: (profile / "DevToolsActivePort").read_text().split()[0],
                         timeout, self.proc, self.log)
            pages = _wait("Chromium's page", lambda: [t for t in json.loads(_get(
                f"http://127.0.0.1:{port}/json/list")) if t.get("type") == "page"], timeout,
                self.proc, self.log)
            self.ws = create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout,
                                        suppress_origin=True)
        except BaseException:
            _stop(self.proc, group=True)
            raise
        self._id = 0
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"in the page: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        import base64

        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        return files.write_bytes(path, data)

    def __enter__(self) -> "DevTools":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            _stop(self.proc, group=True)


def drawn(seen: dict[str, Any]) -> bool:
    """Is the page drawn: every image output loaded, every Markdown cell and output rendered
    (JupyterLab loads its Markdown parser lazily: text comes after the pictures)?"""
    return bool(seen.get("images")) and seen.get("images_loaded") == seen.get("images") \
        and seen.get("markdown_drawn") == seen.get("markdown")


def look(notebook: str | Path, screenshot: str | Path, chromium: str | None = None,
         timeout: float = 240.0, settle_s: float = 3.0) -> dict[str, Any]:
    """Open ``notebook`` (an executed copy) in JupyterLab in headless Chromium, wait until
    the page is drawn (:func:`drawn`, or ``timeout``), write a screenshot of the page's top (the
    opening: ``<screenshot>-top.png``), scroll the first image into view and write
    ``screenshot``. Returns what the page holds (:data:`INSPECT`) with both screenshots'
    paths and the URL."""
    with opened(notebook, chromium, timeout) as (page, url):
        end = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < end:
            seen = page.evaluate(INSPECT) or {}
            if drawn(seen):
                break
            time.sleep(1.0)
        time.sleep(settle_s)
        shot = Path(screenshot)
        top = page.screenshot(shot.with_name(f"{shot.stem}-top{shot.suffix}"))
        page.evaluate(SCROLL)
        time.sleep(settle_s)
        seen = page.evaluate(INSPECT) or seen
        page.screenshot(shot)
    return {**seen, "screenshot": str(shot), "top_screenshot": str(top),
            "url": url.split("&token=")[0]}


@contextmanager
def opened(notebook: str | Path, chromium: str | None, timeout: float) -> Iterator[tuple["DevTools", str]]:
    """``notebook`` open in JupyterLab (its own server on the notebook's folder) in headless
    Chromium: yields the page and its URL; everything started ends with the block."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise BrowserError(f"no Chromium found ({', '.join(CANDIDATES)} or $LABKIT_CHROMIUM); "
                           "on Debian: apt-get install chromium")
    notebook = Path(notebook).resolve()
    with tempfile.TemporaryDirectory(prefix="labkit-browser-") as tmp:
        work = Path(tmp)
        with jupyter_lab(notebook.parent, work, timeout) as (base, token):
            url = f"{base}/lab/tree/{notebook.name}?reset&token={token}"
            with DevTools(chromium, work, timeout=timeout) as page:
                page.send("Page.navigate", url=url)
                yield page, url


#: a live notebook's state: the kernel, cells run, widget buttons and what their outputs drew
LIVE = """(() => { const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const out = '.widget-output, .jupyter-widgets-output-area';
  return {
    kernel: ind && ind.getAttribute('data-status'),
    ran: [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')]
        .some(e => /\[[0-9*]+\]/.test(e.textContent)),
    cells: document.querySelectorAll('.jp-Notebook .jp-Cell').length,
    buttons: [...document.querySelectorAll('.jp-Notebook button.jupyter-button, .jp-Notebook .widget-button')]
        .map(b => b.textContent.trim()),
    controls: document.querySelectorAll('.jp-Notebook select, .jp-Notebook input, .jp-Notebook textarea').length,
    output_images: [...document.querySelectorAll('.jp-Notebook img')]
        .filter(i => i.closest(out) && i.complete && i.naturalWidth > 0).length,
    output_text: [...document.querySelectorAll('.jp-Notebook .widget-output')].map(e => e.textContent.trim()).join(' | ').slice(0, 500),
    errors: [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(e => e.textContent.slice(0, 500)),
  };
})()"""


def _until(page: DevTools, cond, timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < end:
        seen = page.evaluate(LIVE) or {}
        if cond(seen):
            break
        time.sleep(1.0)
    return seen


def _run_first_cell(page: DevTools) -> None:
    x, y = page.evaluate("(() => { const r = document.querySelector("
                         "'.jp-Notebook .jp-Cell .jp-InputPrompt').getBoundingClientRect();"
                         " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    for kind in ("mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    time.sleep(1.0)
    for kind in ("rawKeyDown", "keyUp"):
        page.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                  windowsVirtualKeyCode=13, modifiers=8)


def press(notebook: str | Path, screenshot: str | Path, button: str = "Run",
          chromium: str | None = None, timeout: float = 240.0) -> dict[str, Any]:
    """Open ``notebook`` in JupyterLab in headless Chromium with a live kernel, run its first
    cell (a "Try it" box: labkit.lab.page.try_it), press the widget button labelled
    ``button`` as a person would, wait until the box's output draws an image, and write a
    screenshot. Returns the page's state (:data:`LIVE`) before and after the press."""
    with opened(notebook, chromium, timeout) as (page, _url):
        _until(page, lambda s: s.get("cells") and s.get("kernel") == "idle", timeout)
        # select the first cell and run it (Shift+Enter, as a person does); a page
        # still settling can miss the keys: pressed again until the cell has run
        end = time.monotonic() + timeout
        drawn_box: dict[str, Any] = {}
        while time.monotonic() < end and not drawn_box.get("ran"):
            time.sleep(2.0)
            _run_first_cell(page)
            drawn_box = _until(page, lambda s: s.get("ran"), min(30.0, timeout))
        drawn_box = _until(page, lambda s: button in (s.get("buttons") or []) or s.get("errors"),
                           timeout)
        if button not in (drawn_box.get("buttons") or []):
            page.screenshot(Path(screenshot))
            return {"box": drawn_box, "pressed": None, "screenshot": str(screenshot)}
        page.evaluate("[...document.querySelectorAll('.jp-Notebook button.jupyter-button, "
                      f".jp-Notebook .widget-button')].find(b => b.textContent.trim() === {json.dumps(button)}).click()")
        after = _until(page, lambda s: s.get("output_images") or s.get("errors"), timeout)
        time.sleep(1.0)
        shot = page.screenshot(Path(screenshot))
    return {"box": drawn_box, "pressed": after, "screenshot": str(shot)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m labkit.lab.browser EXECUTED.ipynb SCREENSHOT.png", file=sys.stderr)
        return 2
    print(json.dumps(look(args[0], args[1]), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
