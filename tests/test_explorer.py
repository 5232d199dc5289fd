"""The explorer's JavaScript engine, held to vangrad in the real Chromium the browser tests drive.

Parity: vangrad writes golden cases (weights, inputs, upstream gradients and its reference
engine's `log10` norms) when the test runs; the JavaScript engine, loaded as the site serves it,
runs the same weights and must agree within 1e-9 on every `log10` norm, for every activation,
with and without batch normalisation, and for each residual kind.

Presets: the explorer's medians over trials agree with `vangrad.simulate` for the same settings
(other random draws) within the spread over trials, as stated in `within_spread`.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from tests import test_browser
from vangrad import ACTIVATIONS, INITIALIZERS, simulate
from vangrad.engine import run_reference
from vangrad.network_checks import check_activation

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ENGINE = "javascripts/explorer/engine.js"
PARITY_TOLERANCE = 1e-9  # on every log10 norm, as the issue asks
RESIDUALS = [False, True, "post"]

pytestmark = pytest.mark.slow
# The browser tests' fixtures: their Chromium, and the built site served on 127.0.0.1.
browser = test_browser.browser
server = test_browser.server


@pytest.fixture(scope="module")
def docs_server() -> Iterator[str]:
    """The docs folder on 127.0.0.1: the engine's modules as the site serves them, unbuilt."""
    handler = functools.partial(test_browser._QuietHandler, directory=str(DOCS))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        httpd.shutdown()


@pytest.fixture(scope="module")
def engine_page(browser: object, docs_server: str) -> Iterator[object]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(docs_server + "javascripts/explorer/")  # a 404 page is enough of an origin
    page.evaluate(f"async () => {{ window.engine = await import('/{ENGINE}'); }}")
    yield page
    assert not errors, errors
    context.close()


def golden_case(
    activation: str, batchnorm: bool, residual: bool | str, loss: str, seed: int
) -> dict[str, object]:
    """A small network's weights, input and upstream gradient, and vangrad's measurements."""
    rng = np.random.default_rng(seed)
    depth, width, batch = 7, 6, 5
    # Mild weights: a chaotic network would amplify the last bits that numpy's and the
    # browser's exp and tanh round differently, and parity would test the rounding.
    scale = 1.2 if activation in ("sigmoid", "softplus") else 0.9
    weights = [rng.normal(0, scale / np.sqrt(width), (width, width)) for _ in range(depth)]
    x = rng.normal(size=(batch, width))
    upstream = None if loss == "sum" else rng.normal(size=(batch, width))
    flow = run_reference(
        x,
        weights,
        check_activation(activation),
        batchnorm=batchnorm,
        residual=residual,
        upstream=upstream,
    )
    return {
        "input": {
            "x": x.ravel().tolist(),
            "weights": [w.ravel().tolist() for w in weights],
            "widths": [width] * (depth + 1),
            "batch": batch,
            "activation": activation,
            "batchnorm": batchnorm,
            "residual": residual,
            "upstream": None if upstream is None else upstream.ravel().tolist(),
        },
        "expected": {
            "log10GradNorms": flow.log10_grad_norms.tolist(),
            "log10WeightGradNorms": flow.log10_weight_grad_norms.tolist(),
            "saturatedFraction": flow.saturated_fraction.tolist(),
        },
    }


def golden_cases() -> list[dict[str, object]]:
    return [
        golden_case(activation, batchnorm, residual, loss, seed)
        for seed, activation in enumerate(ACTIVATIONS)
        for batchnorm in (False, True)
        for residual in RESIDUALS
        for loss in ("sum", "random")
    ]


RUN_CASES = """cases => cases.map(c => {
    const input = {...c.input, x: Float64Array.from(c.input.x),
        weights: c.input.weights.map(w => Float64Array.from(w)),
        upstream: c.input.upstream && Float64Array.from(c.input.upstream)};
    const r = window.engine.runNetwork(input);
    return {log10GradNorms: [...r.log10GradNorms],
        log10WeightGradNorms: [...r.log10WeightGradNorms],
        saturatedFraction: [...r.saturatedFraction]};
})"""


