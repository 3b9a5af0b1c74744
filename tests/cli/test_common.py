"""What the command groups share (p2pfaas/cli/common.py): HOST:PORT peers, DHT seeds from the
environment, commands bound to their handlers, and `--log-format`."""

from __future__ import annotations

import argparse

import pytest

from p2pfaas.cli.common import add_log_format, as_lessee, command, dht_seeds, peer_arg, run
from p2pfaas.errors import LocalError


def test_a_peer_is_host_and_port_or_a_usage_error() -> None:
    assert peer_arg("127.0.0.1:8468") == ("127.0.0.1", 8468)
    with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
        peer_arg("nonsense")


def test_dht_seeds_come_from_the_option_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    given = argparse.Namespace(dht_seed=[("192.0.2.1", 1)])
    assert dht_seeds(given) == (("192.0.2.1", 1),)
    monkeypatch.setenv("P2PFAAS_DHT_SEEDS", " 192.0.2.2:2 ,, 192.0.2.3:3")
    assert dht_seeds(argparse.Namespace(dht_seed=None)) == (("192.0.2.2", 2), ("192.0.2.3", 3))
    monkeypatch.setenv("P2PFAAS_DHT_SEEDS", "192.0.2.2:2,bad")
    with pytest.raises(LocalError, match="P2PFAAS_DHT_SEEDS"):
        dht_seeds(argparse.Namespace(dht_seed=None))


def test_a_command_runs_its_handler_with_the_lessees_options_and_a_log_format() -> None:
    parser = argparse.ArgumentParser()
    add_log_format(parser, default="text")
    group = parser.add_subparsers(dest="group", required=True)
    seen: list[argparse.Namespace] = []

    def hello(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    sub = command(group, "hello", hello, "say hello")
    as_lessee(sub)
    add_log_format(sub)
    args = parser.parse_args(["hello", "--anchor", "http://127.0.0.1:1", "--log-format", "json"])
    assert args.handler(args) == 0 and seen == [args]
    assert (args.anchor, args.log_format) == ("http://127.0.0.1:1", "json")
    assert parser.parse_args(["hello"]).log_format == "text"  # the top parser's default stands


def test_run_returns_what_the_coroutine_returns_also_for_daemons() -> None:
    async def answer() -> int:
        return 42

    assert run(answer()) == 42 and run(answer(), daemon=True) == 42
