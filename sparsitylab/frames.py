"""Pre-rendered figures for the static book: PNG frames and a kernel-free HTML viewer over them.

``frame_slider_html`` shows one knob's frames behind a range slider; ``frame_grid_html`` shows a
small grid (every combination of several knobs) behind one slider per knob. The HTML is
self-contained: frames are inline PNG data, the controls use inline event handlers only (no
``<script>``, no ids, no CDN), so it works in the HTML book, in JupyterLab and offline, and several
viewers can share a page. Frames are limited in number (``MAX_FRAMES``), pixels
(``MAX_FRAME_PIXELS`` per side) and bytes (``MAX_FRAME_BYTES`` each, ``MAX_SLIDER_BYTES`` in all) so
a page stays light; exceeding a limit raises ``ValueError`` with the remedy. Used by
``sparsitylab.widgets.explore``.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from ._checks import check_int

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
            f"expected a matplotlib Figure, got {type(fig).__name__}; the plot function must "
            f"return one"
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
            f"frames {too_big} exceed MAX_FRAME_BYTES={MAX_FRAME_BYTES}; lower the dpi or the "
            f"figure size"
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
        f'<div class="sl-frame-controls" style="{_ROW_STYLE}"><span '
        f'style="font-weight:600;min-width:5em">{esc}</span>'
        f'<button type="button" class="sl-prev" aria-label="previous {esc}" '
        f'style="{_BUTTON_STYLE}" '
        f'onclick="{html.escape(_STEP.format(step=-1))}">&#9664;</button>'
        f'<input type="range" min="0" max="{len(labels) - 1}" step="1" value="{position}" '
        f'aria-label="{esc}" '
        f'style="width:16em;max-width:50%;vertical-align:middle" oninput="{html.escape(_SHOW)}">'
        f'<button type="button" class="sl-next" aria-label="next {esc}" style="{_BUTTON_STYLE}" '
        f'onclick="{html.escape(_STEP.format(step=1))}">&#9654;</button>'
        f"<output "
        f'style="font-family:monospace;min-width:4em">{html.escape(labels[position])}</output></div>'
    )


def frame_grid_html(
    frames: Sequence[bytes], axes: Mapping[str, Sequence[Any]], start: Sequence[int] | None = None
) -> str:
    """A self-contained HTML viewer over PNG frames for every combination of several knobs.

    ``axes`` maps each knob's name to the labels of its values; ``frames`` holds one PNG per
    combination in row-major order (the last axis varies fastest), so with axes of sizes (n_1, ...,
    n_d) the frame for positions (i_1, ..., i_d) is number ((i_1 n_2 + i_2) n_3 + ...) + i_d.
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
    note = (
        f'<div style="font-size:0.8em;opacity:0.7">{len(frames)} pre-rendered frames; '
        "no kernel needed</div>"
    )
    return (
        f'<div class="sl-frame-slider" data-shape="{json.dumps(shape)}" '
        f'data-labels="{html.escape(json.dumps(labels))}">{rows}{note}\n{images}</div>'
    )


def frame_slider_html(
    frames: Sequence[bytes], labels: Sequence[str], name: str = "value", start: int = 0
) -> str:
    """A self-contained HTML slider over PNG frames for one knob (inline JS only; works without a
    kernel).

    ``frames`` are PNG bytes (see ``figure_png``), ``labels`` the knob value shown for each frame,
    ``name`` the knob's name and ``start`` the index of the frame shown first.
    """
    if len(frames) != len(labels):
        raise ValueError(f"got {len(frames)} frames but {len(labels)} labels; they must match")
    check_int(start, "start", 0, max(len(frames) - 1, 0))  # the frame shown first
    return frame_grid_html(frames, {name: labels}, [start])


__all__ = [
    "MAX_FRAMES",
    "MAX_FRAME_BYTES",
    "MAX_FRAME_PIXELS",
    "MAX_SLIDER_BYTES",
    "figure_png",
    "frame_grid_html",
    "frame_slider_html",
    "png_size",
]