def test_the_javascript_engine_gives_the_reference_engines_log10_norms(
    engine_page: object,
) -> None:
    cases = golden_cases()
    assert len(cases) == len(ACTIVATIONS) * 2 * len(RESIDUALS) * 2
    results = engine_page.evaluate(RUN_CASES, cases)
    keys = ("log10GradNorms", "log10WeightGradNorms")
    worst = dict.fromkeys(keys, 0.0)
    for case, result in zip(cases, results, strict=True):
        label = {k: case["input"][k] for k in ("activation", "batchnorm", "residual")}
        for key in keys:
            expected = np.array(case["expected"][key])
            got = np.array(result[key])
            # -inf where a gradient is exactly zero (the sum loss's ones through batch
            # normalisation of a linear layer): the same zero, not a rounding error, is wanted.
            zero = np.isneginf(expected)
            assert (np.isneginf(got) == zero).all(), (label, key, got, expected)
            assert np.isfinite(expected[~zero]).all(), label
            error = float(np.max(np.abs(got[~zero] - expected[~zero]), initial=0.0))
            worst[key] = max(worst[key], error)
            assert error < PARITY_TOLERANCE, (label, key, error)
        # A fraction of units under a threshold: equal unless a slope sits on the threshold.
        assert result["saturatedFraction"] == case["expected"]["saturatedFraction"], label
    print(f"\nparity over {len(cases)} cases, largest |log10 difference|: {worst}")


def test_the_javascript_constants_match_vangrads_registries(engine_page: object) -> None:
    names = engine_page.evaluate(
        """() => ({activations: Object.keys(window.engine.ACTIVATIONS),
            initializers: Object.keys(window.engine.INITIALIZERS),
            derivativeMax: Object.fromEntries(Object.entries(window.engine.ACTIVATIONS)
                .map(([k, v]) => [k, v.derivativeMax]))})"""
    )
    assert names["activations"] == list(ACTIVATIONS)
    assert names["initializers"] == list(INITIALIZERS)
    for name, act in ACTIVATIONS.items():
        assert names["derivativeMax"][name] == pytest.approx(act.derivative_max, rel=1e-12), name
    variances = engine_page.evaluate(
        """() => Object.fromEntries(Object.entries(window.engine.INITIALIZERS)
            .map(([k, v]) => [k, [v.variance(64, 64), v.variance(30, 50)]]))"""
    )
    for name, rule in INITIALIZERS.items():
        want = [rule.base_variance(64, 64), rule.base_variance(30, 50)]
        assert variances[name] == pytest.approx(want, rel=1e-15), name


def test_the_mean_field_prediction_is_vangrads(engine_page: object) -> None:
    from vangrad.theory import init_sigma_w2, predicted_log10_grad_norms

    cases = [
        (activation, init, scale, depth)
        for activation in ACTIVATIONS
        for init, scale in (("xavier_normal", 1.0), ("he_normal", 1.0), ("normal", 0.3))
        for depth in (1, 30)
    ]
    got = engine_page.evaluate(
        """async cases => {
            const t = await import('/javascripts/explorer/theory.js');
            return cases.map(([act, init, scale, depth]) =>
                [...t.predictedLog10GradNorms(depth, t.initSigmaW2(init, 32, scale), act)]);
        }""",
        cases,
    )
    worst = 0.0
    for (activation, init, scale, depth), values in zip(cases, got, strict=True):
        sigma_w2 = init_sigma_w2(init, 32, weight_scale=scale)
        want = predicted_log10_grad_norms(depth, sigma_w2, 0.0, activation)
        error = float(np.max(np.abs(np.array(values) - want)))
        worst = max(worst, error)
        assert error < PARITY_TOLERANCE, (activation, init, scale, depth, error)
    print(f"\nmean-field prediction over {len(cases)} cases, largest |difference|: {worst:.2g}")


def preset_settings(engine_page: object) -> list[dict[str, object]]:
    """The explorer's presets, each merged into its defaults."""
    return engine_page.evaluate(
        """async () => {
            const {DEFAULTS} = await import('/javascripts/explorer/simulate.js');
            const {PRESETS} = await import('/javascripts/explorer/explorer.js');
            return PRESETS.map(p => ({label: p.label, ...DEFAULTS, ...p.state}));
        }"""
    )


def within_spread(js: np.ndarray, py: np.ndarray) -> tuple[bool, float]:
    """Whether two sets of trials' log10 norms, shape (trials, L + 1), agree within the spread.

    "Within the spread over trials" means: at every layer the two medians differ by at most
    the larger of the two interquartile ranges. With 32 trials the sampling error of a median
    is about a quarter of an interquartile range, so two samples of one distribution meet
    this, and two distributions whose medians differ by a spread's width do not. Where
    neither has any spread (the sum loss's output gradient) the medians must be equal. Returns the
    verdict and the largest ratio of the difference to that bound.
    """
    median_js, median_py = np.median(js, axis=0), np.median(py, axis=0)
    spread = np.maximum(
        np.subtract(*np.quantile(js, [0.75, 0.25], axis=0)),
        np.subtract(*np.quantile(py, [0.75, 0.25], axis=0)),
    )
    difference = np.abs(median_js - median_py)
    # No spread at all (the sum loss's output gradient, ones): the medians must be equal.
    spread = np.where(spread > 0, spread, 1e-12)
    ratio = difference / spread
    return bool(np.all(ratio <= 1)), float(ratio.max())


PRESET_TRIALS = 32


def test_the_presets_agree_with_simulate_within_the_spread_over_trials(
    engine_page: object,
) -> None:
    presets = preset_settings(engine_page)
    assert len(presets) >= 5
    for preset in presets:
        settings = {**preset, "trials": PRESET_TRIALS}
        js = np.array(
            engine_page.evaluate(
                """async s => {
                    const {Networks} = await import('/javascripts/explorer/simulate.js');
                    return new Networks().run(s, 0, s.trials).map(r => [...r.log10GradNorms]);
                }""",
                settings,
            )
        )
        flow = simulate(
            settings["depth"],
            settings["width"],
            activation=settings["activation"],
            init=settings["init"],
            weight_scale=settings["gain"],
            batch_size=settings["batch"],
            batchnorm=bool(settings["batchnorm"]),
            residual={"0": False, "1": True, "post": "post"}[settings["residual"]],
            trials=PRESET_TRIALS,
            seed=settings["seed"],
            loss=settings["loss"],
        )
        py = flow.log10_grad_norms
        assert js.shape == py.shape
        assert np.isfinite(js).all(), preset["label"]
        assert np.isfinite(py).all(), preset["label"]
        agree, ratio = within_spread(js, py)
        print(f"\n{preset['label']}: largest |median difference| / spread {ratio:.2f}")
        assert agree, (preset["label"], ratio)


def test_networks_rescaled_in_place_are_the_networks_drawn_afresh(engine_page: object) -> None:
    """A change of initialiser or gain rescales the kept weights: the result is a fresh run's."""
    settings = {"depth": 12, "width": 16, "batch": 8, "trials": 3}
    same = engine_page.evaluate(
        """async size => {
            const {DEFAULTS, Networks} = await import('/javascripts/explorer/simulate.js');
            const kept = new Networks();
            const steps = [{}, {init: 'xavier_uniform'}, {gain: 0.5}, {init: 'orthogonal'},
                {init: 'he_normal', gain: 2}, {}];
            return steps.map(step => {
                const s = {...DEFAULTS, ...size, ...step};
                const norms = networks => networks.run(s, 0, s.trials)
                    .map(r => [...r.log10GradNorms, ...r.log10WeightGradNorms]);
                return JSON.stringify(norms(kept)) === JSON.stringify(norms(new Networks()));
            });
        }""",
        settings,
    )
    assert all(same), same


# --- the page, as the site serves it ---

