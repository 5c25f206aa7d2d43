"""The assets every page loads: vendored MathJax and widget JavaScript, served with no network.

``scripts/vendor_assets.sh`` unpacks MathJax 3, require.js and ``@jupyter-widgets/html-manager``
into ``book/_vendor/`` (gitignored); ``book/_ext/static/`` holds our own glue script and
``book.css`` (glued values in the weight of their sentence, not myst-nb's bold). Jupyter Book
scans ``_static`` folders while it writes the Sphinx configuration and injects every
``.js``/``.css`` it finds into every page (Jupyter Book 1.x / myst-nb behaviour), so these folders
are appended to ``html_static_path`` on ``config-inited``, after that scan: their files are copied
to ``_static/`` and only the entries named in ``_config.yml`` (``mathjax_path``,
``nb_ipywidgets_js``) are loaded, by the pages that need them.

Sphinx 7.4 also registers each inline script added after ``Builder.init()`` twice (once with
filename ``None``, once with ``''``), so sphinx-thebe's ``const THEBE_JS_URL`` is declared twice and
every page logs a SyntaxError; ``drop_duplicate_scripts`` keeps the first copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

STATIC_DIRS = ("book/_vendor", "book/_ext/static")


def _local_assets(config: Config) -> list[str]:
    """The files under ``_static`` that the configuration asks pages to load."""
    wanted = [config.mathjax_path, *getattr(config, "nb_ipywidgets_js", {})]
    return [path for path in wanted if "://" not in path and not path.startswith("//")]


def add_static_dirs(app: Sphinx, config: Config) -> None:
    """Append the vendored and glue folders to ``html_static_path``; fail clearly if a file is
    missing."""
    roots = [Path(app.confdir) / folder for folder in STATIC_DIRS]
    missing = [
        name for name in _local_assets(config) if not any((root / name).is_file() for root in roots)
    ]
    if missing:
        raise ExtensionError(
            f"{' or '.join(STATIC_DIRS)} lack {missing}, which the offline book loads. Run "
            "`bash scripts/vendor_assets.sh` (needs npm), or `make book`, which runs it for you."
        )
    config.html_static_path = [*config.html_static_path, *STATIC_DIRS]


def _script_key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {})
    return (getattr(script, "filename", script) or "", tuple(sorted(attributes.items())))


def drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Keep the first of identical ``<script>`` entries on a page."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = [s for s in scripts if not (_script_key(s) in seen or seen.add(_script_key(s)))]
    scripts[:] = unique


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", add_static_dirs)
    app.add_css_file("book.css")  # book/_ext/static: glued text in the weight of its sentence
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
