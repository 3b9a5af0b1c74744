"""`p2pfaas account ...` (p2pfaas/cli/account.py) against a real anchor on 127.0.0.1: every command
runs as its own process, as users do, against an anchor process; amounts are credits."""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2pfaas.cli import main
from p2pfaas.cli.account import credits_to_micro, micro_to_credits
from p2pfaas.errors import ConfigError
from p2pfaas.identity import KeyPair
from tests.functions import write_function
from tests.ports import free_port

PASSWORD = "a long enough password"


def run_process(*args: str, home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pfaas", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "P2PFAAS_HOME": str(home), "P2PFAAS_TOKEN": ""},
        check=False,
    )


@dataclass
class Shell:
    """`p2pfaas ...` in this process (the entry point's `main`), with its own home, stdin and output."""

    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str, home: Path, stdin: str = "", check: bool = True) -> Done:
        self.monkeypatch.setenv("P2PFAAS_HOME", str(home))
        self.monkeypatch.delenv("P2PFAAS_TOKEN", raising=False)
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = self.capsys.readouterr()
        if check:
            assert code == 0, err
        return Done(code, out, err)


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def anchor_process(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    db = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    log = (tmp_path / "anchor.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pfaas",
            "anchor",
            "serve",
            "--port",
            str(port),
            "--db",
            db,
            "--dht-port",
            "0",
            "--require-accounts",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "anchor.log").read_text()
                time.sleep(0.05)
        yield url, db
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_the_account_commands_end_to_end(
    anchor_process: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, db = anchor_process
    run = Shell(monkeypatch, capsys)
    alice, vera, root = tmp_path / "alice", tmp_path / "vera", tmp_path / "root"
    run("account", "add-operator", "root", "--db", db, "--password-stdin", home=root, stdin=f"{PASSWORD}\n")

    done = run(
        "account", "signup", "alice", "--anchor", url, "--password-stdin", home=alice, stdin=f"{PASSWORD}\n"
    )
    assert "signed up alice (lessee)" in done.stdout
    token_file = alice / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "alice (lessee)" in run("account", "whoami", "--anchor", url, home=alice).stdout

    run("keys", "new", "--out", str(alice / "lessee.key"), home=alice)
    function_dir = write_function(tmp_path / "fns", "echo")
    deploy = ("fn", "deploy", str(function_dir), "--anchor", url, "--key", str(alice / "lessee.key"))
    refused = run(*deploy, home=alice, check=False)  # --require-accounts: claim the key first
    assert refused.returncode == 1 and "bound to an account" in refused.stderr
    claimed = run("account", "claim-key", "--anchor", url, "--key", str(alice / "lessee.key"), home=alice)
    assert KeyPair.load(alice / "lessee.key").key_id in claimed.stdout
    assert "deployed echo" in run(*deploy, home=alice).stdout

    scoped = run("account", "token", "create", "--anchor", url, "--scope", "account:read", home=alice)
    new_token = scoped.stdout.strip()
    assert (
        new_token.startswith("p2pf_")
        and new_token not in run("account", "token", "list", "--anchor", url, home=alice).stdout
    )

    run(
        "account",
        "signup",
        "vera",
        "--role",
        "volunteer",
        "--anchor",
        url,
        "--password-stdin",
        home=vera,
        stdin=f"{PASSWORD}\n",
    )
    node_key = vera / "node.key"
    KeyPair.generate().save(node_key)
    assert (
        "node key"
        in run("account", "claim-node", "--anchor", url, "--node-key", str(node_key), home=vera).stdout
    )
    mine = run("account", "reputation", "--anchor", url, home=vera).stdout  # default: the claimed nodes
    assert KeyPair.load(node_key).key_id in mine and "agreed 0" in mine
    # A lessee cannot claim a node, and a wrong password logs nobody in.
    assert (
        run(
            "account", "claim-node", "--anchor", url, "--node-key", str(node_key), home=alice, check=False
        ).returncode
        == 1
    )
    wrong = run(
        "account",
        "login",
        "vera",
        "--anchor",
        url,
        "--password-stdin",
        home=alice,
        stdin="nope nope nope\n",
        check=False,
    )
    assert wrong.returncode == 1 and "wrong username or password" in wrong.stderr

    run("account", "login", "root", "--anchor", url, "--password-stdin", home=root, stdin=f"{PASSWORD}\n")
    granted = run("account", "grant", "vera", "2.5", "--ref", "welcome", "--anchor", url, home=root)
    assert "2.500000 credits" in granted.stdout
    again = run("account", "grant", "vera", "2.5", "--ref", "welcome", "--anchor", url, home=root)
    assert "done before" in again.stdout and "2.500000" in again.stdout
    assert (
        run(
            "account", "grant", "vera", "1", "--ref", "x", "--anchor", url, home=alice, check=False
        ).returncode
        == 1
    )
    # A manual payment is recorded by an operator for a user; a lessee cannot vouch for its own.
    topup = ("account", "topup", "3", "--ref", "bank-42", "--user", "alice", "--anchor", url)
    assert run(*topup, home=alice, check=False).returncode == 1
    assert "3.000000 credits" in run(*topup, home=root).stdout
    assert "recorded before" in run(*topup, home=root).stdout

    requested = run(
        "account", "payout", "request", "1.25", "--to", "IBAN DE00", "--id", "p1", "--anchor", url, home=vera
    )
    assert "pending" in requested.stdout
    payout_id = requested.stdout.split()[1].rstrip(":")
    assert "1.250000" in run("account", "balance", "--anchor", url, home=vera).stdout
    assert (
        run("account", "payout", "show", payout_id, "--anchor", url, home=alice, check=False).returncode == 1
    )
    assert (
        run(
            "account", "payout", "mark", payout_id, "paid", "--anchor", url, home=vera, check=False
        ).returncode
        == 1
    )
    assert "paid" in run("account", "payout", "mark", payout_id, "paid", "--anchor", url, home=root).stdout
    assert ": paid" in run("account", "payout", "show", payout_id, "--anchor", url, home=vera).stdout

    assert "revoked" in run("account", "logout", "--anchor", url, home=alice).stdout
    assert not token_file.exists()
    gone = run("account", "whoami", "--anchor", url, home=alice, check=False)
    assert gone.returncode == 1 and "not logged in" in gone.stderr


def test_amounts_are_credits_with_six_decimals() -> None:
    assert credits_to_micro("1") == 1_000_000 and credits_to_micro("0.000001") == 1
    assert micro_to_credits(1_250_000) == "1.250000"
    for bad in ("0", "-1", "1.0000001", "lots"):
        with pytest.raises(ConfigError):
            credits_to_micro(bad)