DEFAULT_STATE = (
    "activation=relu&init=he_normal&gain=1&depth=60&width=32&batch=16&trials=8&seed=1"
    "&batchnorm=0&residual=0"
)
SPEED_LIMIT_MS = 50  # the issue's: a control change shows its result within 50 ms


def _explorer(
    browser: object, url: str, *, first_result: bool = True, **context: object
) -> tuple[object, list[str]]:
    """Open the explorer page at `url` and wait for its first result (or for its controls)."""
    page = browser.new_context(**context).new_page()
    errors: list[str] = []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    if first_result:
        page.wait_for_function("document.querySelector('#explorer')?.dataset.state !== undefined")
    else:
        page.wait_for_selector("#explorer.vg-explorer-ready")
    return page, errors


def _readout(page: object, table: str = "#explorer-readout") -> list[list[str]]:
    return page.evaluate(
        """table => [...document.querySelectorAll(`${table} tr`)].map(
            row => [...row.cells].map(cell => cell.textContent))""",
        table,
    )


class _NextUpdate:
    """Waits for the explorer's next result, listened for from before the action causing it."""

    def __init__(self, page: object) -> None:
        self.page = page
        page.evaluate(
            """() => { window.vgNextUpdate = new Promise(resolve => document
                .addEventListener('explorer-update', () => resolve(true), {once: true})); }"""
        )

    def json_value(self) -> bool:
        return self.page.evaluate("window.vgNextUpdate")


def _next_update(page: object) -> _NextUpdate:
    return _NextUpdate(page)


def _change(page: object, name: str, value: str) -> float:
    """Set a control as a reader would (its input or change event); ms until the result shows.

    Measured in the page, from the event to the explorer's update event, which it sends once
    the plots and the table show the new result.
    """
    return page.evaluate(
        """([name, value]) => new Promise(resolve => {
            const root = document.querySelector('#explorer');
            const input = root.querySelector(`[name=${name}]`);
            const started = performance.now();
            document.addEventListener('explorer-update',
                () => resolve(performance.now() - started), {once: true});
            if (input.type === 'checkbox') input.checked = value === '1';
            else input.value = value;
            const kind = input.type === 'range' || input.type === 'number' ? 'input' : 'change';
            input.dispatchEvent(new Event(kind));
        })""",
        [name, value],
    )


def test_the_page_opens_at_its_defaults_with_the_readout_table(
    browser: object,
    server: str,
) -> None:
    page, errors = _explorer(browser, server + "explorer/")
    assert page.evaluate("location.hash") == "#" + DEFAULT_STATE
    rows = _readout(page)
    assert rows[0] == ["layer l", "median log10 ||g_l||", "lower quartile", "upper quartile"]
    assert [row[0] for row in rows[1:]] == [str(layer) for layer in range(61)]
    for _, median, lower, upper in rows[1:]:
        low, mid, high = (float(v.replace("\u2212", "-")) for v in (lower, median, upper))
        assert low <= mid <= high
    # Every control has a visible label bound to it.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('#explorer input, #explorer select')]
            .filter(el => !el.labels || !el.labels.length || !el.labels[0].textContent.trim())
            .map(el => el.name)"""
    )
    assert not unlabelled
    assert page.locator("#explorer svg polyline").count() >= 3  # gradient, weights, theory
    assert not errors, errors
    page.context.close()


def test_a_link_reproduces_a_view_and_hides_controls(
    browser: object,
    server: str,
) -> None:
    state = (
        "activation=tanh&init=xavier_uniform&gain=1.5&depth=12&width=16&batch=8&trials=4&seed=7"
        "&batchnorm=1&residual=post&loss=random&hide=init,gain"
    )
    views = []
    for _ in range(2):
        page, errors = _explorer(browser, f"{server}explorer/#{state}")
        assert page.evaluate("location.hash") == "#" + state
        assert page.eval_on_selector("#explorer [name=depth]", "el => el.value") == "12"
        assert page.eval_on_selector("#explorer [name=residual]", "el => el.value") == "post"
        hidden = page.evaluate(
            """() => [...document.querySelectorAll('#explorer [data-control]')]
                .filter(el => el.hidden).map(el => el.dataset.control)"""
        )
        assert hidden == ["init", "gain"]
        views.append(_readout(page))
        assert len(views[-1]) == 1 + 13
        assert not errors, errors
        page.context.close()
    assert views[0] == views[1]


def test_controls_work_from_the_keyboard_and_update_the_url(
    browser: object,
    server: str,
) -> None:
    page, errors = _explorer(browser, server + "explorer/")
    page.focus("#explorer [name=depth]")
    waiting = _next_update(page)
    page.keyboard.press("ArrowRight")
    assert waiting.json_value()
    want = "#activation=relu&init=he_normal&gain=1&depth=61&"
    assert page.evaluate("location.hash").startswith(want)
    assert len(_readout(page)) == 1 + 62
    # A preset is a button: Tab reaches it, Enter presses it.
    page.focus("#explorer .vg-presets button")
    waiting = _next_update(page)
    page.keyboard.press("Enter")
    assert waiting.json_value()
    assert "init=xavier_normal" in page.evaluate("location.hash")
    assert not errors, errors
    page.context.close()


def _controls(page: object) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#explorer [name]')]
            .map(el => [el.name, el.type === 'checkbox' ? (el.checked ? '1' : '0') : el.value]))"""
    )


