"""What every cached build output depends on besides its own source: one digest for all caches.

The figures (hooks/figures.py), the prose's computed numbers (hooks/computed.py) and, under
`mkdocs serve`, the notebook pages (hooks/notebooks.py) are cached under a key that starts
from `code_digest`: vangrad's source, the pinned dependencies (a reinstalled numpy or
matplotlib computes and draws afresh), the Python, the machine, the settings that choose
numpy's and BLAS's kernels, the engine, and the hook's own file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What else decides the last bits of a result: numpy's and OpenBLAS's kernels.
NUMERICAL_SETTINGS = ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")


def code_digest(hook: Path, *, engine: str | None = None) -> Any:
    """A sha256 of the build's inputs and `hook`'s source, to extend with an output's own.

    `engine` is by default the one this process would use (`VANGRAD_ENGINE`; the site's own
    is set by hooks/engine.py before anything is drawn or computed).
    """
    digest = hashlib.sha256()
    digest.update((os.environ.get("VANGRAD_ENGINE", "") if engine is None else engine).encode())
    digest.update(f"{sys.version}|{platform.machine()}".encode())
    digest.update(json.dumps([os.environ.get(name) for name in NUMERICAL_SETTINGS]).encode())
    for path in sorted([*(ROOT / "vangrad").rglob("*.py"), ROOT / "constraints.txt", hook]):
        digest.update(path.resolve().relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest
