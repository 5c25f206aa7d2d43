"""The book: it builds with warnings as errors (quick mode), and every page works in a real browser.

One quick-mode build per session (module fixture) into ``_build_test/`` feeds both tests. The
browser test opens every page of the table of contents in headless Chromium with every
non-``file://`` request blocked, and checks: no console errors or failed loads, MathJax rendered (no
raw ``\\(``, and no ``$…$`` or ``\\command`` left untypeset in the prose), every image loaded, every
frame slider steps to a different frame, stored ipywidgets rendered, and the download and launch
buttons present. Screenshots go to ``screenshots/`` (gitignored), with the list of pages checked in
``screenshots/pages_checked.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "_build_test"
SCREENSHOTS = ROOT / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LAUNCH_SERVICES = {"colab_url": "Colab", "binderhub_url": "Binder", "jupyterhub_url": "JupyterHub"}


@dataclass
class Build:
    returncode: int
    log: str
    html: Path
    seconds: float


def _vendor_is_current() -> bool:
    """book/_vendor holds exactly the versions pinned in scripts/vendor/package.json."""
    pinned = json.loads((ROOT / "scripts/vendor/package.json").read_text())["dependencies"]
    stamp = ROOT / "book/_vendor/VERSIONS"
    return stamp.is_file() and stamp.read_text().split() == [f"{n}@{v}" for n, v in pinned.items()]


def build_book(source: Path, output: Path) -> Build:
    """``jupyter-book build -W -n --keep-going`` in quick mode, after vendoring the offline
    JavaScript."""
    if not _vendor_is_current():
        subprocess.run(["bash", "scripts/vendor_assets.sh"], cwd=ROOT, check=True)
    shutil.rmtree(output, ignore_errors=True)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    start = time.perf_counter()
    command = [str(jupyter_book), "build", str(source), "-W", "-n", "--keep-going"]
    proc = subprocess.run(
        [*command, "--path-output", str(output)],
        check=False,
        env={**os.environ, "SPARSITYLAB_QUICK": "1"},
        capture_output=True,
        text=True,
    )
    log = proc.stdout + proc.stderr
    output.mkdir(parents=True, exist_ok=True)
    (output / "build.log").write_text(log)
    return Build(proc.returncode, log, output / "_build" / "html", time.perf_counter() - start)


@pytest.fixture(scope="module")
def quick_build() -> Build:
    """The whole book, built once in quick mode for both tests below."""
    return build_book(ROOT, BUILD_DIR)


def _failure_summary(log: str) -> str:
    """Sphinx warnings and errors, and the first traceback (a failing cell shows its source
    there)."""
    lines = log.splitlines()
    problems = [line for line in lines if "WARNING:" in line or "ERROR:" in line]
    first = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
    traceback = lines[first : first + 80] if first is not None else lines[-40:]
    return "\n".join(problems + ["..."] + traceback)


def test_book_builds_with_warnings_as_errors(quick_build: Build) -> None:
    assert quick_build.returncode == 0, (
        f"quick build failed (full log: {BUILD_DIR.name}/build.log):\n"
        + _failure_summary(quick_build.log)
    )
    assert (quick_build.html / "index.html").is_file()
    print(f"quick build took {quick_build.seconds:.0f} s")


def test_every_plot_cell_shows_its_figure(quick_build: Build) -> None:
    """A cell that calls ``plt.show()`` must leave a figure in the built notebook.

    An inherited ``MPLBACKEND=Agg`` once made every such figure vanish from the book silently.
    """
    executed = sorted((quick_build.html.parent / "jupyter_execute").rglob("*.ipynb"))
    assert executed, "the build left no executed notebooks"
    missing = []
    for path in executed:
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            plots = cell["cell_type"] == "code" and "plt.show()" in "".join(cell["source"])
            if plots and not any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
                missing.append(f"{path.name} cell {i}")
    assert not missing, f"plot cells without a figure: {missing}"


def test_blank_repository_url_builds_without_launch_buttons(tmp_path: Path) -> None:
    """A one-notebook book with the project's configuration but ``repository.url: ""`` still
    builds."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["repository"]["url"] = ""
    # sort_keys=False: nb_ipywidgets_js lists its scripts in load order (require.js first)
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: tiny\n")
    (tmp_path / "intro.md").write_text("# Tiny book\n\nMath $x^2$.\n")
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# Tiny chapter"},
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "c1",
                "metadata": {},
                "outputs": [],
                "source": "print(6 * 7)",
            },
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "tiny.ipynb").write_text(json.dumps(notebook))
    shutil.copy(ROOT / "references.bib", tmp_path)
    (tmp_path / "book").mkdir()
    for folder in ("_ext", "_vendor"):
        (tmp_path / "book" / folder).symlink_to(ROOT / "book" / folder)
    build = build_book(tmp_path, tmp_path / "out")
    assert build.returncode == 0, build.log[-3000:]
    page = (build.html / "tiny.html").read_text()
    assert "42" in page and "_sources/tiny.ipynb" in page  # the notebook download button stays
    assert "colab.research.google.com" not in page and "mybinder.org" not in page


