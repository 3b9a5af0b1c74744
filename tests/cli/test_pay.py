"""Paying from the command line (`p2pfaas.cli.pay`): `--pay` and `--max-price` parsed, no wallet
without `--pay`, and what is refused before anything is bought. Paying end to end, a voucher reused
across two commands: tests/client/test_wallet.py's `test_the_cli_pays_and_reuses_its_voucher_across_runs`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from p2pfaas.cli.pay import add_pay_option, paying
from p2pfaas.client import AsyncClient
from p2pfaas.errors import LocalError
from p2pfaas.identity import KeyPair

ANCHOR = "http://127.0.0.1:9"  # never reached: each case ends before the first call


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_pay_option(parser)
    return parser.parse_args(list(argv))


def test_the_options_default_to_unpaid_at_the_default_ceiling() -> None:
    assert (parse().pay, parse().max_price) == ("", 100)
    args = parse("--pay", "2.5", "--max-price", "300")
    assert (args.pay, args.max_price) == ("2.5", 300)


async def test_without_pay_the_client_gets_no_wallet() -> None:
    async with AsyncClient(ANCHOR, KeyPair.generate()) as client, paying(parse(), client):
        assert client.wallet is None


async def test_paying_needs_a_login_and_a_sane_ceiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2PFAAS_HOME", str(tmp_path))
    monkeypatch.delenv("P2PFAAS_TOKEN", raising=False)
    async with AsyncClient(ANCHOR, KeyPair.generate()) as client:
        with pytest.raises(LocalError, match="not logged in"):
            async with paying(parse("--pay", "1"), client):
                pass
        monkeypatch.setenv("P2PFAAS_TOKEN", "a token")
        with pytest.raises(LocalError, match="--max-price must be between"):
            async with paying(parse("--pay", "1", "--max-price", "-1"), client):
                pass
        assert client.wallet is None
