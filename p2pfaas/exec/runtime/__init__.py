"""The runtime that runs next to user code: the shim and the `Dockerfile` that packages it.

The shim is a standalone stdlib-only program of several files run from one directory: `shim.py`
(the entry point, run by path, which makes its directory the package `p2pfaas_shim`), `framing`,
`function`, `output`, `serving`, `watchdog` and `forwarder` (declared egress). They are modules of
this package only so that tests and the process executor can find them; they must never import
anything from `p2pfaas` (only each other, relatively), because in a container they run alone on
Debian's python3.
"""

from __future__ import annotations

from pathlib import Path

RUNTIME_DIR = Path(__file__).resolve().parent
SHIM_PATH = RUNTIME_DIR / "shim.py"
# Every file of the shim: all copied into the image, side by side, and all in its hash.
SHIM_FILES = tuple(
    RUNTIME_DIR / name
    for name in (
        "shim.py",
        "framing.py",
        "function.py",
        "output.py",
        "serving.py",
        "watchdog.py",
        "forwarder.py",
    )
)
DOCKERFILE_PATH = RUNTIME_DIR / "Dockerfile"
