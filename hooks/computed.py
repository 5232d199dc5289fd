"""MkDocs hook: numbers in a page's prose, computed while the site builds by the page's own code.

A sentence that states a result writes the expression that gives it, between double braces:

    The first weight moves by {{ lr * abs(grads[0]):.2g }}.

The expression is Python, evaluated after the last snippet (```` ```py ```` block) above it on
the page has run, in that snippet's namespace, and formatted by the spec after its last colon
as an f-string would format it. It stays on one line, and math and code are left alone. A leading
`10^` writes a power of ten, `{{ 10^grad:.1f }}` for 10<sup>-8.5</sup>. The number reaches the
page as `<span class="vg-computed" data-computed="...">`, the attribute naming the snippet and
the expression, which a reader sees on hovering or focusing it. In a figure's alt text the
number is written plainly, as an attribute cannot hold markup.

The snippets are the ones the tests run and check line by line (tests/test_docs.py), so a
number in the prose comes from the code beside it and goes stale with nothing. They run in
fresh Python processes, two at a time while the rest of the site builds, and each page's
results are cached under `.cache/computed/KEY.json`, where KEY hashes the page's snippets and
expressions, `vangrad`'s source, this file, the engine, the pinned dependencies, the Python,
the machine and the settings that choose numpy's and BLAS's kernels (`code_key`): a prose edit
elsewhere costs nothing, and any change to the code runs the page again.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # as mkdocs loads a hook, and as `python hooks/NAME.py` runs one: from this folder
    from _build_inputs import code_digest
except ImportError:  # as the tests import it, from the checkout's root
    from hooks._build_inputs import code_digest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "computed"
# As for the figures: two processes beside the notebooks and the figures on two cores.
PROCESSES = 2

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+) *(?P<lang>[\w-]*)(?P<settings>.*)$")
_REFERENCE = re.compile(r"\{\{\s*(?P<content>.+?)\s*\}\}")
_INLINE_CODE = re.compile(r"(`+).+?\1")
_INLINE_MATH = re.compile(r"(?<!\$)\$[^$\n]+\$(?!\$)")
# An image; its alt text may hold references, brackets and all. Atomic and possessive: an
# unclosed `![` before many references must not backtrack exponentially.
_IMAGE = re.compile(r"!\[(?P<alt>(?>\{\{[^\n]*?\}\}|[^\]])*+)\]\([^)]*\)(?P<attrs>\{[^}\n]*\})?")
_REFERENCE_IMAGE = re.compile(r"!\[(?P<alt>(?>\{\{[^\n]*?\}\}|[^\]])*+)\]\[")
_POWER = re.compile(r"^10\s*\^\s*")


@dataclass
class Snippet:
    """A Python block of a page.

    `line` is its fence's line and `block` which of the page's code blocks it is, counting
    every block a reader sees; both from 1.
    """

    line: int
    source: str
    block: int


@dataclass
class Reference:
    """`{{ content }}` in the prose, after the snippet `snippet` (an index into the page's)."""

    start: int
    end: int
    content: str
    snippet: int
    # For a reference in an image's alt text: where the image's attributes go (after its
    # Markdown, or before the `}` of the attribute list it already has).
    image_end: int | None = None
    image_has_attributes: bool = False

    @property
    def in_alt_text(self) -> bool:
        """Whether the reference is in an image's alt text, which holds no markup."""
        return self.image_end is not None

    @property
    def expression(self) -> str:
        """The f-string field: the content without its `10^`."""
        return _POWER.sub("", self.content)

    @property
    def power_of_ten(self) -> bool:
        """Whether the value is written as a power of ten, `10^...`."""
        return _POWER.match(self.content) is not None


@dataclass
class Page:
    """What the hook needs of a page: its snippets and its references, in order."""

    snippets: list[Snippet] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)


def _runs(settings: str) -> bool:
    """Whether the tests run a block with these fence settings (see tests/test_docs.py)."""
    return 'test="skip' not in settings