# ----------------------------------------------------------------------------------------------
# Browser test


def toc_pages() -> list[str]:
    """Every document of _toc.yml, in reading order (root first)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return pages


def _launch_expectations() -> dict[str, str]:
    """Launch button label → URL prefix, for the services _config.yml configures (none without a
    repository URL)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if not str((config.get("repository") or {}).get("url") or "").strip():
        return {}
    launch = config.get("launch_buttons") or {}
    return {
        label: str(launch[key]).rstrip("/")
        for key, label in LAUNCH_SERVICES.items()
        if launch.get(key)
    }


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    images: int = 0
    math: int = 0
    sliders_moved: int = 0
    widgets: int = 0


# The page's own state, read in the browser.
_MATH_STATE = """() => {
  const math = Array.from(document.querySelectorAll('.math'));
  const unrendered = math.filter(m => !m.querySelector('mjx-container'))
    .map(m => m.textContent.slice(0, 60));
  const body = document.querySelector('main') || document.body;
  const clone = body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml')
    .forEach(n => n.remove());
  const raw = ['\\\\(', '\\\\[', '$$'].filter(t => clone.textContent.includes(t));
  // raw TeX in prose: a $…$ pair or a \\command that MathJax did not typeset (not in outputs, code)
  clone.querySelectorAll('.cell_output, .output, .sl-frame-slider').forEach(n => n.remove());
  const proseTags = 'p, li, dd, dt, td, th, h1, h2, h3, h4, figcaption';
  const prose = Array.from(clone.querySelectorAll(proseTags)).map(n => n.textContent).join('\\n');
  const tex = prose.match(/\\$[^$\\s][^$]*\\$|\\\\[a-zA-Z]{2,}/g) || [];
  return {count: math.length, unrendered: unrendered, raw: raw.concat(tex.slice(0, 3))};
}"""
_IMAGES = """() => Array.from(document.querySelectorAll('img')).map(
  im => ({src: im.getAttribute('src').slice(0, 80), ok: im.complete && im.naturalWidth > 0}))"""
_SLIDER_STATE = """(slider) => {
  const frames = Array.from(slider.querySelectorAll('img.sl-frame'));
  const shown = frames.map((im, i) => im.style.display !== 'none' ? i : -1).filter(i => i >= 0);
  return {shown: shown, src: shown.length ? frames[shown[0]].src : '',
          positions: Array.from(slider.querySelectorAll('input[type=range]')).map(r => +r.value),
          outputs: Array.from(slider.querySelectorAll('output')).map(o => o.textContent),
          shape: JSON.parse(slider.dataset.shape), labels: JSON.parse(slider.dataset.labels)};
}"""


