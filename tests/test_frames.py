"""sparsitylab.frames: PNG frames, their limits, and the kernel-free slider/grid HTML.

The viewer's inline JavaScript runs here in headless Chromium on a standalone page, and in every
chapter of the built book (tests/test_book.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import struct
import tempfile
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from sparsitylab import frames as viewer

CHROMIUM = Path("/usr/bin/chromium")


def tiny_png(width: int = 4, height: int = 3, padding: int = 0) -> bytes:
    """A valid PNG of the given size; ``padding`` adds an ancillary chunk to inflate its bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    extra = chunk(b"teXt", b"pad\x00" + b"x" * padding) if padding else b""
    return (
        viewer.PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + extra
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def line_plot(slope=1.0, colour="C0"):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, slope], color=colour)
    return fig


# ----------------------------------------------------------------------------- figure_png, png_size


def test_figure_png_renders_and_closes_the_figure():
    fig = line_plot()
    png = viewer.figure_png(fig, dpi=50)
    assert png.startswith(viewer.PNG_SIGNATURE)
    assert not plt.fignum_exists(fig.number)
    width, height = viewer.png_size(png)
    width2, height2 = viewer.png_size(viewer.figure_png(line_plot(), dpi=100))
    assert abs(width2 - 2 * width) <= 4 and abs(height2 - 2 * height) <= 4  # pixels scale with dpi


def test_figure_png_rejects_non_figures():
    with pytest.raises(TypeError, match="matplotlib Figure"):
        viewer.figure_png("not a figure")


def test_png_size_reads_the_header_and_rejects_other_bytes():
    assert viewer.png_size(tiny_png(7, 5)) == (7, 5)
    with pytest.raises(ValueError, match="not PNG"):
        viewer.png_size(b"GIF89a" + b"\x00" * 30)


# ----------------------------------------------------------------------------- frame_slider_html


def frames_in(html: str) -> list[tuple[bool, bytes]]:
    """(visible, png bytes) of each frame image in the slider HTML."""
    found = re.findall(
        r'<img class="sl-frame"[^>]*style="([^"]*)"[^>]*src="data:image/png;base64,([^"]+)"', html
    )
    return [("display:none" not in style, base64.b64decode(data)) for style, data in found]


def test_slider_holds_every_frame_and_shows_only_the_start():
    frames = [tiny_png(4 + i, 3) for i in range(5)]
    html = viewer.frame_slider_html(frames, ["a", "b", "c", "d", "e"], name="sparsity", start=2)
    shown = frames_in(html)
    assert [png for _, png in shown] == frames
    assert [visible for visible, _ in shown] == [False, False, True, False, False]
    assert 'max="4"' in html and 'value="2"' in html and "<output" in html and ">c</output>" in html
    labels = json.loads(re.search(r'data-labels="([^"]*)"', html).group(1).replace("&quot;", '"'))
    assert labels == [["a", "b", "c", "d", "e"]] and 'data-shape="[5]"' in html
    assert "<script" not in html and "http" not in html  # inline handlers only, nothing fetched


def test_slider_escapes_names_and_labels():
    html = viewer.frame_slider_html(
        [tiny_png(), tiny_png(5, 3)], ['<b>"x"</b>', "y&z"], name="<knob>"
    )
    assert "<knob>" not in html and "&lt;knob&gt;" in html
    assert "<b>" not in html and "y&amp;z" in html and 'alt="&lt;knob&gt; = y&amp;z"' in html