def read_page(markdown: str, *, where: str) -> Page:
    """Find the runnable snippets of `markdown` and the `{{ }}` references of its prose."""
    page = Page()
    lines = markdown.splitlines(keepends=True)
    offset, index, blocks, prose_spans = 0, 0, 0, []
    while index < len(lines):
        line = lines[index]
        opened = _FENCE.match(line.rstrip("\r\n"))
        if opened is None:
            prose_spans.append((offset, offset + len(line)))
            offset += len(line)
            index += 1
            continue
        indent, fence = opened.group("indent"), opened.group("fence")
        blocks += 1
        body, start = [], index
        index += 1
        while index < len(lines) and not (
            lines[index].strip().startswith(fence) and not lines[index].strip(" `~\r\n")
        ):
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else "")
            index += 1
        index += 1  # the closing fence
        offset += sum(len(text) for text in lines[start:index])
        code = "".join(body)
        if (
            opened.group("lang") in ("py", "python")
            and _runs(opened.group("settings"))
            and not all(text.strip().startswith("--8<--") for text in body if text.strip())
        ):
            page.snippets.append(Snippet(start + 1, code, blocks))
        # A reference inside a block is code, not prose: it is left alone.
        prose_spans.append((offset, offset))
    images = [
        (m.start("alt"), m.end("alt"), m.end() - 1 if m["attrs"] else m.end(), bool(m["attrs"]))
        for m in _IMAGE.finditer(markdown)
    ]
    for found in _REFERENCE_IMAGE.finditer(markdown):
        if "{{" in found.group("alt"):
            line = markdown.count("\n", 0, found.start()) + 1
            raise ValueError(
                f"{where}:{line}: a computed number in a reference-style image's "
                "alt text: write the image inline, ![alt](path)"
            )
    snippet_starts = [_offset_of_line(lines, s.line) for s in page.snippets]
    in_math = False
    for begin, end in prose_spans:
        text = markdown[begin:end]
        code_spans = _code_spans(text)
        # `$$` opens or closes display math, where TeX's braces are no business of ours.
        was_in_math, in_math = in_math, in_math ^ (text.count("$$") % 2 == 1)
        rest = _INLINE_MATH.sub("", _REFERENCE.sub("", text))
        for stray in re.finditer(r"\{\{", "" if was_in_math or in_math else rest):
            # Left over once the references are taken out: one broken over two lines, which
            # would reach the page as raw braces.
            if not any(a <= stray.start() < b for a, b in _code_spans(rest)):
                line = markdown.count("\n", 0, begin) + 1
                raise ValueError(
                    f"{where}:{line}: an unclosed '{{{{': write each {{{{ expression }}}} "
                    "on one line"
                )
        math_spans = [m.span() for m in _INLINE_MATH.finditer(text)]
        for found in _REFERENCE.finditer("" if was_in_math or in_math else text):
            # In code or in math, braces are the code's or TeX's.
            if any(a <= found.start() < b for a, b in code_spans + math_spans):
                continue
            start = begin + found.start()
            above = [i for i, s in enumerate(snippet_starts) if s < start]
            if not above:
                line = markdown.count("\n", 0, start) + 1
                raise ValueError(
                    f"{where}:{line}: {found.group(0)} has no snippet above it to compute it"
                )
            page.references.append(
                Reference(
                    start=start,
                    end=begin + found.end(),
                    content=found.group("content"),
                    snippet=above[-1],
                    image_end=next((e for a, b, e, _ in images if a <= start < b), None),
                    image_has_attributes=any(has for a, b, _, has in images if a <= start < b),
                )
            )
    return page


def _code_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _INLINE_CODE.finditer(text)]


def _offset_of_line(lines: list[str], number: int) -> int:
    return sum(len(text) for text in lines[: number - 1])


def origin(page: Page, reference: Reference) -> str:
    """Where a number came from, as the reader is told: the code block and the expression."""
    block = page.snippets[reference.snippet].block
    return f"code block {block} on this page: {reference.content}"


def _attribute(text: str) -> str:
    """`text` for an HTML attribute; brackets too, which mkdocs-autorefs would take for links."""
    return html.escape(text, quote=True).replace("[", "&#91;").replace("]", "&#93;")


