"""Knobs for every chapter: live ipywidgets in a kernel, a static default everywhere, and a
kernel-free frame slider for the HTML book.

One call does all three::

    explore(plot_histogram, knobs={"sparsity": [0.5, 0.7, 0.9], "layer": ["fc1", "fc2"]},
            sweep="sparsity")

``plot(**values)`` must return a new matplotlib Figure. The helper

1. always draws the default values once and shows the figure as an ordinary output (so nbval,
   the HTML book and any notebook viewer see a result);
2. in a live Jupyter kernel, shows one control per knob above it; changing one redraws that same
   output in place (``display_id``), so there is only ever one figure;
3. with ``sweep="<knob>"``, draws every value of that knob once (other knobs at their defaults)
   and shows, in place of the default figure, a self-contained HTML slider over the pre-rendered
   frames, starting at the default value. It needs no kernel, no CDN and no global JavaScript,
   so it keeps working inside the static book; viewers that drop HTML fall back to the PNG.
   ``sweep=["kind", "t"]`` pre-renders the small grid of every combination, one slider per knob.

Frames are limited in number (``MAX_FRAMES``), pixels (``MAX_FRAME_PIXELS`` per side) and bytes
(``MAX_FRAME_BYTES`` each, ``MAX_SLIDER_BYTES`` in all) so that a page stays light; exceeding a limit
raises ``ValueError`` with the remedy (sweep fewer values, lower ``dpi`` or the figure size).
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import numbers
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

MAX_FRAMES = 40
MAX_FRAME_PIXELS = 1600
MAX_FRAME_BYTES = 400_000
MAX_SLIDER_BYTES = 4_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render a figure to PNG bytes and close it (so the inline backend does not show it again)."""
    import matplotlib.pyplot as plt

    if not isinstance(fig, Figure):
        raise TypeError(
            f"expected a matplotlib Figure, got {type(fig).__name__}; the plot function must return one"
        )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header."""
    if not isinstance(png, (bytes, bytearray)) or png[:8] != PNG_SIGNATURE or len(png) < 24:
        raise ValueError("a frame is not PNG bytes; render figures with figure_png(fig)")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def _check_frames(frames: Sequence[bytes]) -> None:
    """Frame count, pixel and byte limits (see the module docstring)."""
    if not frames:
        raise ValueError("frames is empty: a frame slider needs at least one frame")
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames exceed MAX_FRAMES={MAX_FRAMES}; sweep fewer values")
    oversized = [i for i, f in enumerate(frames) if max(png_size(f)) > MAX_FRAME_PIXELS]
    if oversized:
        raise ValueError(
            f"frames {oversized} are wider or taller than MAX_FRAME_PIXELS={MAX_FRAME_PIXELS}; "
            "lower the dpi or the figure size"
        )
    too_big = [i for i, f in enumerate(frames) if len(f) > MAX_FRAME_BYTES]
    if too_big:
        raise ValueError(
            f"frames {too_big} exceed MAX_FRAME_BYTES={MAX_FRAME_BYTES}; lower the dpi or the figure size"
        )
    total = sum(len(f) for f in frames)
    if total > MAX_SLIDER_BYTES:
        raise ValueError(
            f"{len(frames)} frames take {total} bytes, over MAX_SLIDER_BYTES={MAX_SLIDER_BYTES}; "
            "sweep fewer values or lower the dpi"
        )


# Inline handlers only (no <script>, no ids): every slider on a page works on its own, and the HTML
# survives notebook viewers and the book theme. Moving any axis shows frame k, the row-major index
# of all axes' positions; the buttons step their row's range, which fires the same update.
_SHOW = (
    "var r=this.closest('.sl-frame-slider'),shape=JSON.parse(r.dataset.shape),"
    "labels=JSON.parse(r.dataset.labels),k=0;"
    "r.querySelectorAll('input[type=range]').forEach(function(x,a){k=k*shape[a]+(+x.value);"
    "x.parentNode.querySelector('output').textContent=labels[a][+x.value];});"
    "r.querySelectorAll('img.sl-frame').forEach(function(im,i){im.style.display=(i===k)?'':'none';});"
)
_STEP = (
    "var s=this.parentNode.querySelector('input[type=range]');"
    "s.value=+s.value+({step});s.dispatchEvent(new Event('input'));"
)
_BUTTON_STYLE = "font:inherit;padding:0 0.5em;margin:0 0.2em;cursor:pointer"
_ROW_STYLE = (
    "display:flex;align-items:center;flex-wrap:wrap;gap:0.3em;font-size:0.9em;margin:0.3em 0"
)


def _axis_row(name: str, labels: Sequence[str], position: int) -> str:
    """One labelled range input with step buttons and the current value."""
    esc = html.escape(name)
    return (
        f'<div class="sl-frame-controls" style="{_ROW_STYLE}"><span style="font-weight:600;min-width:5em">{esc}</span>'
        f'<button type="button" class="sl-prev" aria-label="previous {esc}" style="{_BUTTON_STYLE}" '
        f'onclick="{html.escape(_STEP.format(step=-1))}">&#9664;</button>'
        f'<input type="range" min="0" max="{len(labels) - 1}" step="1" value="{position}" aria-label="{esc}" '
        f'style="width:16em;max-width:50%;vertical-align:middle" oninput="{html.escape(_SHOW)}">'
        f'<button type="button" class="sl-next" aria-label="next {esc}" style="{_BUTTON_STYLE}" '
        f'onclick="{html.escape(_STEP.format(step=1))}">&#9654;</button>'
        f'<output style="font-family:monospace;min-width:4em">{html.escape(labels[position])}</output></div>'
    )


def frame_grid_html(
    frames: Sequence[bytes], axes: Mapping[str, Sequence[Any]], start: Sequence[int] | None = None
) -> str:
    """A self-contained HTML viewer over PNG frames for every combination of several knobs.

    ``axes`` maps each knob's name to the labels of its values; ``frames`` holds one PNG per
    combination in row-major order (the last axis varies fastest), so with axes of sizes
    (n_1, ..., n_d) the frame for positions (i_1, ..., i_d) is number ((i_1 n_2 + i_2) n_3 + ...) + i_d.
    ``start`` gives each axis's initial position (default: all 0). Inline JS only; no kernel needed.
    """
    _check_frames(frames)
    if not axes:
        raise ValueError("axes is empty: give at least one knob name with its value labels")
    names = [str(name) for name in axes]
    labels = [[str(label) for label in axes[name]] for name in axes]
    shape = [len(axis) for axis in labels]
    if min(shape) == 0:
        raise ValueError(
            f"every axis needs at least one value; sizes are {dict(zip(names, shape))}"
        )
    if len(frames) != math.prod(shape):
        raise ValueError(
            f"got {len(frames)} frames for axes of sizes {shape}; they must match "
            f"(one frame per combination, {math.prod(shape)})"
        )
    start = [0] * len(shape) if start is None else list(start)
    if len(start) != len(shape) or any(
        isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n
        for i, n in zip(start, shape)
    ):
        raise ValueError(
            f"start={start!r} must give one position per axis, within the axis sizes {shape}"
        )
    shown = 0
    for position, size in zip(start, shape):
        shown = shown * size + position
    alts = [
        ", ".join(f"{n} = {v}" for n, v in zip(names, combo))
        for combo in itertools.product(*labels)
    ]
    images = "\n".join(
        f'<img class="sl-frame" alt="{html.escape(alt)}" '
        f'style="max-width:100%;height:auto;{"" if i == shown else "display:none;"}" '
        f'src="data:image/png;base64,{base64.b64encode(frame).decode()}">'
        for i, (frame, alt) in enumerate(zip(frames, alts))
    )
    rows = "".join(
        _axis_row(name, axis, position) for name, axis, position in zip(names, labels, start)
    )
    note = f'<div style="font-size:0.8em;opacity:0.7">{len(frames)} pre-rendered frames; no kernel needed</div>'
    return (
        f'<div class="sl-frame-slider" data-shape="{json.dumps(shape)}" '
        f'data-labels="{html.escape(json.dumps(labels))}">{rows}{note}\n{images}</div>'
    )


def frame_slider_html(
    frames: Sequence[bytes], labels: Sequence[str], name: str = "value", start: int = 0
) -> str:
    """A self-contained HTML slider over PNG frames for one knob (inline JS only; works without a kernel).

    ``frames`` are PNG bytes (see ``figure_png``), ``labels`` the knob value shown for each frame,
    ``name`` the knob's name and ``start`` the index of the frame shown first.
    """
    if len(frames) != len(labels):
        raise ValueError(f"got {len(frames)} frames but {len(labels)} labels; they must match")
    if (
        isinstance(start, bool)
        or not isinstance(start, int)
        or not 0 <= start < max(len(frames), 1)
    ):
        raise ValueError(f"start={start!r} must index one of the {len(frames)} frames")
    return frame_grid_html(frames, {name: labels}, [start])


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _label(value: Any) -> str:
    return (
        f"{value:g}"
        if _is_number(value) and not isinstance(value, numbers.Integral)
        else str(value)
    )


def _control(name: str, values: Sequence[Any], default: Any):
    import ipywidgets as widgets

    options = [(_label(v), v) for v in values]
    numeric = all(_is_number(v) for v in values)
    cls = widgets.SelectionSlider if numeric and len(values) > 1 else widgets.Dropdown
    extra = {"continuous_update": False} if cls is widgets.SelectionSlider else {}
    return cls(
        options=options,
        value=default,
        description=name,
        style={"description_width": "initial"},
        **extra,
    )


def _chosen_values(
    knobs: Mapping[str, Sequence[Any]],
    defaults: Mapping[str, Any] | None,
    sweep: str | Sequence[str] | None,
) -> dict[str, Any]:
    """Validate the knobs and return the starting value of each."""
    if not knobs:
        raise ValueError(
            "knobs is empty: give at least one knob, e.g. knobs={'sparsity': [0.5, 0.9]}"
        )
    for name, values in knobs.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"knob {name!r} must be a list of values, got {type(values).__name__}")
        if len(values) == 0:
            raise ValueError(f"knob {name!r} has no values")
        labels = [_label(v) for v in values]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"knob {name!r} has repeated values {labels}; each value must be distinct"
            )
    chosen = {name: values[0] for name, values in knobs.items()}
    for name, value in (defaults or {}).items():
        if name not in knobs:
            raise ValueError(
                f"defaults names {name!r}, which is not a knob; knobs are {sorted(knobs)}"
            )
        if value not in knobs[name]:
            raise ValueError(
                f"default {name}={value!r} is not among its values {list(knobs[name])}"
            )
        chosen[name] = value
    swept = [sweep] if isinstance(sweep, str) else list(sweep or [])
    unknown = [name for name in swept if name not in knobs]
    if unknown or len(set(swept)) != len(swept):
        raise ValueError(f"sweep={sweep!r} must name distinct knobs; knobs are {sorted(knobs)}")
    count = math.prod(len(knobs[name]) for name in swept)
    if count > MAX_FRAMES:
        raise ValueError(
            f"sweep={sweep!r} needs {count} frames, over MAX_FRAMES={MAX_FRAMES}; sweep fewer values"
        )
    return chosen


def _sweep_frames(
    plot: Callable[..., Figure],
    knobs: Mapping[str, Sequence[Any]],
    chosen: dict[str, Any],
    swept: list[str],
    default_png: bytes,
    dpi: int,
) -> str:
    """Render every combination of the swept knobs (others at their defaults) into a frame viewer."""
    frames = []
    for combo in itertools.product(*(knobs[name] for name in swept)):
        values = {**chosen, **dict(zip(swept, combo))}
        frames.append(default_png if values == chosen else figure_png(plot(**values), dpi))
    axes = {name: [_label(v) for v in knobs[name]] for name in swept}
    return frame_grid_html(frames, axes, [list(knobs[name]).index(chosen[name]) for name in swept])


def explore(
    plot: Callable[..., Figure],
    knobs: Mapping[str, Sequence[Any]],
    defaults: Mapping[str, Any] | None = None,
    sweep: str | Sequence[str] | None = None,
    dpi: int = 80,
) -> None:
    """Show ``plot`` with its default knob values, live controls in a kernel, and a frame slider.

    knobs: name → the allowed values (a slider for numbers, a menu otherwise).
    defaults: name → starting value (default: each knob's first value).
    sweep: a knob name, or a list of names for a small grid; every value (combination) is rendered
        once into a kernel-free frame slider for the static book (at most ``MAX_FRAMES`` frames).
    dpi: resolution of the rendered figures.
    """
    from IPython.display import Image, display

    if not callable(plot):
        raise TypeError(
            f"plot must be a function returning a matplotlib Figure, got {type(plot).__name__}"
        )
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 20 <= dpi <= 300:
        raise ValueError(f"dpi={dpi!r} must be an integer between 20 and 300")
    chosen = _chosen_values(knobs, defaults, sweep)
    live = _in_kernel()
    if live:
        import ipywidgets as widgets

        controls = {name: _control(name, values, chosen[name]) for name, values in knobs.items()}
        note = widgets.HTML(
            "<small>Live controls: they redraw the figure below while a kernel runs"
            + ("; without one, use the pre-rendered slider" if sweep else "")
            + ".</small>"
        )
        display(widgets.VBox([note, *controls.values()]))

    default_png = figure_png(plot(**chosen), dpi)
    if sweep is None:
        handle = display(Image(default_png), display_id=True)
    else:
        swept = [sweep] if isinstance(sweep, str) else list(sweep)
        slider = _sweep_frames(plot, knobs, chosen, swept, default_png, dpi)
        bundle = {"text/html": slider, "image/png": base64.b64encode(default_png).decode()}
        handle = display(bundle, raw=True, display_id=True)

    if live:

        def redraw(_change=None):
            handle.update(Image(figure_png(plot(**{n: c.value for n, c in controls.items()}), dpi)))

        for control in controls.values():
            control.observe(redraw, names="value")


__all__ = [
    "MAX_FRAMES",
    "MAX_FRAME_BYTES",
    "MAX_FRAME_PIXELS",
    "MAX_SLIDER_BYTES",
    "explore",
    "figure_png",
    "frame_grid_html",
    "frame_slider_html",
    "png_size",
]
