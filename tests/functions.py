"""Function directories used by tests: written on the fly into a temporary directory."""

from __future__ import annotations

from pathlib import Path

HANDLERS = {
    "echo": "def handle(event):\n    return {'echo': event}\n",
    "boom": (
        "def helper(x):\n    raise ValueError(f'bad input {x!r}')\n\n"
        "def handle(event):\n    return helper(event)\n"
    ),
    "sleepy": "import time\n\ndef handle(event):\n    time.sleep(event.get('s', 30))\n    return 'woke'\n",
    "hog": (
        "def handle(event):\n    blocks = []\n"
        "    while True:\n        blocks.append(bytearray(16 * 1024 * 1024))\n"
    ),
}


def write_function(
    root: Path, kind: str, *, name: str | None = None, memory_mb: int = 64, timeout_s: float = 5.0
) -> Path:
    """A function directory `root/name` whose handler behaves as HANDLERS[kind]."""
    directory = root / (name or kind)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(HANDLERS[kind])
    (directory / "p2pfaas.toml").write_text(
        f'name = "{name or kind}"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        f"memory_mb = {memory_mb}\ntimeout_s = {timeout_s}\ndeterministic = false\n"
    )
    return directory