def render(markdown: str, page_uri: str, page: Page, values: list[str]) -> str:
    """`markdown` with each reference replaced by its value, marked with where it came from.

    In alt text the value is plain, and the image gets the marks as attributes (attr_list):
    `data-computed` for where, `data-computed-values` for the values its alt text holds.
    """
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in page order
    in_images: dict[int, list[tuple[Reference, str]]] = {}
    for reference, computed in zip(page.references, values, strict=True):
        if reference.image_end is not None:
            value = computed.replace("]", ")")  # a `]` would end the alt text
            shown = f"10^{value}" if reference.power_of_ten else value
            edits.append((reference.start, reference.end, shown))
            in_images.setdefault(reference.image_end, []).append((reference, shown))
            continue
        value = html.escape(computed)  # a value is text, never markup
        shown = f"10<sup>{value}</sup>" if reference.power_of_ten else value
        where = _attribute(origin(page, reference))
        source = f"docs/{page_uri}:{page.snippets[reference.snippet].line}"
        edits.append(
            (
                reference.start,
                reference.end,
                f'<span class="vg-computed" tabindex="0" data-computed="{where}" '
                f'data-computed-source="{source}">{shown}</span>',
            )
        )
    for end, found in in_images.items():
        where = _attribute("; ".join(origin(page, r) for r, _ in found))
        shown = _attribute(" ".join(v for _, v in found))
        marks = f'data-computed="{where}" data-computed-values="{shown}"'
        # Into the image's own attribute list if it has one: a second one would be text.
        own = found[0][0].image_has_attributes
        edits.append((end, end, f" {marks} " if own else f"{{: {marks} }}"))
    pieces, last = [], 0
    for start, end, replacement in sorted(edits, key=lambda edit: edit[0]):
        pieces += [markdown[last:start], replacement]
        last = end
    pieces.append(markdown[last:])
    return "".join(pieces)


# --- running a page's snippets (in the child process) --------------------------------------------


def _split_format(content: str) -> tuple[str, str]:
    """`expression:spec` -> (expression, spec), at the last colon that ends an expression.

    An f-string's own parsing would need the content quoted, which fails on an expression
    holding both kinds of quotes; a slice's or a dict's colon never ends one.
    """
    for position in range(len(content) - 1, -1, -1):
        if content[position] == ":":
            try:
                compile(content[:position], "<expression>", "eval")
            except SyntaxError:
                continue
            return content[:position].strip(), content[position + 1 :]
    return content.strip(), ""


def evaluate(page: Page, index: int, namespace: dict[str, Any], *, where: str) -> list[str]:
    """The values of the references bound to snippet `index`, after it ran in `namespace`."""
    snippet, values = page.snippets[index], []
    for reference in page.references:
        if reference.snippet != index:
            continue
        expression, spec = _split_format(reference.expression)
        try:
            values.append(format(eval(expression, namespace), spec))
        except Exception as error:
            raise ValueError(
                f"{where}, after the snippet at line {snippet.line}: "
                f"{{{{ {reference.content} }}}} failed: {error!r}"
            ) from error
    return values


def compute(page: Page, *, where: str) -> list[str]:
    """Run the snippets in order, each in a namespace of its own, and evaluate each reference."""
    values: list[str] = []
    for index, snippet in enumerate(page.snippets):
        namespace: dict[str, Any] = {"__name__": "__main__"}
        mine = [r for r in page.references if r.snippet == index]
        if not mine:
            continue  # nothing on the page needs what this one computes
        # Line numbers in a traceback are the page's own.
        code = compile("\n" * snippet.line + snippet.source, where, "exec")
        with _isolated(), contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)  # the page's own code, which the tests also run
            values += evaluate(page, index, namespace, where=where)
    return values


@contextlib.contextmanager
def _isolated() -> Iterator[None]:
    """Undo what a snippet changes for the whole process.

    The environment, the working folder and numpy's error handling: the next page of the same
    process starts as it would alone.
    """
    import numpy as np

    environment, folder, errors = dict(os.environ), os.getcwd(), np.geterr()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
        os.chdir(folder)
        np.seterr(**errors)


