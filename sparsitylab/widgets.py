"""Knobs for every chapter: live ipywidgets in a kernel, a static default everywhere, and a
kernel-free frame slider for the HTML book.

One call does all three::

    explore(plot_histogram, knobs={"sparsity": [0.5, 0.7, 0.9], "layer": ["fc1", "fc2"]},
            sweep="sparsity")

``plot(**values)`` must return a new matplotlib Figure. The helper

1. always draws the default values once and displays the figure as an ordinary output
   (so nbval and the HTML book see a result);
2. in a live Jupyter kernel, shows one control per knob; changing one redraws that same
   output in place (``display_id``), so there is only ever one figure;
3. with ``sweep="<knob>"``, draws every value of that knob once (other knobs at their defaults)
   and emits a self-contained HTML/JS slider over the pre-rendered frames: it needs no kernel,
   no CDN and no global JavaScript, so it keeps working inside the static book.
"""

from __future__ import annotations

import base64
import html
import io
import json
import uuid
from typing import Any, Callable, Mapping, Sequence


from matplotlib.figure import Figure

MAX_FRAMES = 40
MAX_FRAME_BYTES = 400_000


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render a figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def frame_slider_html(frames: Sequence[bytes], labels: Sequence[str], name: str = "value", start: int = 0) -> str:
    """A self-contained HTML slider over PNG frames (inline JS only; works without a kernel).

    ``frames`` are PNG bytes, ``labels`` the knob value shown for each frame.
    """
    if not frames:
        raise ValueError("frames is empty: a frame slider needs at least one frame")
    if len(frames) != len(labels):
        raise ValueError(f"got {len(frames)} frames but {len(labels)} labels; they must match")
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames exceed MAX_FRAMES={MAX_FRAMES}; sweep fewer values")
    too_big = [i for i, f in enumerate(frames) if len(f) > MAX_FRAME_BYTES]
    if too_big:
        raise ValueError(f"frames {too_big} exceed {MAX_FRAME_BYTES} bytes; lower the dpi or the figure size")
    if not 0 <= start < len(frames):
        raise ValueError(f"start={start} must index one of the {len(frames)} frames")
    uid = "sl-frames-" + uuid.uuid4().hex[:8]
    images = "\n".join(
        f'<img class="sl-frame" alt="{html.escape(name)} = {html.escape(str(lab))}" '
        f'style="max-width:100%;{"" if i == start else "display:none;"}" '
        f'src="data:image/png;base64,{base64.b64encode(f).decode()}">'
        for i, (f, lab) in enumerate(zip(frames, labels)))
    on_input = ("var r=this.closest('.sl-frame-slider');"
                "r.querySelectorAll('img.sl-frame').forEach(function(im,i){im.style.display=(i==this.value)?'':'none';},this);"
                "r.querySelector('output').textContent=JSON.parse(r.dataset.labels)[this.value];")
    return (
        f'<div class="sl-frame-slider" id="{uid}" data-labels="{html.escape(json.dumps([str(x) for x in labels]))}">'
        f'<label style="font-family:sans-serif;font-size:0.9em">{html.escape(name)} '
        f'<input type="range" min="0" max="{len(frames) - 1}" step="1" value="{start}" '
        f'aria-label="{html.escape(name)}" style="vertical-align:middle;width:16em" oninput="{html.escape(on_input)}"> '
        f'<output>{html.escape(str(labels[start]))}</output></label>\n{images}</div>')


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _control(name: str, values: Sequence[Any], default: Any):
    import ipywidgets as widgets

    options = [(_label(v), v) for v in values]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    cls = widgets.SelectionSlider if numeric and len(values) > 1 else widgets.Dropdown
    extra = {"continuous_update": False} if cls is widgets.SelectionSlider else {}
    return cls(options=options, value=default, description=name, style={"description_width": "initial"}, **extra)


def explore(plot: Callable[..., Figure], knobs: Mapping[str, Sequence[Any]], defaults: Mapping[str, Any] | None = None,
            sweep: str | None = None, dpi: int = 80) -> None:
    """Show ``plot`` with its default knob values, live controls in a kernel, and a frame slider.

    knobs: name → the allowed values (a slider for numbers, a menu otherwise).
    defaults: name → starting value (default: each knob's first value).
    sweep: a knob name; its values become a kernel-free frame slider for the static book.
    """
    from IPython.display import HTML, Image, display

    if not knobs:
        raise ValueError("knobs is empty: give at least one knob, e.g. knobs={'sparsity': [0.5, 0.9]}")
    for name, values in knobs.items():
        if len(values) == 0:
            raise ValueError(f"knob {name!r} has no values")
    chosen = {name: values[0] for name, values in knobs.items()}
    for name, value in (defaults or {}).items():
        if name not in knobs:
            raise ValueError(f"defaults names {name!r}, which is not a knob; knobs are {sorted(knobs)}")
        if value not in knobs[name]:
            raise ValueError(f"default {name}={value!r} is not among its values {list(knobs[name])}")
        chosen[name] = value
    if sweep is not None and sweep not in knobs:
        raise ValueError(f"sweep={sweep!r} is not a knob; knobs are {sorted(knobs)}")

    if _in_kernel():
        controls = {name: _control(name, values, chosen[name]) for name, values in knobs.items()}
        import ipywidgets as widgets

        note = widgets.HTML("<small>Live controls (need a running kernel"
                            + ("; in the static book use the frame slider below" if sweep else "") + ")</small>")
        display(widgets.VBox([note, *controls.values()]))
    default_png = figure_png(plot(**chosen), dpi)
    handle = display(Image(default_png), display_id=True)
    if _in_kernel():
        def redraw(_change=None):
            handle.update(Image(figure_png(plot(**{n: c.value for n, c in controls.items()}), dpi)))

        for control in controls.values():
            control.observe(redraw, names="value")

    if sweep is not None:
        values = list(knobs[sweep])
        frames = [default_png if v == chosen[sweep] else figure_png(plot(**{**chosen, sweep: v}), dpi)
                  for v in values]
        display(HTML(frame_slider_html(frames, [_label(v) for v in values], sweep, values.index(chosen[sweep]))))


__all__ = ["explore", "frame_slider_html", "figure_png", "MAX_FRAMES"]
