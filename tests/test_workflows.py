"""The GitHub workflows follow the project's rules for supply chain and permissions.

Every action is pinned to a full commit SHA with its version beside it; no workflow grants a
permission at the top; only the jobs that deploy or publish may mint an OIDC token; a checkout
never leaves its token on disk; every job has a time limit; the release runs the tests before
it publishes, and refuses a tag that does not name the version written in the package.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# The jobs that need an OIDC token: GitHub Pages' deployment and PyPI's trusted publishing.
TOKEN_JOBS = {("pages.yml", "deploy"), ("release.yml", "publish")}


def _load(path: Path) -> dict:
    # PyYAML reads the key `on:` as the boolean True.
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commits_with_their_version(path: Path) -> None:
    lines = path.read_text().splitlines()
    uses = [line for line in lines if re.match(r"\s*(- )?uses:", line)]
    for line in uses:
        target = line.split("uses:", 1)[1].split("#", 1)[0].strip()
        if target.startswith("./"):  # a workflow of this repository
            continue
        assert PINNED.match(target), f"{path.name}: not pinned to a commit: {line.strip()}"
        assert re.search(r"# v\d+(\.\d+)*\s*$", line), f"{path.name}: no version: {line.strip()}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_granted_per_job_and_tokens_only_where_needed(path: Path) -> None:
    workflow = _load(path)
    assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
    assert "concurrency" in workflow
    for name, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert permissions, f"{path.name}: job {name} states no permissions"
        wants_token = permissions.get("id-token") == "write"
        assert wants_token == ((path.name, name) in TOKEN_JOBS), f"{path.name}: {name} id-token"
        if "uses" in job:  # a call to a reusable workflow: its own jobs carry the limits
            continue
        assert job.get("timeout-minutes"), f"{path.name}: job {name} has no timeout-minutes"
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_a_release_is_tested_and_checks_its_version_before_it_publishes() -> None:
    release = _load(ROOT / ".github" / "workflows" / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert "workflow_call" in _load(ROOT / ".github" / "workflows" / "ci.yml")["on"]
    assert set(jobs["publish"]["needs"]) == {"test", "build"}
    assert jobs["publish"]["environment"]["name"] == "pypi"
    publish_steps = [step.get("uses", "") for step in jobs["publish"]["steps"]]
    assert any(uses.startswith("pypa/gh-action-pypi-publish@") for uses in publish_steps)
    build_runs = " ".join(step.get("run", "") for step in jobs["build"]["steps"])
    assert "./dev dist" in build_runs
    assert "__init__.py" in build_runs
    assert "GITHUB_REF_NAME" in build_runs
    assert jobs["github-release"]["needs"] == ["publish"]
    assert jobs["github-release"]["permissions"] == {"contents": "write"}
