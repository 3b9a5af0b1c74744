"""The runtime that runs next to user code: `shim.py` and the `Dockerfile` that packages it.

`shim.py` is a standalone stdlib-only script. It is a module of this package only so that tests
and the process executor can find it; it must never import anything from `p2pfaas`, because in
a container it runs alone on Debian's python3.
"""

from __future__ import annotations

from pathlib import Path

RUNTIME_DIR = Path(__file__).resolve().parent
SHIM_PATH = RUNTIME_DIR / "shim.py"
DOCKERFILE_PATH = RUNTIME_DIR / "Dockerfile"
