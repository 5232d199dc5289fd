"""Keep freed memory in the process, for reuse (Linux with glibc only): the benchmark's opt-in.

vangrad itself changes no process-wide setting; `benchmarks/gradient_flow.py --keep-freed-memory`
calls this before it times anything, so that every engine it times runs with the same setting.

A fresh page costs a page fault on its first write. On the 2-core virtual machines this project
is built and tested on that is about 0.64 ms per megabyte, 16 times the 0.04 ms of writing a
megabyte that is already mapped (measured with `np.empty(...).fill(1.0)`, fresh against
reused). glibc hands freed blocks of a few megabytes straight back to the kernel, so every
large temporary is faulted in again, layer after layer: the engine's tanh layers of 256 x 128
spent a third of their time in page faults.

`keep_freed_memory` asks glibc to serve blocks of up to 32 MiB from its heap and to keep up to
256 MiB of freed memory there. The cost: the process's resident size does not shrink back
after a large run. Elsewhere (macOS, Windows, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers, from <malloc.h>
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit systems
_TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; True if it agreed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Setting either turns off glibc's own adjustment of both, so both are set.
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
