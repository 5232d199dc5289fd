"""How many threads vangrad may use, and the pool that runs independent networks in parallel.

numpy releases the GIL inside its matrix products and elementwise loops, so independent
networks of a stack run in parallel on Python threads. vangrad uses as many threads as
`VANGRAD_NUM_THREADS` says, otherwise one per CPU the process may run on. It reads no other
library's variable: `OPENBLAS_NUM_THREADS` sizes BLAS's own pool, and the fast engine splits a
stack over vangrad's threads only where the products are too small for BLAS to thread, so the
two pools do not compete.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["map_in_threads", "thread_count"]

T = TypeVar("T")

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    # A forked child inherits the pools but not their threads: its tasks would never run.
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def thread_count() -> int:
    """The number of threads vangrad may use (at least 1); see the module docstring."""
    value = os.environ.get("VANGRAD_NUM_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"VANGRAD_NUM_THREADS must be an integer >= 1, got {value!r}")
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def map_in_threads(function: Callable[..., T], arguments: Sequence[tuple]) -> list[T]:
    """`[function(*a) for a in arguments]`, each call on a thread of a shared pool."""
    workers = len(arguments)
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="vangrad")
        pool = _pools[workers]
    return list(pool.map(lambda a: function(*a), arguments))
