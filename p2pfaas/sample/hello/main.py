"""The devnet demo function: greets, adds numbers, and reports where it ran.

The `ran_on` part proves to a lessee that a volunteer's sandbox (not its own machine) did the work:
the container's hostname, the unprivileged uid it runs as and the interpreter version.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any


def handle(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("fail"):
        raise RuntimeError("asked to fail: this is how a function's error reaches the lessee")
    numbers = event.get("numbers", [])
    if not isinstance(numbers, list) or not all(isinstance(n, int | float) for n in numbers):
        raise TypeError("numbers must be a list of numbers")
    return {
        "greeting": f"hello {event.get('name', 'world')}",
        "sum": sum(numbers),
        "ran_on": {
            "hostname": socket.gethostname(),
            "uid": os.getuid(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
