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

The frames and their HTML viewer live in ``sparsitylab.frames`` (limits: at most ``MAX_FRAMES``
frames, with pixel and byte caps); exceeding a limit raises ``ValueError`` with the remedy.
"""

from __future__ import annotations

import base64
import itertools
import math
import numbers
from collections.abc import Callable, KeysView, Mapping, Sequence, ValuesView
from typing import Any

from matplotlib.figure import Figure

from . import modes
from ._checks import check_int
from .frames import (
    MAX_FRAME_BYTES,
    MAX_FRAME_PIXELS,
    MAX_FRAMES,
    MAX_SLIDER_BYTES,
    figure_png,
    frame_grid_html,
    frame_slider_html,
    png_size,
)


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


def _knob_values(name: str, values: Any) -> list[Any]:
    """A knob's values as a list: a list/tuple/range, a dict view, or a 1-D NumPy array or
    tensor."""
    if hasattr(values, "tolist") and not isinstance(values, (str, bytes)):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, KeysView, ValuesView)):
        raise TypeError(f"knob {name!r} must be a list of values, got {type(values).__name__}")
    values = list(values)
    if any(isinstance(v, list) for v in values):
        raise TypeError(f"knob {name!r} must be a flat list of values, got nested lists")
    return values


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
            f"sweep={sweep!r} needs {count} frames, over MAX_FRAMES={MAX_FRAMES}; sweep fewer "
            f"values"
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
    """Render every combination of the swept knobs (others at their defaults) into a frame
    viewer."""
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
    check_int(dpi, "dpi", 20, 300)
    if not isinstance(knobs, Mapping):
        raise TypeError(f"knobs must map names to lists of values, got {type(knobs).__name__}")
    knobs = {name: _knob_values(name, values) for name, values in knobs.items()}
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


QUICK_BANNER = (
    '<div class="admonition warning"><p class="admonition-title">Quick mode</p><p>This chapter '
    "ran with <code>SPARSITYLAB_QUICK=1</code>: tiny budgets (fewer images, epochs, seeds and "
    "timing rounds) so that it finishes in about two minutes. Every number below, and every "
    "sentence built from one, describes those tiny runs: rankings and gaps can differ from the "
    "full-mode book, and a claim the full runs support may not hold here. Unset "
    "<code>SPARSITYLAB_QUICK</code> to reproduce the book.</p></div>"
)


def mode_banner() -> None:
    """Display a warning box at the top of a chapter run in quick mode (nothing in full mode), so
    a student steered to quick mode does not read a quick number as the book's."""
    if modes.is_quick():
        from IPython.display import HTML, display

        display(HTML(QUICK_BANNER))


__all__ = [
    "QUICK_BANNER",
    "MAX_FRAMES",
    "MAX_FRAME_BYTES",
    "MAX_FRAME_PIXELS",
    "MAX_SLIDER_BYTES",
    "explore",
    "figure_png",
    "frame_grid_html",
    "frame_slider_html",
    "mode_banner",
    "png_size",
]
