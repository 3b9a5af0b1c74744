"""TLS bound to a node's Ed25519 identity: the node's certificate carries its own key, and callers pin it.

A node serves HTTPS with a self-signed certificate whose subject key *is* its Ed25519 identity key, so
the TLS 1.3 handshake (CertificateVerify) proves the node holds that key: no certificate authority is
involved. A node's HTTPS base URL names the identity it must prove, as libp2p addresses end in
/p2p/<id>: `https://HOST:PORT/n/<node id>`. `ssl_for(url)` reads that id and returns an
`IdentityPin`, which aiohttp runs on every new connection before a byte of the request is sent: a peer
that cannot prove the key (a man in the middle, a stale address now held by someone else) is refused.
Other https URLs (an anchor with a certificate from a CA, or one given in SSL_CERT_FILE) are verified
the ordinary way; plain http is used only where the operator chose it (loopback devnets, `--no-tls`).

This module makes certificates and contexts and checks peers; it does not decide who uses TLS.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_exceptions import ServerFingerprintMismatch
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from p2pfaas.errors import ConfigError
from p2pfaas.identity import KeyPair, node_id_of

CERT_FILE, KEY_FILE = "node.crt", "node.tls.key"
_IDENTITY_PATH = re.compile(r"^/n/([0-9a-f]{40})(?=/|$)")


def identity_path(node_id: str) -> str:
    """The path prefix that names the identity a node's HTTPS URL must prove."""
    return f"/n/{node_id}"


def identity_of(url: str) -> str | None:
    """The node id an https URL names (`https://HOST:PORT/n/<id>...`), else None."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return None
    match = _IDENTITY_PATH.match(parts.path)
    return match.group(1) if match else None


class IdentityPin(aiohttp.Fingerprint):
    """aiohttp's certificate check, by identity: the peer's certificate key must hash to `node_id`.

    Connections are pooled per pin; pins are equal when they name the same node (`pin_for` shares one)."""

    def __init__(self, node_id: str) -> None:
        super().__init__(hashlib.sha256(bytes.fromhex(node_id)).digest())  # aiohttp wants a sha256 size
        self.node_id = node_id

    def check(self, transport: Any) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        got = peer_node_id(der)
        if got != self.node_id:
            host, port, *_ = transport.get_extra_info("peername") or ("?", 0)
            raise ServerFingerprintMismatch(
                bytes.fromhex(self.node_id), bytes.fromhex(got or "00" * 20), host, port
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityPin) and other.node_id == self.node_id

    def __hash__(self) -> int:
        return hash(("p2pfaas-identity", self.node_id))


def peer_node_id(der: bytes | None) -> str | None:
    """The node id of the Ed25519 key in a DER certificate, or None if it holds no such key."""
    if not der:
        return None
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return node_id_of(raw).hex()


@functools.lru_cache(maxsize=4096)
def pin_for(node_id: str) -> IdentityPin:
    return IdentityPin(node_id)


def ssl_for(url: str) -> IdentityPin | bool:
    """What to pass as aiohttp's `ssl=` for `url`: the identity pin it names, else default verification."""
    node_id = identity_of(url)
    return pin_for(node_id) if node_id is not None else True


def write_node_certificate(keys: KeyPair, directory: Path) -> tuple[Path, Path]:
    """The node's self-signed certificate on its identity key, written (0600) if missing or for another
    key; returns (certificate, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.exists() and key_path.exists() and peer_node_id(_der(cert_path)) == keys.key_id:
        return cert_path, key_path
    private = keys.private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, keys.key_id)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))  # the pin is the key, not the dates
        .sign(private, None)
    )
    pem_key = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, pem_key)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS 1.3 server context for a certificate and key (a node's own, or an anchor's from a CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot serve TLS with {cert_path} and {key_path}: {exc}") from None
    return context


def _der(path: Path) -> bytes | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    except (OSError, ValueError):
        return None


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)
