"""`--log-format json`: one object a line, carrying the ids bound for the call being handled."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from p2pfaas import logfmt
from tests.ports import free_port


def json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logfmt.JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, out


async def test_bound_ids_reach_every_line_of_the_call_and_its_tasks() -> None:
    logger, out = json_logger("p2pfaas.test.bound")

    async def inner() -> None:
        logger.info("in a task the call started")

    with logfmt.bind(invocation="inv-1"):
        logfmt.annotate(function="resize")
        logger.info("running %s", "it")
        await asyncio.create_task(inner())
    logger.info("after the call")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["msg"], line.get("invocation"), line.get("function")) for line in lines] == [
        ("running it", "inv-1", "resize"),
        ("in a task the call started", "inv-1", "resize"),
        ("after the call", None, None),
    ]
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "p2pfaas.test.bound"


def test_an_exception_is_one_field_of_one_line() -> None:
    logger, out = json_logger("p2pfaas.test.exception")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("it failed")
    (line,) = out.getvalue().splitlines()
    assert "ValueError: bad\nthing" in json.loads(line)["exception"]


def test_the_anchor_logs_json_lines_when_asked(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "p2pfaas", "anchor", "serve", "--log-format", "json", "--port", str(port),
        "--dht-port", str(free_port()), "--db", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
    ]  # fmt: skip
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ}) as process:
        assert process.stderr is not None
        try:
            first = process.stderr.readline()  # the anchor says where it listens, then serves
        finally:
            process.terminate()
            process.wait(timeout=30)
    line = json.loads(first)
    assert line["level"] == "info" and str(port) in line["msg"]
