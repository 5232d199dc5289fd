"""MkDocs hook: build the site with vangrad's reference engine, the one the engine page shows.

The page *How the engine works* includes the reference engine's code and says that the site's
numbers come from it; this makes that literal. The fast engine, the package's default, gives
the same numbers (the tests hold it to the reference), and a clean build takes about as long
with either, so nothing is lost. `VANGRAD_ENGINE=fast ./dev build` builds with the fast one.
The figure and notebook processes the other hooks start inherit the setting.
"""

from __future__ import annotations

import os

SITE_ENGINE = "reference"


def on_startup(*, command: str, dirty: bool) -> None:
    """Choose the reference engine for this build, unless the caller chose one."""
    os.environ.setdefault("VANGRAD_ENGINE", SITE_ENGINE)