def _consistent(state: dict) -> bool:
    """Exactly the frame at the sliders' positions is shown (row-major), with their value labels."""
    index = 0
    for position, size in zip(state["positions"], state["shape"]):
        index = index * size + position
    return state["shown"] == [index] and state["outputs"] == [
        labels[p] for labels, p in zip(state["labels"], state["positions"])
    ]


_WIDGETS = """() => {
  const type = 'script[type="application/vnd.jupyter.widget-view+json"]';
  const views = Array.from(document.querySelectorAll(type));
  const shown = v => v.parentElement.querySelector('.widget-subarea .jupyter-widgets');
  return {views: views.length, rendered: views.filter(shown).length};
}"""


def _check_slider(slider, report: PageReport) -> None:
    """Step a frame slider (its first axis with several values) by keyboard and back by its
    button."""
    before = slider.evaluate(_SLIDER_STATE)
    where = f"slider {before['labels']}"
    if not _consistent(before):
        report.problems.append(
            f"{where}: the frame shown {before['shown']} does not match the sliders"
        )
        return
    movable = [a for a, size in enumerate(before["shape"]) if size > 1]
    if not movable:
        return
    axis = movable[0]
    forward = before["positions"][axis] < before["shape"][axis] - 1
    row = slider.query_selector_all(".sl-frame-controls")[axis]
    row.query_selector("input[type=range]").press("ArrowRight" if forward else "ArrowLeft")
    after = slider.evaluate(_SLIDER_STATE)
    if after["positions"] == before["positions"] or not _consistent(after):
        report.problems.append(
            f"{where}: the arrow key did not show a new frame ({before['shown']} -> "
            f"{after['shown']})"
        )
        return
    if after["src"] == before["src"]:
        report.problems.append(
            f"{where}: frames {before['shown']} and {after['shown']} are the same image"
        )
        return
    row.query_selector(".sl-prev" if forward else ".sl-next").click()
    if slider.evaluate(_SLIDER_STATE)["shown"] != before["shown"]:
        report.problems.append(
            f"{where}: the step button did not go back to frame {before['shown']}"
        )
        return
    report.sliders_moved += 1


def _check_buttons(page, name: str, is_notebook: bool, html: Path, report: PageReport) -> None:
    links = page.eval_on_selector_all(
        ".article-header-buttons a, .dropdown-menu a",
        "as => as.map(a => ({text: a.textContent.trim(), href: a.getAttribute('href') || ''}))",
    )
    by_text = {link["text"]: link["href"] for link in links}
    download = [href for text, href in by_text.items() if text in (".ipynb", ".md", ".pdf")]
    if not download:
        report.problems.append("no download button")
    if not is_notebook:
        return
    notebook = by_text.get(".ipynb")
    if not notebook or not (html / Path(name).parent / notebook).resolve().is_file():
        report.problems.append(f"download button for the notebook missing or broken ({notebook!r})")
    for label, prefix in _launch_expectations().items():
        if not by_text.get(label, "").startswith(prefix):
            report.problems.append(f"launch button {label} missing (expected a link to {prefix})")


