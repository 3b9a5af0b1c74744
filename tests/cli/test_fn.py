"""`p2pfaas fn ...` (p2pfaas/cli/fn.py), run as users run it: its own process, real files."""

from __future__ import annotations

from pathlib import Path

from p2pfaas import codec
from p2pfaas.bundle import verify_bundle
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Bundle
from tests.cli.clikit import p2pfaas
from tests.functions import write_function


def test_fn_pack_is_deterministic_and_signed(tmp_path: Path) -> None:
    key = tmp_path / "lessee.key"
    KeyPair.generate().save(key)
    fn = write_function(tmp_path, "echo")
    outs = []
    for i in range(2):
        out = tmp_path / f"echo{i}.p2pfaas"
        done = p2pfaas("fn", "pack", str(fn), "--key", str(key), "--out", str(out))
        assert done.returncode == 0, done.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    bundle = codec.decode_as(Bundle, outs[0])
    verify_bundle(bundle, owner=KeyPair.load(key).public.raw)
    assert bundle.header.digest in done.stdout


def test_bad_dht_seeds_are_refused_with_the_reason(tmp_path: Path) -> None:
    key = tmp_path / "lessee.key"
    KeyPair.generate().save(key)
    flag = p2pfaas("fn", "invoke", "hello", "--key", str(key), "--dht-seed", "nonsense")
    assert flag.returncode == 2 and "peer 'nonsense' is not HOST:PORT" in flag.stderr
    env = {"P2PFAAS_DHT_SEEDS": "127.0.0.1:8468, bad:port"}
    from_env = p2pfaas("fn", "invoke", "hello", "--key", str(key), env=env)
    assert from_env.returncode == 1, from_env.stderr
    assert from_env.stderr.startswith("p2pfaas: error: P2PFAAS_DHT_SEEDS: peer 'bad:port'")
    assert "Traceback" not in from_env.stderr
