"""Running the `p2pfaas` command as users do: its own process, output captured."""

from __future__ import annotations

import os
import subprocess
import sys


def p2pfaas(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pfaas", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        check=False,
    )
