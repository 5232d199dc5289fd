"""Set up what a reader of the site has: the released package in a fresh virtual environment.

Run as a script by conftest.py, in the background from the first test on (see
tests/test_reader_path.py): it builds the sdist and the wheel from this checkout as
`./dev dist` does, creates a virtual environment with nothing in it, and installs there the
wheel (with the dependency versions the site was built with, `constraints.txt`) and a Jupyter
kernel with nbclient to execute the downloaded notebooks. No editable install, no dev extras.

    python tests/reader_env.py FOLDER

It writes `FOLDER/rc` (0 when the environment is ready) and `FOLDER/setup.log`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a reader adds for the notebooks, beyond the package: a kernel, and what runs one.
NOTEBOOK_EXTRAS = ("ipykernel", "nbclient")


def python_of(folder: Path) -> Path:
    """The reader environment's interpreter."""
    return folder / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def set_up(folder: Path) -> None:
    """Build the package, make the environment and install into it; log to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    # Nothing of the checkout's environment may leak into the reader's.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    with (folder / "setup.log").open("wb") as log:

        def step(*command: str | Path) -> None:
            log.write(f"$ {' '.join(map(str, command))}\n".encode())
            log.flush()
            subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)

        try:
            dist = folder / "dist"
            step(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
            (wheel,) = dist.glob("vangrad-*.whl")
            venv.EnvBuilder(with_pip=True, clear=True).create(folder / "venv")
            pip = (python_of(folder), "-m", "pip", "--disable-pip-version-check", "--quiet")
            step(*pip, "install", "--constraint", ROOT / "constraints.txt", wheel, *NOTEBOOK_EXTRAS)
        except (subprocess.CalledProcessError, ValueError) as error:
            log.write(f"\nfailed: {error}\n".encode())
            (folder / "rc").write_text("1", encoding="utf-8")
            return
    (folder / "rc").write_text("0", encoding="utf-8")


if __name__ == "__main__":
    set_up(Path(sys.argv[1]))
