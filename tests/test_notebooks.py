"""The notebooks run in the test command, and what they print backs what their pages say.

The site build executes every notebook (mkdocs-jupyter with `execute: true`) and the strict
build is part of the tests (`built_site` in `conftest.py`), so the notebooks run once per test
run. Running them a second time here, with nbclient, would cost as much again (the training
notebook takes seconds) to learn nothing new. Instead these tests check the two things that
make the single run count:

- that a notebook which raises really fails the build, with the build's own plugin settings
  (mkdocs-jupyter lets such a notebook build by default) and the hook that runs the notebooks
  in the background; and
- that each notebook's built page holds fresh outputs, with no error among them, and that the
  numbers the training notebook printed are the ones its prose describes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid
from html import unescape
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.stem for p in (ROOT / "docs" / "notebooks").glob("*.py"))

pytestmark = pytest.mark.slow


def _jupyter_plugin_config() -> dict:
    """The mkdocs-jupyter settings from the real mkdocs.yml (its `!ENV` tags read as None)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda *_: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocs-jupyter" in plugin:
            return plugin["mkdocs-jupyter"]
    raise AssertionError("mkdocs.yml does not configure mkdocs-jupyter")


def _build_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    kernels = ROOT / ".venv" / "share" / "jupyter"
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(kernels), env.get("JUPYTER_PATH")]))
    return env


def _build_one_notebook(
    tmp_path: Path, name: str, source: str, *, build: bool = True
) -> subprocess.CompletedProcess | None:
    """Build a site of one notebook through the project's notebooks hook; the output is in s/.

    With `build=False`, only write the site's sources.
    """
    docs = tmp_path / "docs"
    (docs / "notebooks").mkdir(parents=True)
    (docs / "index.md").write_text("# Home\n", encoding="utf-8")
    (docs / "notebooks" / f"{name}.py").write_text(source, encoding="utf-8")
    config = {
        "site_name": name,
        "strict": True,
        "theme": {"name": "mkdocs"},
        "plugins": [{"mkdocs-jupyter": _jupyter_plugin_config()}],
        # The real build converts its notebooks through this hook, in other processes.
        "hooks": [str(ROOT / "hooks" / "notebooks.py")],
        "nav": [{"Home": "index.md"}, {name: f"notebooks/{name}.py"}],
    }
    (tmp_path / "mkdocs.yml").write_text(json.dumps(config), encoding="utf-8")
    if not build:
        return None
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=tmp_path,
        env=_build_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_notebook_that_raises_fails_the_strict_build(tmp_path: Path) -> None:
    source = '# %%\nraise RuntimeError("this notebook is broken on purpose")\n'
    result = _build_one_notebook(tmp_path, "broken", source)
    assert result.returncode != 0, "a notebook that raises built without an error"
    assert "this notebook is broken on purpose" in result.stdout + result.stderr


def test_a_line_printed_in_two_flushes_reaches_the_page_as_one_block(tmp_path: Path) -> None:
    # Each flush is a stream message of its own; nbconvert merges streams only before it
    # executes, so without the hook's nbclient default the page shows two blocks, the second
    # starting mid-line.
    source = (
        "# %%\nimport time\n"
        'print("first half", end="", flush=True)\ntime.sleep(0.3)\nprint(" second half")\n'
    )
    result = _build_one_notebook(tmp_path, "flushes", source)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "s" / "notebooks" / "flushes" / "index.html").read_text(encoding="utf-8")
    assert page.count('class="jp-RenderedText jp-OutputArea-output"') == 1
    assert _printed(page).strip() == "first half second half"


# Builds the one-notebook site of `_build_one_notebook` through mkdocs' own build function,
# as `mkdocs serve` (or `build`) would, and prints the hook's log lines.
_BUILD_AS = """
import logging, sys
from mkdocs.commands.build import build
from mkdocs.config import load_config

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
config = load_config("mkdocs.yml", site_dir="s")
config.plugins.on_startup(command=sys.argv[1], dirty=False)
build(config)
"""


