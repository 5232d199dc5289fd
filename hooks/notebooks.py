"""MkDocs hook: notebook pages get a download button and figures with real alt text.

Notebooks live in `docs/notebooks/` as jupytext percent files (`.py`), which diff well. The
build offers each one for download both as that file and as a `.ipynb` made from it here.

nbconvert labels each output image "No description has been provided for this image". A
notebook cell that draws a figure says what the figure shows in a comment of its own,

    # alt: The bound falls in a straight line on a log axis.

(a long one continues on comment lines indented by two or more spaces, `#   and goes on`),
and this hook puts that sentence into the image's `alt` attribute. A figure without such a
comment fails the build, naming the notebook, so no image reaches a reader undescribed.

nbconvert also inlines all of JupyterLab's stylesheet, about 570 KB, into every notebook page;
the hook keeps only what the page can use (hooks/_jupyter_css.py), about 30 KB.

mkdocs-jupyter executes each notebook when mkdocs reaches its page, one after the other, while
the rest of the build waits. The hook starts every notebook's conversion at once instead, each
in a process of its own (forks of one background process) running mkdocs-jupyter's own
conversion with the plugin's settings, and hands the plugin the finished page when it asks.
A notebook that raises fails the build all the same, with its traceback.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import jupytext
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from nbclient import NotebookClient
from PIL import Image

try:  # as mkdocs loads a hook, and as `python hooks/NAME.py` runs one: from this folder
    from _build_inputs import code_digest
    from _jupyter_css import drop_custom_properties, prune_css, used_custom_properties
    from install import install_html
except ImportError:  # as the tests import it, from the checkout's root
    from hooks._build_inputs import code_digest
    from hooks._jupyter_css import drop_custom_properties, prune_css, used_custom_properties
    from hooks.install import install_html

log = logging.getLogger("mkdocs.hooks.notebooks")

# Merge each cell's stdout into one block after execution. A line that the kernel flushed in
# two pieces (seen once, on a loaded machine) otherwise reached the page as two blocks, the
# second starting mid-line: nbconvert merges streams only before it executes, on no outputs,
# and nbclient's own switch for it is not configurable (no config tag), hence its default.
NotebookClient.coalesce_streams.default_value = True

PLACEHOLDER = 'alt="No description has been provided for this image"'
_CELL_START = re.compile(r'(?=<div class="jp-Cell jp-CodeCell)')
_ALT_COMMENT = re.compile(
    # The first line, then any comment lines indented by two or more spaces after the '#'
    # (a long description wrapped to the line length); in the page each line is its own
    # highlighted span.
    r"#\s*alt:\s*(?P<text>[^<\n]+)"
    r'(?P<more>(?:(?:</span>)?[ \t]*\n[ \t]*(?:<span class="c1">)?#[ \t]{2,}[^<\n]+)*)'
)
_CONTINUATION = re.compile(r"#[ \t]{2,}(?P<text>[^<\n]+)")
# The same comment as whole highlighted lines, which the page does not show: it is the build's
# note for the image, and the reader finds it in the image's alt text.
_ALT_LINES = re.compile(
    r'<span class="c1">#\s*alt:[^<\n]*</span>\n'
    r'(?:[ \t]*<span class="c1">#[ \t]{2,}[^<\n]*</span>\n)*'
)
_STYLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.DOTALL)
_CLASS_ATTRIBUTE = re.compile(r'class="([^"]*)"')


def describe_notebook_figures(content: str, *, where: str) -> str:
    """Replace nbconvert's placeholder alt text with each cell's `# alt:` comment."""
    cells = _CELL_START.split(content)
    for index, cell in enumerate(cells):
        if PLACEHOLDER not in cell:
            continue
        found = _ALT_COMMENT.search(cell)
        if found is None:
            raise PluginError(
                f"{where}: a code cell draws a figure but has no '# alt: <what it shows>' comment"
            )
        lines = [found.group("text"), *_CONTINUATION.findall(found.group("more"))]
        text = " ".join(html.unescape(line).strip() for line in lines)
        cells[index] = _ALT_LINES.sub("", cell.replace(PLACEHOLDER, f'alt="{html.escape(text)}"'))
    return "".join(cells)


_pruned: dict[str, str] = {}  # by the page's hash: under `mkdocs serve`, rebuilds repeat it


def prune_notebook_styles(content: str) -> str:
    """Keep, in each `<style>` of a page, only the rules that can match its markup."""
    key = hashlib.sha256(content.encode()).hexdigest()
    if key not in _pruned:
        if len(_pruned) > 16:  # pages of notebooks since edited
            _pruned.clear()
        _pruned[key] = _prune_notebook_styles(content)
    return _pruned[key]


def _prune_notebook_styles(content: str) -> str:
    markup = _STYLE.sub("", content)
    classes = {name for value in _CLASS_ATTRIBUTE.findall(markup) for name in value.split()}
    sheets = [prune_css(found.group(2), classes) for found in _STYLE.finditer(content)]
    # The custom properties that what is left (or the markup's own styles) can still read.
    used = used_custom_properties("".join(sheets), markup)
    pruned = iter(drop_custom_properties(sheet, used) for sheet in sheets)
    return _STYLE.sub(lambda found: found.group(1) + next(pruned) + found.group(3), content)


# mkdocs-jupyter gives every code cell a copy button of its own making: a custom element with a
# script to define it (4 KB), an inline SVG icon per cell, and a hidden second copy of the cell's
# source to copy from; together about a tenth of a notebook page. Material's own clipboard, which
# every other page's copy buttons use, is already loaded: each cell's button becomes one of its
# buttons (`data-clipboard-target`), copying the shown code, with the icon drawn once by the
# site's stylesheet.
_COPY_BUTTON = re.compile(
    r'<clipboard-copy[^>]*for="(?P<target>cell-\d+)"[^>]*>\s*<div>\s*'
    r'<span class="notice" hidden[^>]*>[^<]*</span>\s*'
    r'<svg [^>]*class="clipboard-copy-icon"[^>]*>.*?</svg>\s*</div>\s*</clipboard-copy>',
    re.DOTALL,
)
_COPY_SOURCE = re.compile(
    r"<pre>(?P<code>(?:(?!</pre>).)*</pre></div>\s*)"
    r'<div (?:class="clipboard-copy-txt" id="(?P<a>cell-\d+)"|id="(?P<b>cell-\d+)" '
    r'class="clipboard-copy-txt")>(?:(?!</div>).)*</div>',
    re.DOTALL,
)
_COPY_SCRIPTS = re.compile(
    r"<script>\s*\(function \(global, factory\)(?:(?!</script>).)*ClipboardCopyElement"
    r"(?:(?!</script>).)*</script>\s*"
    r"<script>\s*document\.addEventListener\('clipboard-copy'(?:(?!</script>).)*</script>",
    re.DOTALL,
)
# nbconvert's loader for Mermaid diagrams imports Mermaid from a CDN, which the site never asks.
_MERMAID_LOADER = re.compile(
    r'<script type="module">(?:(?!</script>).)*\.jp-Mermaid(?:(?!</script>).)*</script>', re.DOTALL
)


def lighten_copy_buttons(content: str, *, where: str) -> str:
    """Make each code cell's copy button one of Material's, copying the code the cell shows.

    Drops the Mermaid loader too; a notebook with a Mermaid diagram fails the build instead.
    """
    content, loaders = _MERMAID_LOADER.subn("", content)
    if 'class="jp-Mermaid' in content:
        raise PluginError(f"{where}: Mermaid diagrams need a renderer from a CDN; draw a figure")
    buttons = len(re.findall(r"<clipboard-copy\b", content))
    sources = content.count('class="clipboard-copy-txt"')
    content, scripts = _COPY_SCRIPTS.subn("", content)
    content, moved = _COPY_SOURCE.subn(
        lambda found: f'<pre id="{found["a"] or found["b"]}">{found["code"]}', content
    )
    content, made = _COPY_BUTTON.subn(
        lambda found: (
            f'<button class="vg-cell-copy" type="button" title="Copy to clipboard" '
            f'data-clipboard-target="#{found["target"]}">'
            '<span aria-hidden="true" class="clipboard-copy-icon"></span></button>'
        ),
        content,
    )
    if (loaders, scripts) != (1, 1) or not moved == made == buttons == sources:
        raise PluginError(
            f"{where}: mkdocs-jupyter's copy buttons changed shape ({buttons} buttons, "
            f"{sources} sources, {scripts} scripts, {loaders} Mermaid loaders); update the hook"
        )
    return content


def _is_notebook(src_uri: str) -> bool:
    return src_uri.startswith("notebooks/") and src_uri.endswith(".py")


class _Conversion:
    """One notebook being converted to HTML by mkdocs-jupyter, in the background.

    `keep`, under `mkdocs serve`, is where the finished page is kept for the next rebuild.
    """

    def __init__(self, options: dict[str, Any], output: Path, keep: Path | None = None) -> None:
        self.options, self.output, self.keep = options, output, keep
        self.error = output.with_suffix(".error")

    def html(self, where: str) -> str:
        while not (self.output.exists() or self.error.exists()):
            if _server and _server[0].poll() is not None and not self.output.exists():
                # The conversion's own error output (see _isolate_kernel), then the server's.
                own = self.output.with_suffix(".stderr")
                stderr = own.read_text(errors="replace") if own.exists() else ""
                stderr += _server[1].read_text(errors="replace")
                raise PluginError(f"{where}: running the notebooks failed:\n{stderr}")
            time.sleep(0.02)
        if self.error.exists():
            message = self.error.read_text(encoding="utf-8", errors="replace")
            raise PluginError(f"{where}: the notebook failed to run:\n{message}")
        content = self.output.read_text(encoding="utf-8")
        if self.keep is not None and not self.keep.exists():
            self.keep.parent.mkdir(parents=True, exist_ok=True)
            descriptor, partial = tempfile.mkstemp(dir=self.keep.parent, prefix=".partial-")
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(content)
            os.replace(partial, self.keep)
            # The notebook's older pages can never be asked for again: only one is kept.
            for older in self.keep.parent.glob(f"{self.keep.name.rsplit('-', 1)[0]}-*.html"):
                if older != self.keep:
                    older.unlink(missing_ok=True)
        return content


# Under `mkdocs serve` only: a notebook's finished page, kept by everything it depends on, so
# that a prose edit elsewhere does not run every notebook again. `mkdocs build` (and so CI and
# the deploy) never reads it: a published page always comes from a fresh run.
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "notebooks"
_serving: list[bool] = [False]


def on_startup(*, command: str, dirty: bool) -> None:
    """Remember whether this is `mkdocs serve`, the one command that reuses notebook pages."""
    _serving[0] = command == "serve"


def _kept_page(notebook: str, options: dict[str, Any]) -> Path:
    """Where the page of `notebook`, converted with `options`, is kept.

    The key is everything the page depends on: the notebook, the options and the build's
    inputs (vangrad's source, this hook, the pinned dependencies, the Python, the engine).
    """
    digest = code_digest(Path(__file__))  # vangrad, the pins, this hook... (_build_inputs.py)
    digest.update(Path(notebook).read_bytes())
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    return CACHE / f"{Path(notebook).stem}-{digest.hexdigest()[:20]}.html"


_conversions: dict[str, _Conversion] = {}
_scratch: list[Path] = []
# The process that runs the conversions, and the file that holds its error output.
_server: list[Any] = []


def _conversion_options(plugin: Any, path: str) -> dict[str, Any] | None:
    """The arguments mkdocs-jupyter will pass to `nb2html` for `path`, if it executes it."""
    options = plugin.config
    execute = options["execute"] and not any(
        PurePath(path).match(pattern) for pattern in options["execute_ignore"]
    )
    # A cached page is never converted, and one that is not executed costs little.
    if not execute or options["cache"]:
        return None
    names = (
        "kernel_name",
        "theme",
        "allow_errors",
        "show_input",
        "no_input",
        "no_prompt",
        "remove_tag_config",
        "highlight_extra_classes",
        "include_requirejs",
        "custom_mathjax_url",
    )
    return {"execute": True, **{name: options[name] for name in names}}


def _start_conversions(files: Files, config: Any) -> None:
    _stop_conversions()  # left over from a failed build under `mkdocs serve`
    plugin = config.plugins.get("mkdocs-jupyter")
    if plugin is None:
        return
    scratch = Path(tempfile.mkdtemp(prefix="vangrad-notebooks-"))
    _scratch.append(scratch)
    jobs = []
    for index, file in enumerate(files):
        if not (_is_notebook(file.src_uri) and plugin.should_include(file)):
            continue
        options = _conversion_options(plugin, file.abs_src_path)
        if options is None:
            continue
        output = scratch / f"{index}.html"
        keep = _kept_page(file.abs_src_path, options) if _serving[0] else None
        if keep is not None and keep.exists():
            _conversions[file.abs_src_path] = _Conversion(options, keep)
            log.info("Notebook unchanged since it last ran: %s", file.src_uri)
            continue
        jobs.append([file.abs_src_path, options, str(output)])
        _conversions[file.abs_src_path] = _Conversion(options, output, keep)
        log.info("Converting notebook in the background: %s", file.src_uri)
    if not jobs:
        return
    stderr = scratch / "stderr"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, __file__, json.dumps(jobs)],
            # One BLAS thread, as for the figures: the kernels run beside each other and the
            # rest of the build.
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    _server[:] = [process, stderr]


def _stop_conversions() -> None:
    if _server:
        _server[0].terminate()  # it stops its conversions, too
        _server[0].wait()
        _server.clear()
    _conversions.clear()
    while _scratch:
        shutil.rmtree(_scratch.pop(), ignore_errors=True)


@contextlib.contextmanager
def _converted(conversion: _Conversion, path: str, where: str) -> Iterator[None]:
    """Make mkdocs-jupyter take the page from `conversion` instead of converting it again."""
    from mkdocs_jupyter import convert

    nb2html = convert.nb2html

    def finished(nb_path: str, **options: Any) -> str:
        if nb_path != path or options != conversion.options:
            # The plugin asked for something else (a newer version, new settings): convert
            # in-process, as the plugin would have, rather than hand over a different page.
            log.info("%s: converting in-process; the plugin asked for %s", where, options)
            return nb2html(nb_path, **options)
        return conversion.html(where)

    convert.nb2html = finished
    try:
        yield
    finally:
        convert.nb2html = nb2html


# Before mkdocs-jupyter's own and the figures' hook, which may wait for its drawings: the
# notebooks are the longest part of the build.
@event_priority(50)
def on_files(files: Files, config: Any, **_: Any) -> Files:
    """Start converting the notebooks; add a `.ipynb` (no outputs) beside each, for download."""
    _start_conversions(files, config)
    for file in list(files):
        if _is_notebook(file.src_uri):
            notebook = jupytext.read(file.abs_src_path)
            stem = file.src_uri.removesuffix(".py")
            content = jupytext.writes(notebook, fmt="ipynb")
            files.append(
                File.generated(config, f"{stem}/{stem.split('/')[-1]}.ipynb", content=content)
            )
    return files


# After mkdocs-jupyter's own, which sets the page's `render`.
@event_priority(-50)
def on_pre_page(page: Any, **_: Any) -> Any:
    """Have the notebook's page rendered from its background conversion."""
    path = page.file.abs_src_path
    conversion = _conversions.get(path)
    if conversion is None:
        return page
    render = page.render

    def render_converted(config: Any, files: Files) -> None:
        with _converted(conversion, path, page.file.src_uri):
            render(config, files)
        del _conversions[path]

    page.render = render_converted
    return page


def on_post_build(**_: Any) -> None:
    """Stop any conversion whose page was never rendered."""
    _stop_conversions()


def on_build_error(**_: Any) -> None:
    """Stop the conversions of a build that has failed."""
    _stop_conversions()


def _download_buttons(src_uri: str) -> str:
    name = src_uri.rsplit("/", maxsplit=1)[-1].removesuffix(".py")
    return (
        '<p class="vangrad-downloads">'
        f'<a class="md-button md-button--primary" href="{name}.ipynb" download>'
        "Download the notebook (.ipynb)</a> "
        f'<a class="md-button" href="{name}.py" download>Download as a Python script (.py)</a>'
        "</p>" + install_html(notebook=True)
    )


_INLINE_PNG = re.compile(r'src="data:image/png;base64,(?P<data>[^"]+)"')
_webp: dict[str, tuple[bytes, int, int]] = {}  # by the PNG's hash: rebuilds under serve repeat it


def _as_webp(png: bytes) -> tuple[bytes, int, int]:
    key = hashlib.sha256(png).hexdigest()
    if key not in _webp:
        with Image.open(io.BytesIO(png)) as image:
            out = io.BytesIO()
            image.save(out, format="WEBP", lossless=True)
            _webp[key] = (out.getvalue(), *image.size)
    return _webp[key]


def move_figures_out(content: str, folder: Path) -> str:
    """Write each figure the page inlines as a PNG into `folder` as a lossless WebP file.

    Inline, a figure costs a third more than its bytes (base64), cannot be cached, and a PNG of
    a plot is about two and a half times the size of the same pixels as lossless WebP.
    """

    def move(found: re.Match[str]) -> str:
        webp, width, height = _as_webp(base64.b64decode(found["data"]))
        name = f"figure-{hashlib.sha256(webp).hexdigest()[:16]}.webp"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(webp)
        # The size lets the browser keep the figure's place before it has loaded it.
        return f'src="{name}" width="{width}" height="{height}"'

    return _INLINE_PNG.sub(move, content)


# Before mathml.py: a `$` in a cell's code must reach the copy button as it is, not as MathML.
@event_priority(50)
def on_page_content(html_content: str, page: Any, config: Any, **_: Any) -> str:
    """Describe the figures of notebook pages, move them out of the page, offer downloads."""
    where = page.file.src_uri
    if not _is_notebook(where):
        return html_content
    folder = Path(config.site_dir, page.file.dest_uri).parent
    light = move_figures_out(lighten_copy_buttons(html_content, where=where), folder)
    described = describe_notebook_figures(light, where=where)
    # Under the notebook's title when it has one, else at the top.
    if "</h1>" in described:
        offered = described.replace("</h1>", "</h1>" + _download_buttons(where), 1)
    else:
        offered = _download_buttons(where) + described
    # Last, so that the rules the download and install boxes use are kept too.
    return prune_notebook_styles(offered)


def _isolate_kernel(target: Path) -> Path:
    """Give this conversion's kernel sockets of its own and an error output of its own.

    With TCP, jupyter_client picks free ports, closes them and has the kernel bind them; a
    port taken in between (by another notebook's kernel starting beside it) kills the kernel
    before it replies (jupyter/jupyter_client#154; seen in CI). IPC sockets are files named
    after this conversion, which nothing else can take. nbconvert reads the setting from its
    configuration folder (JUPYTER_CONFIG_DIR, which stands in for a contributor's ~/.jupyter;
    JUPYTER_CONFIG_PATH and the system's folders still apply). The kernel writes to this
    process's stderr, so it gets a file of its own, read back if the conversion fails.
    """
    settings = target.with_suffix(".jupyter")
    settings.mkdir()
    kernel = {"transport": "ipc", "ip": str(target.with_suffix(".kernel"))}
    (settings / "jupyter_nbconvert_config.json").write_text(
        json.dumps({"KernelManager": kernel}), encoding="utf-8"
    )
    os.environ["JUPYTER_CONFIG_DIR"] = str(settings)
    stderr = target.with_suffix(".stderr")
    descriptor = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    return stderr


def _convert(notebook_path: str, options: dict[str, Any], output_path: str) -> None:
    """Write the notebook's page, or its error, to a file that appears complete or not at all."""
    from mkdocs_jupyter import convert

    target = Path(output_path)
    stderr = _isolate_kernel(target)
    try:
        content = convert.nb2html(notebook_path, **options)
    except Exception as error:  # reported to the build, which fails
        # The error names the cell and holds the notebook's own traceback; this process's
        # stack, down through nbconvert, would only bury it.
        content = "".join(traceback.format_exception_only(error))
        sys.stderr.flush()
        printed = stderr.read_text(encoding="utf-8", errors="replace").strip()
        if printed:  # a kernel that died says why only here
            content += f"\nThe kernel's error output:\n{printed}\n"
        target = target.with_suffix(".error")
    partial = target.with_suffix(".partial")
    partial.write_text(content, encoding="utf-8")
    os.replace(partial, target)


def _serve(jobs: list[tuple[str, dict[str, Any], str]]) -> None:
    """Convert every notebook of `jobs` at once, each in a fork of this process.

    Importing mkdocs-jupyter's conversion takes a second of CPU; the forks share one import.
    """
    import mkdocs_jupyter.convert  # noqa: F401 - imported once, before the forks

    children: list[int] = []

    def stop(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    for job in jobs:
        pid = os.fork()
        if pid == 0:  # the fork: convert one notebook, and never return into the loop
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 1
            try:
                _convert(*job)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
