"""TLS bound to node identities (p2pfaas.tls), and an anchor serving HTTPS with a CA's certificate."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2pfaas import rpc, tls
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.errors import ConfigError, IdentityMismatch, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Observed

NODE = KeyPair.from_seed(b"tls/node")
OTHER = KeyPair.from_seed(b"tls/other")


@asynccontextmanager
async def https_node(keys: KeyPair, directory: Path) -> AsyncIterator[tuple[str, list[object]]]:
    """A server with `keys`' identity certificate; yields its host:port and the peers it served."""
    seen: list[object] = []

    async def whoami(request: web.Request) -> web.Response:
        seen.append(request.transport.get_extra_info("peername") if request.transport else None)
        return rpc.reply(Observed(address="192.0.2.1"))

    app = web.Application()
    app.add_routes([web.get(tls.identity_path(keys.key_id) + "/v1/whoami", whoami)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", 0, ssl_context=tls.server_context(*tls.write_node_certificate(keys, directory))
    )
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


def test_the_certificate_carries_the_identity_key_and_is_kept(tmp_path: Path) -> None:
    cert, key = tls.write_node_certificate(NODE, tmp_path)
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert tls.peer_node_id(der) == NODE.key_id
    assert cert.stat().st_mode & 0o777 == 0o600 and key.stat().st_mode & 0o777 == 0o600
    before = cert.read_bytes()
    assert tls.write_node_certificate(NODE, tmp_path) == (cert, key)
    assert cert.read_bytes() == before  # the same key: kept
    tls.write_node_certificate(OTHER, tmp_path)  # another key in the directory: replaced
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert tls.peer_node_id(der) == OTHER.key_id


def test_identity_urls_name_a_node_only_over_https() -> None:
    node_id = NODE.key_id
    assert tls.identity_of(f"https://192.0.2.5:8800/n/{node_id}") == node_id
    assert tls.identity_of(f"https://192.0.2.5:8800/n/{node_id}/v1/relay/{OTHER.key_id}/v1/x") == node_id
    assert tls.identity_of(f"http://192.0.2.5:8800/n/{node_id}") is None  # plain: nothing to pin
    assert tls.identity_of(f"https://192.0.2.5:8800/n/{node_id}x") is None
    assert tls.identity_of("https://anchor.example/v1/whoami") is None
    assert tls.ssl_for("https://anchor.example/v1/whoami") is True  # ordinary verification
    assert tls.ssl_for(f"https://h/n/{node_id}") is tls.ssl_for(f"https://h/n/{node_id}/v1/x")


async def test_a_pinned_call_reaches_the_node_it_names_over_one_connection(tmp_path: Path) -> None:
    async with https_node(NODE, tmp_path) as (hostport, seen), aiohttp.ClientSession() as session:
        url = f"https://{hostport}{tls.identity_path(NODE.key_id)}/v1/whoami"
        for _ in range(3):
            got = await rpc.call(session, "GET", url, Observed, timeout_s=10.0)
            assert got.address == "192.0.2.1"
    assert len(seen) == 3 and len(set(map(str, seen))) == 1  # pooled: pins for one node are equal


async def test_a_peer_that_cannot_prove_the_named_key_gets_nothing(tmp_path: Path) -> None:
    async with https_node(OTHER, tmp_path) as (hostport, seen), aiohttp.ClientSession() as session:
        url = f"https://{hostport}{tls.identity_path(NODE.key_id)}/v1/whoami"  # NODE's URL, OTHER answers
        with pytest.raises(IdentityMismatch, match=NODE.key_id):
            await rpc.call(session, "GET", url, Observed, timeout_s=10.0)
        bare = f"https://{hostport}/v1/whoami"  # no identity and no CA: refused by ordinary verification
        with pytest.raises(Unreachable):
            await rpc.call(session, "GET", bare, Observed, timeout_s=10.0)
    assert seen == []  # no request reached the impostor


def _ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it issued for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pfaas test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anchor")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "anchor.pem", directory / "anchor.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


async def test_an_anchor_serves_https_that_a_lessee_verifies_against_its_ca(tmp_path: Path) -> None:
    ca, cert, key = _ca_and_server_cert(tmp_path)
    settings = AnchorSettings(tls_cert=str(cert), tls_key=str(key), allow_signup=True)
    async with AnchorServer(
        f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}", port=0, settings=settings
    ) as anchor:
        assert anchor.url.startswith("https://127.0.0.1:")

        def signup(name: str, **env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "p2pfaas",
                    "account",
                    "signup",
                    name,
                    "--anchor",
                    anchor.url,
                    "--password-stdin",
                ],
                input="correct horse battery staple\n",
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "P2PFAAS_HOME": str(tmp_path / name), **env},
            )

        untrusted = await asyncio.to_thread(signup, "mallory")
        assert untrusted.returncode != 0 and "certificate" in (untrusted.stderr + untrusted.stdout).lower()
        trusted = await asyncio.to_thread(signup, "alice", SSL_CERT_FILE=str(ca))
        assert trusted.returncode == 0, trusted.stderr
        assert (tmp_path / "alice" / "token").exists()


def test_a_missing_or_mismatched_certificate_is_a_clear_config_error(tmp_path: Path) -> None:
    cert, _ = tls.write_node_certificate(NODE, tmp_path / "node")
    _, other_key = tls.write_node_certificate(OTHER, tmp_path / "other")
    with pytest.raises(ConfigError, match="cannot serve TLS"):
        tls.server_context(tmp_path / "missing.pem", tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="cannot serve TLS"):
        tls.server_context(cert, other_key)  # a key that is not the certificate's
