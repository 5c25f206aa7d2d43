"""sparsitylab.widgets.explore: what it displays with and without a kernel, and its argument checks.

The frame viewer it emits is tested in tests/test_frames.py and, in every chapter, by
tests/test_book.py.
"""

from __future__ import annotations

import base64

import matplotlib

matplotlib.use("Agg")
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from test_frames import frames_in, line_plot

from sparsitylab import widgets


@pytest.fixture()
def shell():
    return InteractiveShell.instance()


# ----------------------------------------------------------------------------- explore


class CountingPlot:
    def __init__(self):
        self.calls = []

    def __call__(self, **values):
        self.calls.append(values)
        return line_plot(**values)


def test_explore_without_sweep_shows_one_default_figure(shell):
    plot = CountingPlot()
    with capture_output() as captured:
        widgets.explore(
            plot, {"slope": [1.0, 2.0], "colour": ["C0", "C1"]}, defaults={"colour": "C1"}
        )
    assert plot.calls == [{"slope": 1.0, "colour": "C1"}]
    assert [sorted(o.data) for o in captured.outputs] == [["image/png", "text/plain"]]


def test_explore_with_sweep_shows_a_slider_over_every_value(shell):
    plot = CountingPlot()
    with capture_output() as captured:
        widgets.explore(
            plot,
            {"slope": [1.0, 2.0, 3.0], "colour": ["C0", "C1"]},
            defaults={"slope": 2.0},
            sweep="slope",
        )
    assert sorted(c["slope"] for c in plot.calls) == [
        1.0,
        2.0,
        3.0,
    ]  # the default frame is drawn once
    assert all(c["colour"] == "C0" for c in plot.calls)
    (output,) = captured.outputs
    shown = frames_in(output.data["text/html"])
    assert [visible for visible, _ in shown] == [False, True, False]
    assert (
        base64.b64decode(output.data["image/png"]) == shown[1][1]
    )  # PNG fallback = the default frame


def test_explore_sweeps_a_grid_of_two_knobs(shell):
    plot = CountingPlot()
    with capture_output() as captured:
        widgets.explore(
            plot,
            {"slope": [1.0, 2.0, 3.0], "colour": ["C0", "C1"]},
            defaults={"slope": 3.0, "colour": "C1"},
            sweep=["colour", "slope"],
        )
    assert len(plot.calls) == 6 and plot.calls[0] == {
        "slope": 3.0,
        "colour": "C1",
    }  # default drawn once
    assert {(c["colour"], c["slope"]) for c in plot.calls} == {
        (c, s) for c in ("C0", "C1") for s in (1.0, 2.0, 3.0)
    }
    (output,) = captured.outputs
    shown = frames_in(output.data["text/html"])
    assert [visible for visible, _ in shown] == [
        i == 5 for i in range(6)
    ]  # colour C1 (1), slope 3.0 (2)
    assert base64.b64decode(output.data["image/png"]) == shown[5][1]


def test_explore_live_controls_redraw_the_figure(shell, monkeypatch):
    import ipywidgets
    from ipywidgets.widgets.widget import _instances

    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    plot = CountingPlot()
    with capture_output() as captured:
        widgets.explore(plot, {"slope": [1.0, 2.0], "colour": ["C0", "C1"]}, sweep="slope")
    view = captured.outputs[0].data["application/vnd.jupyter.widget-view+json"]
    box = _instances[view["model_id"]]
    slope, colour = box.children[1:]
    assert isinstance(slope, ipywidgets.SelectionSlider) and isinstance(colour, ipywidgets.Dropdown)
    with capture_output():
        colour.value = "C1"
    assert plot.calls[-1] == {"slope": 1.0, "colour": "C1"}


@pytest.mark.parametrize(
    "knobs, kwargs, error, message",
    [
        ({}, {}, ValueError, "knobs is empty"),
        ({"slope": []}, {}, ValueError, "has no values"),
        ({"slope": 1.0}, {}, TypeError, "must be a list"),
        ({"slope": "abc"}, {}, TypeError, "must be a list"),
        ({"slope": [1.0, 1.0]}, {}, ValueError, "repeated values"),
        ({"slope": [1.0, 2.0]}, {"defaults": {"slope": 3.0}}, ValueError, "not among its values"),
        ({"slope": [1.0, 2.0]}, {"defaults": {"angle": 1.0}}, ValueError, "not a knob"),
        (
            {"slope": [1.0, 2.0]},
            {"sweep": "angle"},
            ValueError,
            "sweep='angle' must name distinct knobs",
        ),
        (
            {"slope": [1.0, 2.0]},
            {"sweep": ["slope", "slope"]},
            ValueError,
            "must name distinct knobs",
        ),
        (
            {"slope": list(range(widgets.MAX_FRAMES + 1))},
            {"sweep": "slope"},
            ValueError,
            "MAX_FRAMES",
        ),
        (
            {"a": list(range(7)), "b": list(range(6))},
            {"sweep": ["a", "b"]},
            ValueError,
            "needs 42 frames",
        ),
        ({"slope": [1.0, 2.0]}, {"dpi": 5}, ValueError, "dpi=5"),
        ({"slope": [1.0, 2.0]}, {"dpi": 80.0}, TypeError, "dpi=80.0"),
    ],
)
def test_explore_rejects_bad_arguments_before_plotting(shell, knobs, kwargs, error, message):
    plot = CountingPlot()
    with pytest.raises(error, match=message):
        widgets.explore(plot, knobs, **kwargs)
    assert plot.calls == []


def test_explore_rejects_a_plot_that_returns_no_figure(shell):
    with pytest.raises(TypeError, match="matplotlib Figure, got NoneType"):
        widgets.explore(lambda slope: None, {"slope": [1.0]})
    with pytest.raises(TypeError, match="plot must be a function"):
        widgets.explore("plot", {"slope": [1.0]})


def test_explore_accepts_arrays_ranges_and_dict_views_as_knob_values(shell):
    import numpy as np
    import torch

    plot = CountingPlot()
    with capture_output():
        widgets.explore(
            plot,
            {"slope": np.array([1.0, 2.0]), "colour": {"C0": 0, "C1": 1}.keys()},
            sweep="slope",
        )
        widgets.explore(
            lambda slope: line_plot(slope), {"slope": torch.tensor([1.0, 2.0])}, sweep="slope"
        )
        widgets.explore(lambda slope: line_plot(slope), {"slope": range(1, 4)}, sweep="slope")
    assert plot.calls[0] == {"slope": 1.0, "colour": "C0"} and type(plot.calls[0]["slope"]) is float
    with pytest.raises(TypeError, match="flat list"):
        widgets.explore(plot, {"slope": np.ones((2, 2))})
    with pytest.raises(TypeError, match="knobs must map names"):
        widgets.explore(plot, [("slope", [1.0])])


def test_numeric_knobs_become_sliders_with_readable_labels():
    import numpy as np

    slider = widgets._control("sparsity", [np.float64(0.5), np.float64(0.75)], np.float64(0.75))
    assert slider.__class__.__name__ == "SelectionSlider" and slider.options[0][0] == "0.5"
    menu = widgets._control("layer", ["fc1", "fc2"], "fc2")
    assert menu.__class__.__name__ == "Dropdown" and menu.value == "fc2"


def test_mode_banner_warns_in_quick_mode_only(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setenv("SPARSITYLAB_QUICK", "0")
    widgets.mode_banner()
    assert shown == []
    monkeypatch.setenv("SPARSITYLAB_QUICK", "1")
    widgets.mode_banner()
    (banner,) = shown
    assert "Quick mode" in banner.data and "SPARSITYLAB_QUICK" in banner.data
