"""The project's addresses, filled into the package metadata when the wheel and sdist are built.

The addresses depend on where the repository lives, which the source does not know: on GitHub
Actions they come from `GITHUB_SERVER_URL` and `GITHUB_REPOSITORY`, elsewhere from
`VANGRAD_REPOSITORY_URL`; the documentation's address from `VANGRAD_DOCS_URL` (the release
workflow passes the Pages address), else GitHub Pages' default address for the repository.
A build that knows no repository carries no addresses rather than wrong ones.

The site's build reads the same function (hooks/install.py), so the install instructions on the
site and the package's metadata name one repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from hatchling.metadata.plugin.interface import MetadataHookInterface


def repository_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """The repository's web address, or None when the build does not know it."""
    explicit = environ.get("VANGRAD_REPOSITORY_URL", "").strip().rstrip("/").removesuffix(".git")
    if explicit:
        return explicit
    server, repository = environ.get("GITHUB_SERVER_URL"), environ.get("GITHUB_REPOSITORY")
    if server and repository:
        return f"{server.rstrip('/')}/{repository}"
    return None


def project_urls(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`[project.urls]` for the build: source, issues, changes and documentation."""
    source = repository_url(environ)
    if source is None:
        return {}
    urls = {
        "Source": source,
        "Issues": f"{source}/issues",
        "Changelog": f"{source}/releases",
    }
    docs = environ.get("VANGRAD_DOCS_URL", "").strip()
    parsed = urlparse(source)
    owner_and_name = parsed.path.strip("/").split("/")
    if not docs and parsed.hostname == "github.com" and len(owner_and_name) == 2:
        owner, name = owner_and_name
        user_site = name.lower() == f"{owner.lower()}.github.io"  # served at the root
        docs = f"https://{owner.lower()}.github.io/" + ("" if user_site else f"{name}/")
    if docs:
        urls = {"Documentation": docs, **urls}
    return urls


class CustomMetadataHook(MetadataHookInterface):
    """Hatchling's hook for the dynamic `urls` field of pyproject.toml."""

    def update(self, metadata: dict[str, Any]) -> None:
        """Fill in `urls`, which pyproject.toml declares dynamic."""
        metadata["urls"] = project_urls()
