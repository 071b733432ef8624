"""What a stage notebook puts on its page: figures, the opening, "Listen" and "Try it".

A notebook reads top to bottom as an explanation, in JupyterLab and as the executed copy a
batch leaves under ``artifacts/<run>/<stage>/`` -- so every helper here writes outputs
that both show:

* :func:`show_figure` -- a matplotlib figure saved as PNG for the journal and shown on the
  page as an image output of the very same bytes (never ``<Figure size ...>``);
* :func:`opening` -- what this run found (its status, its headline), generated from the
  record, under the notebook's first cell (what the stage asks);
* :func:`play` -- an audio player that plays in an executed copy too;
* :func:`show_listening` -- a "Listen" section: players side by side with the ruler's
  figures under each (labkit.lab.listen builds what they play);
* :func:`try_it` -- a "Try it" box (ipywidgets): controls, a button, and the output of a
  labkit function; drawn only where a person is at the notebook (:func:`interactive`),
  nothing at all under papermill.
"""
from __future__ import annotations

import html
import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt
from IPython.display import HTML, Image, Markdown, display

from labkit import files
from labkit.kokoro import SAMPLE_RATE
from labkit.lab.listen import Listening, audio_tag, html_table
from labkit.lab.stage import INTERACTIVE_ENV, Stage, headline_md
from labkit.tables import cell

#: the key of an image output's metadata that names the file it shows
FIGURE_KEY = "labkit"
#: what a Jupyter server puts in the environment of every kernel it starts (the notebook's
#: path); papermill, nbclient and nbconvert start kernels without it
SERVER_KERNEL_ENV = "JPY_SESSION_NAME"


# -- figures -------------------------------------------------------------------------------------
def show_figure(fig, path: str | os.PathLike, *, dpi: int = 110, **savefig: Any) -> None:
    """Save ``fig`` as a PNG at ``path`` (the journal shows the file), close it, and put the
    very same bytes on the page as an image output whose metadata names the file
    (``{"labkit": {"figure": "<name>.png"}}``: :mod:`labkit.lab.executed` counts them).
    The output is an ``image/png`` whatever matplotlib backend runs (Agg, inline, a GUI):
    JupyterLab, papermill's executed copies and the journal show the same picture.
    Returns None (a cell ending with it shows nothing more)."""
    path = Path(path)
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, **savefig)
    plt.close(fig)  # drawn once: the inline backend would show it again at the cell's end
    display(figure_image(path.read_bytes()), metadata={FIGURE_KEY: {"figure": path.name}})


def figure_image(png: bytes) -> Image:
    return Image(data=png, format="png")


