"""Log lines as text or as JSON (`--log-format json`), with the ids of the call being handled.

`setup(level, form)` configures the root logger once per process. `bind(invocation=..., function=...)`
sets fields for everything logged inside it, in this task and the tasks it starts (a contextvar);
`set_process(node=...)` sets fields for the whole process (a node's id). In JSON every record is one
object a line, `{"ts", "level", "logger", "msg", ...fields}`, so one call can be followed across
nodes by its `invocation` id: `jq 'select(.invocation == "...")'` over every node's log.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

__all__ = ["FORMS", "JsonFormatter", "annotate", "bind", "current_form", "set_process", "setup"]

FORMS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Fields = tuple[tuple[str, str], ...]  # immutable: a contextvar's value is shared by the tasks it reaches
_fields: contextvars.ContextVar[Fields] = contextvars.ContextVar("p2pfaas_log_fields", default=())
_process: dict[str, str] = {}
_form = "text"


@contextlib.contextmanager
def bind(**fields: str) -> Iterator[None]:
    """Add `fields` to every record logged inside the block (and in tasks started inside it)."""
    token = _fields.set(_fields.get() + tuple(fields.items()))
    try:
        yield
    finally:
        _fields.reset(token)


def annotate(**fields: str) -> None:
    """Add `fields` for the rest of the current task (an enclosing `bind` takes them back)."""
    _fields.set(_fields.get() + tuple(fields.items()))


def set_process(**fields: str) -> None:
    _process.update(fields)


def current_form() -> str:
    """The form `setup` was given last ("text" before any): what a node's workers log in too."""
    return _form


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 6),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_process,
            **dict(_fields.get()),  # later bindings win
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(level: int, form: str = "text", *, prefix: str = "") -> None:
    """The root logger's one handler, on stderr: `form` "text" (with `prefix` before the logger's
    name, e.g. a worker's index) or "json"."""
    if form not in FORMS:
        raise ValueError(f"log format {form!r}: one of {', '.join(FORMS)}")
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace("%(name)s", prefix + "%(name)s")))
    global _form
    _form = form
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
