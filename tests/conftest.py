"""Test-wide set-up: a headless plotting backend and no figures left open between tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Before anything imports pyplot: tests never open a window, on CI or on a laptop.
os.environ["MPLBACKEND"] = "Agg"

import matplotlib.pyplot as plt
import pytest


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")