def _shows(page: object, state: str) -> None:
    """Wait until the page's explorer shows `state`, table filled, and goes on showing it.

    A hash change makes Material's instant navigation fetch the page and put its content back,
    with a new explorer in it, while the old one may already have shown the new state: what
    counts is the explorer left in the page, once it has shown the state for half a second.
    """
    page.evaluate("window.vgShown = null")
    page.wait_for_function(
        """state => {
            const root = document.querySelector('#explorer');
            const depth = Number(new URLSearchParams(state).get('depth'));
            const shown = root && root.dataset.busy === '0' && root.dataset.state === state
                && root.querySelectorAll('#explorer-readout tbody tr').length === depth + 1;
            if (!shown || window.vgShown?.root !== root) {
                window.vgShown = shown ? {root, since: performance.now()} : null;
                return false;
            }
            return performance.now() - window.vgShown.since > 500;
        }""",
        arg=state,
        polling=50,
    )


def test_the_url_hash_follows_the_controls_and_the_controls_follow_the_hash(
    browser: object,
    server: str,
) -> None:
    page, errors = _explorer(browser, server + "explorer/")
    # A control moved: the hash is the form, in its order, at once.
    _change(page, "width", "48")
    wider = DEFAULT_STATE.replace("width=32", "width=48")
    assert page.evaluate("location.hash") == "#" + wider
    wider_readout = _readout(page)
    # The hash edited (as a reader edits the address, or a link on the page sets it): the
    # controls and the readout follow.
    edited = "activation=tanh&init=xavier_normal&gain=1.5&depth=20&width=16&batch=8&trials=4"
    edited += "&seed=3&batchnorm=1&residual=post&loss=random"
    page.evaluate(f"location.hash = '#{edited}'")
    _shows(page, edited)
    want = dict(part.split("=") for part in edited.split("&"))
    assert _controls(page) == want
    edited_readout = _readout(page)
    assert len(edited_readout) == 1 + 21
    fresh, fresh_errors = _explorer(browser, f"{server}explorer/#{edited}")
    assert _readout(fresh) == edited_readout  # the same view as a link to it opens
    fresh.context.close()
    # Back and forward walk through the hashes, and the view follows each.
    views = {"back": (wider, wider_readout), "forward": (edited, edited_readout)}
    for move, (state, readout) in views.items():
        page.evaluate(f"history.{move}()")
        _shows(page, state)
        assert page.evaluate("location.hash") == "#" + state
        controls = {"loss": "sum", **dict(part.split("=") for part in state.split("&"))}
        assert _controls(page) == controls, move
        assert _readout(page) == readout, move
    assert not errors, errors
    assert not fresh_errors, fresh_errors
    page.context.close()


