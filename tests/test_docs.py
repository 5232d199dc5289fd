"""Every Python snippet in the docs and in `vangrad`'s docstrings runs, prints what it claims, and
is formatted and linted with ruff.

A snippet's printed output lives in `#>` comments under the `print` call. After changing a
snippet or the code behind it, refresh the comments (and the formatting) with

    .venv/bin/pytest tests/test_docs.py --update-examples

and review the diff. A snippet opts out of running only with an explicit, reasoned fence setting:
```` ```py test="skip: needs a display" ````.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples
from ruff.__main__ import find_ruff_bin

from hooks import computed

ROOT = Path(__file__).resolve().parent.parent
LINE_LENGTH = 100
# The project's own ruff rules apply, less the ones meant for library code: a snippet is a
# script, so it prints (T20) and needs no docstrings (D).
SNIPPET_RUFF_IGNORE = ["D", "T20", "INP001"]
KNOWN_SETTINGS = {"test", "lint"}


def _is_include(example: CodeExample) -> bool:
    """A fence that only includes code from the package (`--8<-- "vangrad/engine.py:forward"`).

    The included code is tested where it lives; the build fails if the file or section is gone.
    """
    lines = [line.strip() for line in example.source.splitlines() if line.strip()]
    return bool(lines) and all(line.startswith("--8<--") for line in lines)


def _examples() -> list[CodeExample]:
    found = find_examples(ROOT / "README.md", ROOT / "docs", ROOT / "vangrad")
    kept = [ex for ex in found if not _is_include(ex)]
    return sorted(kept, key=lambda ex: (str(ex.path), ex.start_line))


def _example_id(example: CodeExample) -> str:
    return f"{example.path.relative_to(ROOT)}:{example.start_line}"


def _skip_reason(example: CodeExample, key: str) -> str | None:
    value = example.prefix_settings().get(key)
    if value is None:
        return None
    match = re.fullmatch(r"skip: *(\S.*)", value)
    if match is None:
        pytest.fail(f'{key}="{value}": write {key}="skip: <why this snippet cannot run>"')
    return match.group(1)


def _ruff_format(source: str) -> str:
    """Format a snippet with ruff, keeping `#> output` comments as they are.

    The formatter would turn `#>` into `# >`, so the marker is hidden from it, as pytest-examples
    does for black.
    """
    hidden = re.sub(r"^( *#)> ", r"\1 > ", source, flags=re.MULTILINE)
    result = subprocess.run(
        [
            find_ruff_bin(),
            "format",
            f"--line-length={LINE_LENGTH}",
            "--stdin-filename=snippet.py",
            "-",
        ],
        input=hidden,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return re.sub(r"^( *#) > ", r"\1> ", result.stdout, flags=re.MULTILINE)


@pytest.mark.parametrize("example", _examples(), ids=_example_id)
def test_snippet_is_formatted_and_linted(example: CodeExample, eval_example: EvalExample) -> None:
    """Once per snippet: the engine does not change how it reads."""
    _check_settings(example)
    if eval_example.update_examples:
        pytest.skip("--update-examples formats the snippets in test_snippet")
    lint_skip = _skip_reason(example, "lint")
    if lint_skip is not None:
        pytest.skip(lint_skip)
    _configure(eval_example)
    eval_example.lint_ruff(example)
    formatted = _ruff_format(example.source)
    assert formatted == example.source, (
        f"{_example_id(example)} is not ruff-formatted: run the tests with --update-examples"
    )


# On the fast engine here, and on the reference too in tests/test_portability.py's runs.
@pytest.mark.usefixtures("snippet_engine")
@pytest.mark.parametrize("example", _examples(), ids=_example_id)
def test_snippet(example: CodeExample, eval_example: EvalExample) -> None:
    """The snippet runs and prints its `#>` lines; with --update-examples, rewrites them."""
    _check_settings(example)
    _configure(eval_example)
    lint_skip = _skip_reason(example, "lint")
    test_skip = _skip_reason(example, "test")
    if eval_example.update_examples:
        if lint_skip is None:
            formatted = _ruff_format(example.source)
            if formatted != example.source:
                example.source = formatted
                # pytest-examples has no public way to mark a rewritten example.
                eval_example._mark_for_update(example)
            eval_example.format_ruff(example)
        if test_skip is None:
            eval_example.run_print_update(example)
    elif test_skip is None:
        _record_page_values(example, eval_example.run_print_check(example))
    if test_skip is not None:
        pytest.skip(test_skip)


def _record_page_values(example: CodeExample, namespace: dict[str, Any]) -> None:
    """With `VANGRAD_PAGE_VALUES=DIR`, also write the prose's `{{ }}` numbers that this snippet
    computes (hooks/computed.py), for tests/test_portability.py to compare with the build's."""
    folder = os.environ.get("VANGRAD_PAGE_VALUES")
    if not folder or not example.path.is_relative_to(ROOT / "docs") or example.path.suffix != ".md":
        return
    uri = example.path.relative_to(ROOT / "docs").as_posix()
    page = computed.read_page(example.path.read_text(encoding="utf-8"), where=uri)
    index = next((i for i, s in enumerate(page.snippets) if s.line == example.start_line), None)
    if index is None:  # shown inside another block (Contributing's examples): not run for prose
        return
    values = computed.evaluate(page, index, namespace, where=uri)
    if values:
        record = {"page": uri, "snippet": index, "values": values}
        name = f"{uri.replace('/', '_')}-{example.start_line}.json"
        (Path(folder) / name).write_text(json.dumps(record), encoding="utf-8")


def _check_settings(example: CodeExample) -> None:
    unknown = set(example.prefix_settings()) - KNOWN_SETTINGS
    assert not unknown, f"unknown fence settings {sorted(unknown)}; known: {sorted(KNOWN_SETTINGS)}"


def _configure(eval_example: EvalExample) -> None:
    eval_example.set_config(
        line_length=LINE_LENGTH,
        target_version="py311",
        ruff_ignore=SNIPPET_RUFF_IGNORE,
    )


def test_snippets_were_found() -> None:
    """Guard against a path change that silently collects nothing."""
    examples = _examples()
    assert any(ex.path.suffix == ".md" for ex in examples)
    assert any(ex.path.suffix == ".py" for ex in examples)


def test_the_prose_numbers_come_from_snippets_these_tests_run() -> None:
    """hooks/computed.py finds a page's snippets with a parser of its own: every snippet it runs
    for the prose's numbers must be one that `test_snippet` runs and checks."""
    tested = {(ex.path, ex.start_line) for ex in _examples() if _skip_reason(ex, "test") is None}
    for path in sorted((ROOT / "docs").rglob("*.md")):
        page = computed.read_page(path.read_text(encoding="utf-8"), where=path.name)
        for snippet in page.snippets:
            assert (path, snippet.line) in tested, f"{path.name}:{snippet.line} is not tested"