def figure_png(fig, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (closed afterwards): for outputs that are not saved files."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


# -- the opening -------------------------------------------------------------------------------
def opening_md(st: Stage) -> str:
    """What this run found, generated from the stage's record: its status and headline
    (:func:`labkit.lab.stage.headline_md`); the notebook's first cell says what the stage
    asks."""
    return "\n\n".join([
        f"**What this run found** (run `{st.run_id}`, status `{st.status}`; every figure on "
        f"this page comes from this run, recorded in `{st.name}/metrics.json`):",
        headline_md(st.metrics.get("headline") or {})])


def opening(st: Stage) -> None:
    display(Markdown(opening_md(st)))


# -- listen ------------------------------------------------------------------------------------
def play(audio, label: str | None = None, rate: int = SAMPLE_RATE) -> None:
    """An audio player, with ``label`` above it, that plays in JupyterLab from an executed
    copy too: ``IPython.display.Audio`` puts its data in ``<source src>``, which JupyterLab
    strips from a notebook it does not trust (papermill's copies are not signed); this is
    ``<audio src>`` (labkit.lab.listen.audio_tag), which it keeps."""
    display(HTML((f"<div>{html.escape(label)}</div>" if label else "") + audio_tag(audio, rate)))


def show_listening(listening: Listening | None) -> None:
    """A "Listen" section's players, side by side, the ruler's figures under each; a
    sentence that could not be made says why."""
    if listening is None:
        display(Markdown("*(nothing to listen to in this run)*"))
        return
    display(HTML(html_table(listening)))


# -- try it ------------------------------------------------------------------------------------
def interactive(env: Mapping[str, str] | None = None, shell: Any = "auto") -> bool:
    """Whether a person is at this notebook, so a "Try it" box is worth drawing.

    How a non-interactive run is told apart:

    1. ``LABKIT_INTERACTIVE`` decides when it is set: ``0`` never draws, ``1`` always.
       labkit's batch runner (``labkit journal``, which executes the notebooks with
       papermill) sets ``0`` in the environment of every kernel it starts.
    2. Otherwise only a kernel started by a Jupyter server draws: JupyterLab and Notebook 7
       put ``JPY_SESSION_NAME`` (the notebook's path) in the environment of every kernel
       they start, while papermill, nbclient and nbconvert start kernels through
       jupyter_client alone, which does not. So a bare ``papermill`` run draws nothing
       too. Elsewhere (VS Code, a console) set ``LABKIT_INTERACTIVE=1`` to draw.
    3. And only in an IPython kernel (a ``ZMQInteractiveShell``): a script or a test
       process has no page to draw on.
    """
    env = os.environ if env is None else env
    forced = env.get(INTERACTIVE_ENV)
    if forced is not None and forced.strip() != "":
        return forced.strip().lower() not in ("0", "false", "no", "off")
    if not env.get(SERVER_KERNEL_ENV):
        return False
    if shell == "auto":
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency
            return False
        shell = get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


def controls(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Widgets from a plain description, one per name: a list or tuple is a drop-down (its
    first entry selected; entries may be ``(label, value)`` pairs), a bool a checkbox, an int or float a number box, a str a text
    box (a multi-line one past 60 characters); a widget is taken as it is."""
    import ipywidgets as W

    out = {}
    for name, v in spec.items():
        label = name.replace("_", " ")
        if isinstance(v, W.Widget):
            out[name] = v
        elif isinstance(v, bool):
            out[name] = W.Checkbox(value=v, description=label)
        elif isinstance(v, (list, tuple)):
            if not v:
                raise ValueError(f"control {name!r}: no options")
            first = v[0][1] if isinstance(v[0], tuple) and len(v[0]) == 2 else v[0]
            out[name] = W.Dropdown(options=list(v), value=first, description=label)
        elif isinstance(v, int):
            out[name] = W.IntText(value=v, description=label)
        elif isinstance(v, float):
            out[name] = W.FloatText(value=v, description=label)
        elif isinstance(v, str):
            out[name] = (W.Textarea(value=v, description=label, layout=W.Layout(width="100%"))
                         if len(v) > 60 or "\n" in v else W.Text(value=v, description=label))
        else:
            raise TypeError(f"control {name!r}: no widget for {type(v).__name__} {v!r}")
    return out


def output_of(item: Any) -> dict[str, Any]:
    """One item an action returned as a notebook output (the form an ipywidgets ``Output``
    holds): text as a stream, a dict as a two-column table, a
    :class:`labkit.lab.listen.Listening` as its players and figures, a matplotlib figure as
    a PNG image, anything IPython can display (Markdown, HTML, Audio, Image) as its
    display data."""
    if isinstance(item, str):
        return {"output_type": "stream", "name": "stdout", "text": item.rstrip("\n") + "\n"}
    if isinstance(item, Mapping):
        item = Markdown(table_md(item))
    elif isinstance(item, Listening):
        item = HTML(html_table(item))
    elif hasattr(item, "savefig"):
        item = figure_image(figure_png(item))
    from IPython.core.formatters import DisplayFormatter

    data, metadata = DisplayFormatter().format(item)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def table_md(d: Mapping[str, Any]) -> str:
    """A flat mapping as a two-column Markdown table (labkit.tables.cell)."""
    rows = ["| | |", "|---|---|"] + [f"| {k} | {cell(v)} |" for k, v in d.items()]
    return "\n".join(rows)


def run_action(action: Callable[..., Any], values: Mapping[str, Any], out) -> None:
    """Call ``action(**values)`` and put what it returns (an item or a list of items,
    :func:`output_of`) into ``out`` (an ipywidgets Output), replacing what was there; an
    error is shown as text, never raised into the widget's event loop."""
    out.outputs = ({"output_type": "stream", "name": "stdout", "text": "running ...\n"},)
    try:
        items = action(**values)
    except Exception as exc:  # noqa: BLE001 - shown to the person who pressed the button
        out.outputs = ({"output_type": "stream", "name": "stderr",
                        "text": f"{type(exc).__name__}: {exc}\n"},)
        return
    items = items if isinstance(items, (list, tuple)) else [items]
    out.outputs = tuple(output_of(i) for i in items if i is not None)


def try_box(action: Callable[..., Any], spec: Mapping[str, Any], *, button: str = "Run",
            **fixed: Any):
    """A "Try it" box, not displayed: a widget per entry of ``spec`` (:func:`controls`), a
    button, and an output area; pressing the button calls
    ``action(**fixed, **{name: value})`` and shows what it returns (:func:`run_action`)."""
    import ipywidgets as W

    ws = controls(spec)
    go = W.Button(description=button, button_style="primary")
    out = W.Output()
    go.on_click(lambda _: run_action(action, {**fixed, **{k: w.value for k, w in ws.items()}}, out))
    return W.VBox([*ws.values(), go, out])


def try_it(action: Callable[..., Any], spec: Mapping[str, Any], *, button: str = "Run",
           env: Mapping[str, str] | None = None, shell: Any = "auto", **fixed: Any) -> None:
    """Show a "Try it" box (:func:`try_box`) where a person is at the notebook
    (:func:`interactive`); otherwise build nothing and display nothing, so an executed copy
    holds no widget that cannot render. Returns None."""
    if interactive(env, shell):
        display(try_box(action, spec, button=button, **fixed))