@pytest.mark.parametrize(
    "frames, labels, start, message",
    [
        ([], [], 0, "frames is empty"),
        ([tiny_png()], ["a", "b"], 0, "must match"),
        (
            [tiny_png()] * (viewer.MAX_FRAMES + 1),
            ["x"] * (viewer.MAX_FRAMES + 1),
            0,
            "MAX_FRAMES",
        ),
        ([tiny_png(), tiny_png()], ["a", "b"], 2, "start=2"),
        ([tiny_png(), tiny_png()], ["a", "b"], -1, "start=-1"),
        ([b"not a png" * 5], ["a"], 0, "not PNG"),
        ([tiny_png(viewer.MAX_FRAME_PIXELS + 1, 2)], ["a"], 0, "MAX_FRAME_PIXELS"),
        ([tiny_png(padding=viewer.MAX_FRAME_BYTES)], ["a"], 0, "MAX_FRAME_BYTES"),
        (
            [tiny_png(padding=viewer.MAX_FRAME_BYTES - 1000)]
            * (viewer.MAX_SLIDER_BYTES // viewer.MAX_FRAME_BYTES + 1),
            ["a"] * (viewer.MAX_SLIDER_BYTES // viewer.MAX_FRAME_BYTES + 1),
            0,
            "MAX_SLIDER_BYTES",
        ),
    ],
)
def test_slider_rejects_bad_frames(frames, labels, start, message):
    with pytest.raises(ValueError, match=message):
        viewer.frame_slider_html(frames, labels, "k", start)


def test_grid_shows_the_row_major_frame_of_the_start_positions():
    frames = [tiny_png(2 + i, 2) for i in range(6)]
    html = viewer.frame_grid_html(
        frames, {"kind": ["filter", "channel"], "t": [0.1, 0.2, 0.3]}, start=[1, 2]
    )
    assert [visible for visible, _ in frames_in(html)] == [False] * 5 + [
        True
    ]  # (1, 2) -> 1 * 3 + 2
    assert (
        html.count('type="range"') == 2 and ">channel</output>" in html and ">0.3</output>" in html
    )
    assert 'data-shape="[2, 3]"' in html and 'alt="kind = channel, t = 0.3"' in html


@pytest.mark.parametrize(
    "axes, n_frames, start, message",
    [
        ({}, 1, None, "axes is empty"),
        ({"a": ["x", "y"], "b": ["u", "v"]}, 3, None, "must match"),
        ({"a": ["x", "y"], "b": ["u", "v"]}, 4, [0], "one position per axis"),
        ({"a": ["x", "y"], "b": ["u", "v"]}, 4, [0, 2], "one position per axis"),
        ({"a": ["x"], "b": []}, 1, None, "at least one value"),
    ],
)
def test_grid_rejects_bad_axes(axes, n_frames, start, message):
    with pytest.raises(ValueError, match=message):
        viewer.frame_grid_html([tiny_png()] * n_frames, axes, start)


@contextlib.contextmanager
def _browser_page(tmp_path, body: str):
    """A headless Chromium page showing ``body``."""
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "slider.html"
    page_file.write_text(f"<html><body>{body}</body></html>")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = context.new_page()
        page.goto(page_file.as_uri())
        yield page
        context.close()


_STATE = """s => ({
  shown: Array.from(s.querySelectorAll('img.sl-frame')).map(i => i.style.display !== 'none'),
  labels: Array.from(s.querySelectorAll('output')).map(o => o.textContent)})"""


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM}")
def test_grid_steps_in_a_browser(tmp_path):
    """Each axis's slider moves the grid along that axis only."""
    frames = [
        viewer.figure_png(line_plot(slope, colour), dpi=30)
        for colour in ("C0", "C1")
        for slope in (1, 2, 3)
    ]
    html = viewer.frame_grid_html(
        frames, {"colour": ["C0", "C1"], "slope": ["1", "2", "3"]}, start=[0, 1]
    )
    with _browser_page(tmp_path, html) as page:
        slider = page.query_selector(".sl-frame-slider")
        colour_range, slope_range = slider.query_selector_all("input[type=range]")

        def shown():
            return slider.evaluate(_STATE)

        assert shown() == {"shown": [i == 1 for i in range(6)], "labels": ["C0", "2"]}
        colour_range.press("ArrowRight")
        assert shown() == {"shown": [i == 4 for i in range(6)], "labels": ["C1", "2"]}
        slope_range.press("ArrowLeft")
        assert shown() == {"shown": [i == 3 for i in range(6)], "labels": ["C1", "1"]}


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM}")
def test_slider_steps_in_a_browser(tmp_path):
    """The inline JavaScript: arrow keys and buttons show exactly the selected frame and its
    label."""
    frames = [viewer.figure_png(line_plot(slope), dpi=40) for slope in (1, 2, 3)]
    with _browser_page(
        tmp_path, viewer.frame_slider_html(frames, ["1", "2", "3"], "slope", 1)
    ) as page:
        slider = page.query_selector(".sl-frame-slider")

        def state():
            return slider.evaluate(_STATE)

        assert state() == {"shown": [False, True, False], "labels": ["2"]}
        slider.query_selector("input[type=range]").press("ArrowRight")
        assert state() == {"shown": [False, False, True], "labels": ["3"]}
        slider.query_selector(".sl-next").click()  # already at the end: stays
        assert state() == {"shown": [False, False, True], "labels": ["3"]}
        slider.query_selector(".sl-prev").click()
        slider.query_selector(".sl-prev").click()
        assert state() == {"shown": [True, False, False], "labels": ["1"]}
