"""The package's metadata and the site's install box name the repository the build runs in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _hatch_build():
    spec = importlib.util.spec_from_file_location("hatch_build_under_test", ROOT / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_on_github_actions_the_urls_name_the_repository_and_its_pages() -> None:
    urls = _hatch_build().project_urls(
        {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "Someone/vangrad"}
    )
    assert urls == {
        "Documentation": "https://someone.github.io/vangrad/",
        "Source": "https://github.com/Someone/vangrad",
        "Issues": "https://github.com/Someone/vangrad/issues",
        "Changelog": "https://github.com/Someone/vangrad/releases",
    }


def test_explicit_addresses_win_and_a_clone_url_loses_its_suffix() -> None:
    urls = _hatch_build().project_urls(
        {
            "VANGRAD_REPOSITORY_URL": "https://github.com/someone/someone.github.io.git",
            "GITHUB_REPOSITORY": "other/repo",
        }
    )
    assert urls["Source"] == "https://github.com/someone/someone.github.io"
    assert urls["Documentation"] == "https://someone.github.io/"  # a user site: at the root
    docs = _hatch_build().project_urls(
        {"VANGRAD_REPOSITORY_URL": "https://example.org/v", "VANGRAD_DOCS_URL": "https://d/"}
    )
    assert docs["Documentation"] == "https://d/"


def test_a_build_that_knows_no_repository_names_none() -> None:
    assert _hatch_build().project_urls({}) == {}