def _compute_jobs(jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        target = Path(job["output"])
        try:
            page = read_page(job["markdown"], where=job["page"])
            result: dict[str, Any] = {"values": compute(page, where=job["page"])}
        except Exception:
            result = {"error": traceback.format_exc()}
        _write_atomically(target, json.dumps(result))


def _write_atomically(target: Path, text: str) -> None:
    """Write `target` so that a reader never sees half of it, whoever else writes it too."""
    descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(partial, target)


# --- the hook (runs inside mkdocs) ---------------------------------------------------------------

_state: dict[str, Any] = {"pages": {}, "children": []}


def code_key(engine: str | None = None) -> bytes:
    """What every page's numbers depend on, but for the page itself (hooks/_build_inputs.py)."""
    return code_digest(Path(__file__), engine=engine).digest()


def page_key(code_key: bytes, page: Page) -> str:
    """The cache key of a page's values: the code, its snippets and its expressions."""
    digest = hashlib.sha256(code_key)
    used = sorted({r.snippet for r in page.references})
    digest.update(json.dumps([page.snippets[i].source for i in used]).encode())
    digest.update(json.dumps([(r.snippet, r.content) for r in page.references]).encode())
    return digest.hexdigest()[:20]


def _stop() -> None:
    for child in _state["children"]:
        child.kill()
        child.wait()
    _state["children"] = []
    _state["pages"] = {}
    _forget_scratch()


def _forget_scratch() -> None:
    scratch = _state.pop("scratch", None)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def _start(docs_dir: Path) -> None:
    """Read every page; run, in the background, the pages whose values are not cached."""
    _stop()
    code = code_key()
    CACHE.mkdir(parents=True, exist_ok=True)
    jobs: list[dict[str, Any]] = []
    for path in sorted(docs_dir.rglob("*.md")):  # every page's source; the others wait
        uri = path.relative_to(docs_dir).as_posix()
        markdown = path.read_text(encoding="utf-8")
        page = read_page(markdown, where=uri)
        if not page.references:
            continue
        output = CACHE / f"{page_key(code, page)}.json"
        _state["pages"][uri] = output
        if output.exists() and "values" not in _read_result(output):
            output.unlink()  # an error is not a result: run the page again
        if not output.exists():
            jobs.append({"page": uri, "markdown": markdown, "output": str(output)})
    if not jobs:
        return
    scratch = Path(tempfile.mkdtemp(prefix="vangrad-computed-"))
    for index in range(PROCESSES):
        share = jobs[index::PROCESSES]
        if not share:
            continue
        # In a file, not on the command line: the pages' Markdown outgrows one argument's
        # limit (128 KB on Linux) once enough pages compute numbers.
        share_file = scratch / f"jobs-{index}.json"
        share_file.write_text(json.dumps(share), encoding="utf-8")
        with (scratch / f"stderr-{index}").open("wb") as stderr:
            _state["children"].append(
                subprocess.Popen(
                    [sys.executable, __file__, str(share_file)],
                    cwd=scratch,  # a snippet that writes a file writes it here
                    env={**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            )
    _state["scratch"] = scratch


def _values(uri: str) -> list[str]:
    output: Path = _state["pages"][uri]
    while not output.exists():
        if all(child.poll() is not None for child in _state["children"]) and not output.exists():
            scratch = _state["scratch"]
            errors = "".join(p.read_text(errors="replace") for p in scratch.glob("stderr-*"))
            raise _plugin_error(f"{uri}: computing its numbers failed:\n{errors}")
        time.sleep(0.02)
    result = _read_result(output)
    if "error" in result:
        output.unlink()  # not a result: the next build tries again
        raise _plugin_error(f"{uri}: computing its numbers failed:\n{result['error']}")
    return result["values"]


def _read_result(output: Path) -> dict[str, Any]:
    try:
        return json.loads(output.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable: no result
        return {}


def _plugin_error(message: str) -> Exception:
    from mkdocs.exceptions import PluginError

    return PluginError(message)


def on_config(config: Any, **_: Any) -> Any:
    """Start computing the pages' numbers, so that they run while the rest is read."""
    try:
        _start(Path(config["docs_dir"]))
    except ValueError as error:
        raise _plugin_error(str(error)) from error
    return config


def _compute_now(uri: str, markdown: str, output: Path) -> None:
    """Compute one page's numbers and wait: it changed after the build started."""
    job = {"page": uri, "markdown": markdown, "output": str(output)}
    with tempfile.TemporaryDirectory(prefix="vangrad-computed-") as scratch:
        done = subprocess.run(
            [sys.executable, __file__, json.dumps([job])],
            cwd=scratch,
            env={**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    if not output.exists():
        stderr = done.stderr.decode(errors="replace")
        raise _plugin_error(f"{uri}: computing its numbers failed:\n{stderr}")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Put each `{{ }}` number of the page in its place, marked with where it came from."""
    uri = page.file.src_uri
    if not uri.endswith(".md"):  # a notebook's page: its source is Python
        return markdown
    try:
        read = read_page(markdown, where=uri)
    except ValueError as error:
        raise _plugin_error(str(error)) from error
    if not read.references:
        return markdown
    output = CACHE / f"{page_key(code_key(), read)}.json"
    if _state["pages"].get(uri) != output:  # edited since the build began
        _state["pages"][uri] = output
        if not output.exists():
            _compute_now(uri, markdown, output)
    return render(markdown, uri, read, _values(uri))


def on_post_build(**_: Any) -> None:
    """Every page is rendered, so every process has ended; forget them."""
    for child in _state["children"]:
        child.wait()
    _state["children"] = []
    _forget_scratch()


def on_build_error(**_: Any) -> None:
    """Stop computing for a build that has failed."""
    _stop()


if __name__ == "__main__":
    _compute_jobs(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