def check_page(context, html: Path, name: str, shot_dir: Path) -> PageReport:
    """Open one page offline and collect everything wrong with it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    report = PageReport(name)
    path = html / f"{name}.html"
    if not path.is_file():
        report.problems.append("page was not built")
        return report
    page = context.new_page()
    page.on(
        "console",
        lambda m: m.type == "error" and report.problems.append(f"console error: {m.text}"),
    )
    page.on("pageerror", lambda e: report.problems.append(f"page error: {e}"))
    page.on(
        "requestfailed",
        lambda r: (
            r.url.startswith("file:")
            and report.problems.append(f"failed to load {r.url}: {r.failure}")
        ),
    )
    page.goto(path.as_uri(), wait_until="load")
    if page.evaluate("() => Boolean(window.MathJax && window.MathJax.startup)"):
        page.evaluate("() => window.MathJax.startup.promise")
    # the widget manager renders stored ipywidgets asynchronously; a timeout is reported below
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            f"() => {{ const w = ({_WIDGETS})(); return w.rendered >= w.views; }}", timeout=20_000
        )

    math = page.evaluate(_MATH_STATE)
    report.math = math["count"]
    if math["unrendered"]:
        report.problems.append(f"math not rendered by MathJax: {math['unrendered'][:3]}")
    if math["raw"]:
        report.problems.append(f"raw TeX delimiters {math['raw']} left in the text")
    bold = page.evaluate(
        "() => [...document.querySelectorAll('p span.pasted-text')]"
        ".filter(s => getComputedStyle(s).fontWeight !== getComputedStyle(s.parentElement)"
        ".fontWeight).map(s => s.textContent.slice(0, 40))"
    )
    if bold:
        report.problems.append(f"glued text drawn in another weight than its sentence: {bold[:3]}")
    images = page.evaluate(_IMAGES)
    report.images = len(images)
    report.problems += [f"image not loaded: {im['src']}" for im in images if not im["ok"]]
    widgets = page.evaluate(_WIDGETS)
    report.widgets = widgets["rendered"]
    if widgets["rendered"] < widgets["views"]:
        report.problems.append(
            f"{widgets['views'] - widgets['rendered']} of {widgets['views']} stored ipywidgets not "
            f"rendered"
        )
    page.screenshot(path=str(shot_dir / f"{name.replace('/', '__')}.png"), full_page=True)
    for slider in page.query_selector_all(".sl-frame-slider"):
        _check_slider(slider, report)
    is_notebook = (ROOT / f"{name}.ipynb").is_file()
    _check_buttons(page, name, is_notebook, html, report)
    page.close()
    return report


def check_index_redirect(context, html: Path) -> PageReport:
    """``index.html`` (what a reader opens from disk) lands on the book's root page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    report = PageReport("index.html")
    if not (html / "index.html").is_file():
        report.problems.append("index.html was not built")
        return report
    page = context.new_page()
    page.goto((html / "index.html").as_uri())
    root = toc_pages()[0]
    try:
        page.wait_for_url(f"**/{root}.html", timeout=10_000)
    except PlaywrightTimeout:
        report.problems.append(f"index.html did not open {root}.html (at {page.url})")
    page.close()
    return report


def test_every_page_in_an_offline_browser(quick_build: Build) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(
            f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium); "
            "the offline browser test needs it"
        )
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    blocked: list[str] = []

    def only_local_files(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    start = time.perf_counter()
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context.route("**/*", only_local_files)
        reports = [check_page(context, quick_build.html, name, SCREENSHOTS) for name in toc_pages()]
        reports.append(check_index_redirect(context, quick_build.html))
        context.close()
    seconds = time.perf_counter() - start

    lines = [
        f"{r.page}: {r.images} images, {r.math} math, {r.sliders_moved} sliders moved, "
        f"{r.widgets} widgets, {'OK' if not r.problems else '; '.join(r.problems)}"
        for r in reports
    ]
    summary = "\n".join(
        lines
        + [f"blocked network requests: {blocked or 'none'}", f"browser checks took {seconds:.0f} s"]
    )
    (SCREENSHOTS / "pages_checked.txt").write_text(summary + "\n")
    print("pages checked in an offline browser:\n" + summary)

    assert not blocked, f"pages tried to reach the network: {blocked[:5]}\n{summary}"
    assert all(not r.problems for r in reports), summary
    assert sum(r.sliders_moved for r in reports) >= 1, (
        "no frame slider in the book moved\n" + summary
    )


def test_every_page_stays_under_two_megabytes(quick_build: Build) -> None:
    """Frame sliders store every frame in the page; a reader on a slow link should not download
    more than 2 MB for one chapter (quick mode has fewer frames than full mode, so this is a
    floor; chapter 0 caps its frames explicitly)."""
    heavy = {
        str(page.relative_to(quick_build.html)): page.stat().st_size
        for page in quick_build.html.rglob("*.html")
        if page.stat().st_size > 2_000_000
    }
    assert not heavy, f"pages over 2 MB: {heavy}"