# Changes a reader makes at the defaults, each from the one before; the first two warm up.
CHANGES = [
    ("activation", "tanh"),
    ("activation", "relu"),
    ("activation", "tanh"),
    ("init", "xavier_normal"),
    ("batchnorm", "1"),
    ("batchnorm", "0"),
    ("residual", "1"),
    ("residual", "0"),
    ("activation", "sigmoid"),
    ("init", "he_normal"),
    ("loss", "random"),
    ("activation", "relu"),
]


def test_a_control_change_shows_its_result_within_50_ms_at_the_defaults(
    browser: object,
    server: str,
) -> None:
    """The median over a round of changes; the best of up to three rounds, as timeit takes the
    best of its repeats: other work on the machine (the rest of the test suite runs beside the
    browser) only ever adds time, so the fastest round is the nearest to the explorer's own."""
    page, errors = _explorer(browser, server + "explorer/")
    rounds = []
    for _ in range(3):
        times = [_change(page, name, value) for name, value in CHANGES]
        measured = sorted(times[2:])  # the first two also warm up (compilation, draws)
        rounds.append((measured[len(measured) // 2], measured[-1], times[2:]))
        if rounds[-1][0] < SPEED_LIMIT_MS:
            break
    median, slowest, times = min(rounds)
    print(
        f"\nexplorer update times at the defaults (ms), best of {len(rounds)} rounds: "
        f"{[round(t, 1) for t in times]}; median {median:.1f}, slowest {slowest:.1f}; "
        f"medians of the rounds: {[round(r[0], 1) for r in rounds]}"
    )
    assert median < SPEED_LIMIT_MS, rounds
    assert not errors, errors
    page.context.close()


def test_large_settings_show_progress_and_the_page_stays_responsive(
    browser: object,
    server: str,
) -> None:
    large = DEFAULT_STATE.replace("depth=60", "depth=200").replace("width=32", "width=128")
    large = large.replace("batch=16", "batch=64").replace("trials=8", "trials=32")
    page, errors = _explorer(browser, f"{server}explorer/#{large}", first_result=False)
    page.wait_for_selector("#explorer progress:not([hidden])", timeout=10_000)
    page.wait_for_function(
        "document.querySelector('#explorer .vg-status').textContent.startsWith('Computing')"
    )
    # The main thread answers at once: the networks run in the workers.
    started = page.evaluate("performance.now()")
    assert page.evaluate("performance.now()") - started < 100
    # A smaller setting supersedes the large one and shows.
    waiting = _next_update(page)
    page.evaluate(f"location.hash = '#{DEFAULT_STATE}'")
    assert waiting.json_value()
    assert page.evaluate("document.querySelector('#explorer').dataset.state") == DEFAULT_STATE
    assert not errors, errors
    page.context.close()


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_readable_in_dark_mode_and_on_a_phone(
    browser: object,
    server: str,
    color_scheme: str,
) -> None:
    viewport = {"width": 390, "height": 844} if color_scheme == "dark" else None
    context = {"color_scheme": color_scheme, **({"viewport": viewport} if viewport else {})}
    page, errors = _explorer(browser, server + "explorer/", **context)
    scheme = page.get_attribute("body", "data-md-color-scheme")
    assert scheme == ("slate" if color_scheme == "dark" else "default")
    colours = page.evaluate(
        """() => ({background: getComputedStyle(document.body).backgroundColor,
            lines: [...document.querySelectorAll('#explorer .vg-line')]
                .map(line => getComputedStyle(line).stroke),
            text: getComputedStyle(document.querySelector('#explorer .vg-axes text')).fill})"""
    )
    for colour in [*colours["lines"], colours["text"]]:
        # WCAG's 3:1 for graphics; 4.5:1 would be for text, and the axis labels pass it too.
        assert test_browser._contrast(colour, colours["background"]) >= 3, colours
    assert test_browser._contrast(colours["text"], colours["background"]) >= 4.5, colours
    if viewport:
        # Nothing wider than the phone: the page does not scroll sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    page.screenshot(
        path=test_browser._screenshot_name("explorer", f"-{color_scheme}"), full_page=True
    )
    assert not errors, errors
    page.context.close()


def _own_bytes(visit: object) -> dict[str, int]:
    """The explorer's files among what a visit fetched (its workers' too), bytes of each."""
    weights = {}
    for url, request in visit.answered.items():
        path = urlparse(url).path
        if "/javascripts/explorer/" in path or path.endswith("/explorer.css"):
            weights[path] = len(request.response().body()) + request.sizes()["responseHeadersSize"]
    return weights


def test_page_weight_with_and_without_the_explorer(browser: object, server: str) -> None:
    page, visit = test_browser._open(browser, server + "explorer/")
    page.wait_for_function("document.querySelector('#explorer')?.dataset.state !== undefined")
    page.wait_for_load_state("networkidle")
    with_explorer = visit.weigh()
    own = _own_bytes(visit)
    # The workers' script comes in with the rest, counted from the network.
    assert "/javascripts/explorer/worker.js" in own, own
    without = with_explorer - sum(own.values())
    print(
        f"\nexplorer page: {with_explorer:,} bytes with the explorer, {without:,} without; "
        f"the explorer's scripts and styles: {sum(own.values()):,} bytes"
    )
    assert with_explorer <= test_browser.PAGE_WEIGHT_BUDGET
    assert not visit.off_site, visit.off_site
    page.context.close()


# --- the embeds on the problem and cure pages ---

# Each page with an embed, and the line its snippet prints for the embed's setting, as a
# pattern whose group is the median (on deep-sigmoid, the mean) log10 change from the output
# to the input: the build-time number the embed's first readout must agree with.
EMBEDS = {
    "deep-sigmoid/": r"x1: factor per layer [\d.]+, input/output 10\^(-?[\d.]+)",
    "initialisation/": r"relu xavier_normal +std +[\d.]+ +-> +[\de.+-]+, grad 10\^(-?[\d.]+)",
    "batchnorm/": r"sigmoid std 0\.01: with BN +grad 10\^ *(-?[\d.]+)",
    "residual/": r"sigmoid residual: input/output 10\^ *(-?[\d.]+)",
}
EMBED = ".vg-embed .vg-explorer"
# What an embed may add to a page's first visit: its loader, embed.js, and nothing else.
EMBED_FIRST_VISIT_BYTES = 4_000


def _wait_for_embed(page: object) -> None:
    page.wait_for_function(
        f"document.querySelector('{EMBED}')?.dataset.updateMs !== undefined", timeout=60_000
    )


def _without_hide(state: str) -> str:
    return "&".join(part for part in state.split("&") if not part.startswith("hide="))


@pytest.mark.parametrize("path", list(EMBEDS))
def test_an_embed_loads_on_request_and_agrees_with_its_page(
    browser: object, server: str, path: str
) -> None:
    page, visit = test_browser._open(browser, server + path)
    # Read, not run: before the reader asks, the page has fetched the loader alone.
    first_visit = visit.bytes
    assert list(_own_bytes(visit)) == ["/javascripts/explorer/embed.js"]
    assert sum(_own_bytes(visit).values()) <= EMBED_FIRST_VISIT_BYTES
    assert not page.workers
    assert page.locator(".vg-embed").count() == 1
    state = page.get_attribute(".vg-embed", "data-state")
    want_link = f"{server}explorer/#{_without_hide(state)}"
    assert page.get_attribute(".vg-embed .vg-link", "href") == want_link
    # From the keyboard: the button takes the focus and Enter presses it.
    page.focus(".vg-embed button")
    page.keyboard.press("Enter")
    _wait_for_embed(page)
    page.wait_for_load_state("networkidle")
    print(f"\n{path}: {first_visit:,} bytes on a first visit, {visit.weigh():,} once run")
    assert page.evaluate(f"document.querySelector('{EMBED}').dataset.state") == state
    hidden = page.evaluate(
        f"""() => [...document.querySelectorAll('{EMBED} [data-control]')]
            .filter(el => el.hidden).map(el => el.dataset.control)"""
    )
    hide = dict(part.split("=") for part in state.split("&"))["hide"].split(",")
    assert sorted(hidden) == sorted(hide)
    assert page.locator(f"{EMBED} .vg-presets").count() == 0
    assert page.evaluate("document.activeElement.closest('.vg-field') !== null")
    rows = _readout(page, f"{EMBED} table.vg-readout")[1:]
    values = [[float(v.replace("\u2212", "-")) for v in row[1:]] for row in rows]
    through = values[0][0] - values[-1][0]
    spread = values[0][2] - values[0][1]  # the output's norm is the same in every trial
    printed = re.search(EMBEDS[path], page.inner_text(".md-content"))
    assert printed, f"{path}: the page no longer prints its embed's number"
    number = printed[1]
    rounding = 0.5 * 10 ** -len(number.partition(".")[2])
    difference = abs(through - float(number))
    print(
        f"{path}: embed 10^{through:.3f} (quartiles' spread {spread:.3f}), "
        f"page 10^{number}; difference {difference:.3f}"
    )
    assert difference <= spread + rounding, (path, through, number, spread)
    # The link follows the embed's settings and opens the explorer at the same view.
    link = page.get_attribute(f"{EMBED} .vg-link", "href")
    assert link == want_link
    explorer, errors = _explorer(browser, link)
    assert _readout(explorer)[1:] == rows
    assert not errors, errors
    explorer.context.close()
    assert not visit.errors, visit.errors
    assert not visit.off_site, visit.off_site
    page.context.close()


def test_embeds_work_across_materials_instant_navigation(browser: object, server: str) -> None:
    page, visit = test_browser._start(browser, "about:blank")

    # Material navigates instantly to the pages its sitemap names, matched by protocol, host
    # and port; the sitemap names the site at its site_url, the test server is elsewhere.
    def sitemap(route: object) -> None:
        body = route.fetch().text()
        pages = re.findall(r"<loc>(.*?)</loc>", body)
        site_url = min(pages, key=len)  # the home page's address is the site's
        route.fulfill(body=body.replace(site_url, server), content_type="application/xml")

    page.route("**/sitemap.xml", sitemap)
    page.goto(server)
    test_browser._settle(page, visit)
    page.evaluate("window.vgSamePage = true")  # gone if a link reloaded the page
    for path in ("deep-sigmoid/", "residual/"):
        page.locator(f".md-nav a[href$='{path}']").first.click()
        page.wait_for_url(f"**/{path}")
        page.locator(".vg-embed button").click()
        _wait_for_embed(page)
        assert page.evaluate("window.vgSamePage"), "the link reloaded the page"
        assert len(_readout(page, f"{EMBED} table.vg-readout")) > 2, path
    assert not visit.errors, visit.errors
    page.context.close()


@pytest.mark.parametrize("path", list(EMBEDS))
def test_embeds_are_readable_in_dark_mode_on_a_phone(
    browser: object, server: str, path: str
) -> None:
    phone = {"width": 390, "height": 844}
    page = browser.new_context(color_scheme="dark", viewport=phone).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + path)
    page.locator(".vg-embed button").click()
    _wait_for_embed(page)
    colours = page.evaluate(
        f"""() => ({{background: getComputedStyle(document.body).backgroundColor,
            lines: [...document.querySelectorAll('{EMBED} .vg-line')]
                .map(line => getComputedStyle(line).stroke),
            text: getComputedStyle(document.querySelector('{EMBED} .vg-axes text')).fill}})"""
    )
    assert colours["lines"]
    for colour in [*colours["lines"], colours["text"]]:
        assert test_browser._contrast(colour, colours["background"]) >= 3, colours
    assert test_browser._contrast(colours["text"], colours["background"]) >= 4.5, colours
    assert page.evaluate("document.documentElement.scrollWidth") <= phone["width"]
    test_browser.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".vg-embed").screenshot(
        path=test_browser._screenshot_name(path, "-embed-dark-phone")
    )
    assert not errors, errors
    page.context.close()
