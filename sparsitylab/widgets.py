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

Frames are limited in number (``MAX_FRAMES``), pixels (``MAX_FRAME_PIXELS`` per side) and bytes
(``MAX_FRAME_BYTES`` each, ``MAX_SLIDER_BYTES`` in all) so that a page stays light; exceeding a limit
raises ``ValueError`` with the remedy (sweep fewer values, lower ``dpi`` or the figure size).
"""

from __future__ import annotations

import base64
import html
import io
import json
import numbers
import struct
from typing import Any, Callable, Mapping, Sequence

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
        raise TypeError(f"expected a matplotlib Figure, got {type(fig).__name__}; the plot function must return one")
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


def _check_frames(frames: Sequence[bytes], labels: Sequence[str], start: int) -> None:
    if not frames:
        raise ValueError("frames is empty: a frame slider needs at least one frame")
    if len(frames) != len(labels):
        raise ValueError(f"got {len(frames)} frames but {len(labels)} labels; they must match")
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames exceed MAX_FRAMES={MAX_FRAMES}; sweep fewer values")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(frames):
        raise ValueError(f"start={start!r} must index one of the {len(frames)} frames (0..{len(frames) - 1})")
    oversized = [i for i, f in enumerate(frames) if max(png_size(f)) > MAX_FRAME_PIXELS]
    if oversized:
        raise ValueError(f"frames {oversized} are wider or taller than MAX_FRAME_PIXELS={MAX_FRAME_PIXELS}; "
                         "lower the dpi or the figure size")
    too_big = [i for i, f in enumerate(frames) if len(f) > MAX_FRAME_BYTES]
    if too_big:
        raise ValueError(f"frames {too_big} exceed MAX_FRAME_BYTES={MAX_FRAME_BYTES}; lower the dpi or the figure size")
    total = sum(len(f) for f in frames)
    if total > MAX_SLIDER_BYTES:
        raise ValueError(f"{len(frames)} frames take {total} bytes, over MAX_SLIDER_BYTES={MAX_SLIDER_BYTES}; "
                         "sweep fewer values or lower the dpi")


# Inline handlers only (no <script>, no ids): every slider on a page works on its own, and the HTML
# survives notebook viewers and the book theme. Buttons step the range, which fires the same update.
_SHOW = ("var r=this.closest('.sl-frame-slider'),k=+this.value;"
         "r.querySelectorAll('img.sl-frame').forEach(function(im,i){im.style.display=(i===k)?'':'none';});"
         "r.querySelector('output').textContent=JSON.parse(r.dataset.labels)[k];")
_STEP = ("var s=this.parentNode.querySelector('input[type=range]');"
         "s.value=+s.value+({step});s.dispatchEvent(new Event('input'));")
_BUTTON_STYLE = "font:inherit;padding:0 0.5em;margin:0 0.2em;cursor:pointer"


def frame_slider_html(frames: Sequence[bytes], labels: Sequence[str], name: str = "value", start: int = 0) -> str:
    """A self-contained HTML slider over PNG frames (inline JS only; works without a kernel).

    ``frames`` are PNG bytes (see ``figure_png``), ``labels`` the knob value shown for each frame,
    ``name`` the knob's name and ``start`` the index of the frame shown first.
    """
    _check_frames(frames, labels, start)
    esc_name = html.escape(str(name))
    text_labels = [str(label) for label in labels]
    images = "\n".join(
        f'<img class="sl-frame" alt="{esc_name} = {html.escape(label)}" '
        f'style="max-width:100%;height:auto;{"" if i == start else "display:none;"}" '
        f'src="data:image/png;base64,{base64.b64encode(frame).decode()}">'
        for i, (frame, label) in enumerate(zip(frames, text_labels)))
    controls = (
        f'<div class="sl-frame-controls" style="display:flex;align-items:center;flex-wrap:wrap;gap:0.3em;'
        f'font-size:0.9em;margin:0.3em 0">'
        f'<span style="font-weight:600">{esc_name}</span>'
        f'<button type="button" class="sl-prev" aria-label="previous {esc_name}" style="{_BUTTON_STYLE}" '
        f'onclick="{html.escape(_STEP.format(step=-1))}">&#9664;</button>'
        f'<input type="range" min="0" max="{len(frames) - 1}" step="1" value="{start}" aria-label="{esc_name}" '
        f'style="width:16em;max-width:60%;vertical-align:middle" oninput="{html.escape(_SHOW)}">'
        f'<button type="button" class="sl-next" aria-label="next {esc_name}" style="{_BUTTON_STYLE}" '
        f'onclick="{html.escape(_STEP.format(step=1))}">&#9654;</button>'
        f'<output style="font-family:monospace;min-width:4em">{html.escape(text_labels[start])}</output>'
        f'<span style="opacity:0.7">({len(frames)} pre-rendered frames; no kernel needed)</span></div>')
    return (f'<div class="sl-frame-slider" data-labels="{html.escape(json.dumps(text_labels))}">'
            f'{controls}\n{images}</div>')


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
    return f"{value:g}" if _is_number(value) and not isinstance(value, numbers.Integral) else str(value)


def _control(name: str, values: Sequence[Any], default: Any):
    import ipywidgets as widgets

    options = [(_label(v), v) for v in values]
    numeric = all(_is_number(v) for v in values)
    cls = widgets.SelectionSlider if numeric and len(values) > 1 else widgets.Dropdown
    extra = {"continuous_update": False} if cls is widgets.SelectionSlider else {}
    return cls(options=options, value=default, description=name, style={"description_width": "initial"}, **extra)


def _chosen_values(knobs: Mapping[str, Sequence[Any]], defaults: Mapping[str, Any] | None,
                   sweep: str | None) -> dict[str, Any]:
    """Validate the knobs and return the starting value of each."""
    if not knobs:
        raise ValueError("knobs is empty: give at least one knob, e.g. knobs={'sparsity': [0.5, 0.9]}")
    for name, values in knobs.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"knob {name!r} must be a list of values, got {type(values).__name__}")
        if len(values) == 0:
            raise ValueError(f"knob {name!r} has no values")
        labels = [_label(v) for v in values]
        if len(set(labels)) != len(labels):
            raise ValueError(f"knob {name!r} has repeated values {labels}; each value must be distinct")
    chosen = {name: values[0] for name, values in knobs.items()}
    for name, value in (defaults or {}).items():
        if name not in knobs:
            raise ValueError(f"defaults names {name!r}, which is not a knob; knobs are {sorted(knobs)}")
        if value not in knobs[name]:
            raise ValueError(f"default {name}={value!r} is not among its values {list(knobs[name])}")
        chosen[name] = value
    if sweep is not None:
        if sweep not in knobs:
            raise ValueError(f"sweep={sweep!r} is not a knob; knobs are {sorted(knobs)}")
        if len(knobs[sweep]) > MAX_FRAMES:
            raise ValueError(f"sweep={sweep!r} has {len(knobs[sweep])} values, over MAX_FRAMES={MAX_FRAMES}; "
                             "sweep fewer values")
    return chosen


def explore(plot: Callable[..., Figure], knobs: Mapping[str, Sequence[Any]], defaults: Mapping[str, Any] | None = None,
            sweep: str | None = None, dpi: int = 80) -> None:
    """Show ``plot`` with its default knob values, live controls in a kernel, and a frame slider.

    knobs: name → the allowed values (a slider for numbers, a menu otherwise).
    defaults: name → starting value (default: each knob's first value).
    sweep: a knob name; its values become a kernel-free frame slider for the static book.
    dpi: resolution of the rendered figures.
    """
    from IPython.display import Image, display

    if not callable(plot):
        raise TypeError(f"plot must be a function returning a matplotlib Figure, got {type(plot).__name__}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 20 <= dpi <= 300:
        raise ValueError(f"dpi={dpi!r} must be an integer between 20 and 300")
    chosen = _chosen_values(knobs, defaults, sweep)
    live = _in_kernel()
    if live:
        import ipywidgets as widgets

        controls = {name: _control(name, values, chosen[name]) for name, values in knobs.items()}
        note = widgets.HTML("<small>Live controls: they redraw the figure below while a kernel runs"
                            + ("; without one, use the pre-rendered slider" if sweep else "") + ".</small>")
        display(widgets.VBox([note, *controls.values()]))

    default_png = figure_png(plot(**chosen), dpi)
    if sweep is None:
        handle = display(Image(default_png), display_id=True)
    else:
        values = list(knobs[sweep])
        frames = [default_png if v == chosen[sweep] else figure_png(plot(**{**chosen, sweep: v}), dpi)
                  for v in values]
        slider = frame_slider_html(frames, [_label(v) for v in values], sweep, values.index(chosen[sweep]))
        bundle = {"text/html": slider, "image/png": base64.b64encode(default_png).decode()}
        handle = display(bundle, raw=True, display_id=True)

    if live:
        def redraw(_change=None):
            handle.update(Image(figure_png(plot(**{n: c.value for n, c in controls.items()}), dpi)))

        for control in controls.values():
            control.observe(redraw, names="value")


__all__ = ["explore", "frame_slider_html", "figure_png", "png_size", "MAX_FRAMES", "MAX_FRAME_PIXELS",
           "MAX_FRAME_BYTES", "MAX_SLIDER_BYTES"]
