"""Theme options that follow ``_config.yml`` where Jupyter Book passes them through unchecked.

- Launch and repository buttons follow ``repository.url``. sphinx-book-theme builds the Colab,
  Binder and JupyterHub links from that URL and crashes on every notebook page when launch buttons
  are configured but the URL is blank, and Jupyter Book rejects a blank URL with the repository
  buttons on. Here a set URL turns the repository and issue buttons on; a blank one switches every
  launch and repository button off, so the book still builds (download buttons stay).
- The colour mode defaults to ``auto``: pydata-sphinx-theme's page template reads ``default_mode``
  from the HTML context, which nothing sets, so a reader's first visit logs "Got invalid theme mode"
  as a console error.
"""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button")


def configure_theme(app: Sphinx, config: Config) -> None:
    """Set repository/launch buttons from ``repository_url`` and the default colour mode."""
    config.html_context.setdefault("default_mode", "auto")
    options = config.html_theme_options
    url = str(options.get("repository_url") or "").strip()
    options["repository_url"] = url
    if url:
        options.update(dict.fromkeys(REPOSITORY_BUTTONS, True))
        return
    LOGGER.info(
        "repository.url is blank: no launch (Colab/Binder/JupyterHub) or repository buttons"
    )
    options["launch_buttons"] = {}
    options.update(dict.fromkeys(REPOSITORY_BUTTONS, False))


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", configure_theme)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