def test_under_serve_an_unchanged_notebook_is_not_run_again_and_a_build_always_runs_it(
    tmp_path: Path,
) -> None:
    marker = f"run {uuid.uuid4()}"  # a notebook of its own: no earlier run's kept page
    _build_one_notebook(tmp_path, "kept", f"# %%\nprint({marker!r})\n", build=False)

    def build_as(command: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", _BUILD_AS, command],
            cwd=tmp_path,
            env=_build_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        page = (tmp_path / "s" / "notebooks" / "kept" / "index.html").read_text("utf-8")
        assert marker in _printed(page)
        return run.stdout

    assert "Converting notebook in the background: notebooks/kept.py" in build_as("serve")
    assert "Notebook unchanged since it last ran: notebooks/kept.py" in build_as("serve")
    assert "Converting notebook in the background: notebooks/kept.py" in build_as("build")
    # An edit to the notebook is a new key (so is one to vangrad, the hook or the pins).
    spec = importlib.util.spec_from_file_location("notebooks_hook", ROOT / "hooks" / "notebooks.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    notebook = tmp_path / "docs" / "notebooks" / "kept.py"
    before = hook._kept_page(str(notebook), {"execute": True})
    notebook.write_text(f"# %%\nprint({marker!r}, 2)\n", encoding="utf-8")
    assert hook._kept_page(str(notebook), {"execute": True}) != before


_CODE_CELL = re.compile(r'(?=<div class="jp-Cell jp-CodeCell)')


def _page(site: Path, name: str) -> str:
    return (site / "notebooks" / name / "index.html").read_text(encoding="utf-8")


def _printed(html: str) -> str:
    """The text of the page's cell outputs (stdout is rendered in <pre> blocks)."""
    outputs = re.findall(
        r'class="jp-RenderedText jp-OutputArea-output"[^>]*>\s*<pre>(.*?)</pre>', html, re.S
    )
    return unescape("\n".join(outputs))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_cell_prints_into_one_block(built_site: Path, name: str) -> None:
    # A kernel may flush one printed line in two pieces; merged after execution (see the
    # nbclient default set in hooks/notebooks.py), a cell's stdout is one block.
    cells = _CODE_CELL.split(_page(built_site, name))[1:]
    printing = [cell.count('class="jp-RenderedText jp-OutputArea-output"') for cell in cells]
    assert any(printing), f"{name}: no cell printed anything"
    assert max(printing) == 1, f"{name}: a cell's output is split into {max(printing)} blocks"


def test_notebooks_are_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        assert f"notebooks/{name}.py" in nav, name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_page_has_fresh_outputs_and_downloads(built_site: Path, name: str) -> None:
    html = _page(built_site, name)
    assert _printed(html).strip(), f"{name}: no printed output on the page"
    # The page's stylesheets name the error classes too: look at the content only.
    content = re.sub(r"<(style|script)\b.*?</\1>", "", html, flags=re.S)
    assert "Traceback" not in content
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in content
    for alt in re.findall(r'<img alt="([^"]*)"', html):
        assert len(alt) > 20, f"{name}: an image with alt text {alt!r}"
        # A sentence cut short means a wrapped '# alt:' comment lost its continuation lines.
        assert alt.endswith("."), f"{name}: alt text {alt!r} does not end a sentence"
    assert f'href="{name}.ipynb"' in html
    assert (built_site / "notebooks" / name / f"{name}.py").is_file()
    notebook = json.loads((built_site / "notebooks" / name / f"{name}.ipynb").read_text("utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, f"{name}.ipynb has no code cells"
    # The download is the source: a reader runs it to get the outputs.
    assert all(not cell.get("outputs") for cell in code)


def test_training_notebook_prints_what_its_prose_says(built_site: Path) -> None:
    _check_training_printout(_printed(_page(built_site, "training")))


def test_training_notebook_says_it_under_other_kernels_and_thread_counts(
    portability_runs: tuple[list[subprocess.Popen[bytes]], Path, list[dict[str, object]]],
) -> None:
    """The same checks, on the notebook run as a script in each environment of
    tests/test_portability.py (other SIMD kernels, BLAS kernels and thread counts)."""
    processes, out, plans = portability_runs
    # Bounded: a hung run fails the test instead of stalling CI (a run takes about a minute).
    assert [process.wait(timeout=900) for process in processes] == [0] * len(plans)
    for index, plan in enumerate(plans):
        folder = out / str(index)
        assert (folder / "training.rc").is_file(), f"{plan['label']}: the notebook did not run"
        printed = (folder / "training.txt").read_text(encoding="utf-8")
        assert (folder / "training.rc").read_text() == "0", f"{plan['label']}:\n{printed}"
        _check_training_printout(printed)


def test_long_range_notebook_prints_what_its_prose_says(built_site: Path) -> None:
    _check_long_range_printout(_printed(_page(built_site, "long-range")))


def test_long_range_notebook_says_it_under_other_kernels_and_thread_counts(
    portability_runs: tuple[list[subprocess.Popen[bytes]], Path, list[dict[str, object]]],
) -> None:
    """The same checks on the long-range notebook, in each environment of test_portability.py."""
    processes, out, plans = portability_runs
    assert [process.wait(timeout=900) for process in processes] == [0] * len(plans)
    for index, plan in enumerate(plans):
        folder = out / str(index)
        assert (folder / "long-range.rc").is_file(), f"{plan['label']}: the notebook did not run"
        printed = (folder / "long-range.txt").read_text(encoding="utf-8")
        assert (folder / "long-range.rc").read_text() == "0", f"{plan['label']}:\n{printed}"
        _check_long_range_printout(printed)


def _check_long_range_printout(printed: str) -> None:
    """What the long-range notebook's prose says about its own printout."""
    baselines = {
        int(length): float(value)
        for length, value in re.findall(
            r"^T = +(\d+): baseline \(always 1\) ([\d.]+)", printed, re.M
        )
    }
    assert sorted(baselines) == [10, 40], printed
    for value in baselines.values():
        assert abs(value - 1 / 6) < 0.02, printed  # measured on the test set: near 1/6
    rows = re.findall(
        r"^T = +(\d+), (tanh RNN|LSTM, forget bias 1) +test loss ([\d.e+-]+), "
        r"([\d.e+-]+) of the baseline$",
        printed,
        re.M,
    )
    final = {(int(length), label.split(",")[0]): float(ratio) for length, label, _, ratio in rows}
    assert sorted(final) == [(10, "LSTM"), (10, "tanh RNN"), (40, "LSTM"), (40, "tanh RNN")]
    for length, _, loss, ratio in rows:
        assert abs(float(loss) / baselines[int(length)] / float(ratio) - 1) < 0.1, printed
    # Both learn the short sequences; at 40 steps the tanh RNN stays on the baseline while
    # the LSTM drops far below it.
    assert final[10, "tanh RNN"] < 0.3, printed
    assert final[10, "LSTM"] < 0.05, printed
    assert final[40, "tanh RNN"] > 0.9, printed
    assert final[40, "LSTM"] < 0.05, printed
    factors = {}
    for label, values in re.findall(
        r"^(tanh RNN|LSTM, forget bias 1) +T = 40, per step at training (.*)$", printed, re.M
    ):
        factors[label.split(",")[0]] = {
            int(step): float(value) for step, value in re.findall(r"step (\d+): x([\d.]+)", values)
        }
    assert sorted(factors) == ["LSTM", "tanh RNN"], printed
    tanh, lstm = factors["tanh RNN"], factors["LSTM"]
    assert sorted(tanh) == sorted(lstm) == [0, 100, 200, 399], printed
    # Alike at the start; both worse on the plateau; after training the LSTM's factor is
    # close to 1 and the tanh RNN's below its starting value.
    assert abs(tanh[0] - lstm[0]) < 0.05, printed
    for factor in (tanh, lstm):
        assert factor[100] < factor[0] - 0.05, printed
        assert factor[200] < factor[0] - 0.05, printed
    assert lstm[399] > 0.9, printed
    assert tanh[399] < tanh[0], printed
    assert re.search(r"^This notebook ran in \d+ s\.$", printed, re.M), printed


def _check_training_printout(printed: str) -> None:
    """What the training notebook's prose says about its own printout."""
    rows = re.findall(
        r"^\((\w)\) .*? loss ([\d.]+) +accuracy (\d+)% +update ratio: layer 1 ([\d.e+-]+), "
        r"layer \d+ ([\d.e+-]+)$",
        printed,
        re.M,
    )
    runs = {run: tuple(float(v) for v in values) for run, *values in rows}
    assert sorted(runs) == ["a", "b", "c"], printed
    stalled_loss, _, first, last = runs["a"]
    # (a): the loss of a coin flip, and a first layer that barely moves.
    assert stalled_loss > 0.6
    assert first < 1e-6 * last
    for run in ("b", "c"):
        loss, accuracy, first, last = runs[run]
        assert loss < 0.3, run
        assert accuracy > 85, run
        assert 1e-2 < first / last < 1e2, run
    # Two reasons, one factor: forward and backward shrink by about sqrt(chi_1) per layer,
    # and the last features are constant to many decimal places, before and after training.
    factor = float(re.search(r"sqrt\(chi_1\) .*?: ([\d.]+) per layer", printed).group(1))
    measured = re.search(r"forward spread x([\d.]+), weight gradient x([\d.]+)", printed)
    for value in measured.groups():
        assert abs(float(value) / factor - 1) < 0.15, printed
    spreads = re.search(r"layer 1 ([\d.e+-]+), layer 11 ([\d.e+-]+), layer 12 ([\d.e+-]+)", printed)
    assert max(float(spreads.group(2)), float(spreads.group(3))) < 1e-8, printed
    assert (
        float(re.search(r"layer 12's spread after training: ([\d.e+-]+)", printed).group(1)) < 1e-8
    )
    # The search: no surviving forward signal with a stalled first layer, and every stalled
    # first layer (more than ten times below layer 12) is a plain sigmoid network whose
    # forward spread collapses by a similar power of ten.
    search = re.findall(
        r"^(.+?) +forward 10\^ *([-\d.]+) +backward 10\^ *([-\d.]+)$", printed, re.M
    )
    assert len(search) > 10, printed
    for label, forward, backward in search:
        forward_change, backward_change = float(forward), float(backward)
        if backward_change < -1:
            assert label.startswith("sigmoid"), label
            assert "residual" not in label, label
            assert "batch" not in label, label
            assert abs(forward_change - backward_change) < 1.0, label
        if forward_change > -0.5:
            assert backward_change > -1, label
    # The bursts: large gradients at both learning rates, a jump of the loss on all the data
    # at the full rate, and none at half of it.
    bursts = re.findall(
        r"loss on all the data: ([\d.]+) 20 steps before the largest batch loss, ([\d.]+) at it\n"
        r"  half the learning rate: largest gradient (\d+) times the median,\n"
        r"    largest batch loss after step 60 ([\d.]+), final loss ([\d.]+)",
        printed,
    )
    assert len(bursts) == 2, printed
    for before, at, gradient, slower_peak, slower_final in bursts:
        assert float(at) > 5 * float(before), printed
        assert float(at) > 0.5, printed
        assert int(gradient) >= 5, printed
        assert float(slower_peak) < 0.5, printed
        assert float(slower_final) < 0.1, printed
    # Adam: (b) and (c) learn with every layer's median ratio within a factor of about ten;
    # (a) does not learn, with the usual epsilon (layer 1 far behind) nor with a tiny one
    # (layer 1 as fast as layer 12), and its last features stay constant.
    adam = re.findall(
        r"^Adam, \((\w)\)[^\n]*?(epsilon 1e-20)?\n  loss ([\d.]+) +accuracy (\d+)% +update "
        r"ratio: layer 1 ([\d.e+-]+), layer \d+ ([\d.e+-]+)\n  largest over smallest layer's "
        r"median ratio (\d+), largest batch loss after step 60 ([\d.]+)$",
        printed,
        re.M,
    )
    found = {(run + ("-tiny" if tiny else "")): values for run, tiny, *values in adam}
    assert sorted(found) == ["a", "a-tiny", "b", "c"], printed
    for run in ("b", "c"):
        loss, accuracy, _, _, spread, peak = found[run]
        assert float(loss) < 0.1, run
        assert int(accuracy) > 95, run
        assert int(spread) < 20, run
        assert float(peak) < 0.5, run
    for run in ("a", "a-tiny"):
        assert float(found[run][0]) > 0.6, run
    assert float(found["a"][2]) < 1e-2 * float(found["a"][3])
    assert float(found["a-tiny"][2]) > 0.5 * float(found["a-tiny"][3])
    rms = float(re.search(r"layer 1's gradient entries ([\d.e+-]+)", printed).group(1))
    assert rms < 1e-9, printed  # far below Adam's usual epsilon, 1e-8
    after = float(
        re.search(r"epsilon 1e-20: layer 12's spread after training ([\d.e+-]+)", printed).group(1)
    )
    assert after < 1e-4, printed


def test_background_conversion_is_what_the_plugin_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebooks hook hands a page to mkdocs-jupyter only if the plugin asks `nb2html` for
    exactly what the hook computed; otherwise it converts again, in-process. A new plugin option
    would do that silently, running every notebook twice: this catches it.
    """
    from mkdocs_jupyter import convert
    from mkdocs_jupyter.plugin import Plugin

    spec = importlib.util.spec_from_file_location("notebooks_hook", ROOT / "hooks" / "notebooks.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    plugin = Plugin()
    errors, warnings = plugin.load_config(_jupyter_plugin_config())
    assert not errors, errors
    assert not warnings, warnings

    path = str(ROOT / "docs" / "notebooks" / f"{NOTEBOOKS[0]}.py")
    page = SimpleNamespace(
        file=SimpleNamespace(abs_src_path=path, src_path=f"notebooks/{NOTEBOOKS[0]}.py"),
        abs_url=f"/notebooks/{NOTEBOOKS[0]}/",
    )
    asked: list[tuple[str, dict]] = []

    def record(nb_path: str, **options: object) -> str:
        asked.append((nb_path, options))
        raise _AskedError

    monkeypatch.setattr(convert, "nb2html", record)
    plugin.on_pre_page(page, config={}, files=None)
    with pytest.raises(_AskedError):
        page.render({}, None)
    assert asked == [(path, hook._conversion_options(plugin, path))]


class _AskedError(Exception):
    pass
