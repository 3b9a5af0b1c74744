"""Write the seed corpora under `fuzz/corpus/<target>/`: a few valid inputs of each decoder, made
by the project's own encoders, so the fuzzer starts from the shapes real peers send.

    .venv/bin/python -m fuzz.seeds
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tempfile
import zipfile
from pathlib import Path

from fuzz.targets import TARGETS
from p2pfaas import codec, signing, tickets
from p2pfaas.bundle import lock
from p2pfaas.bundle.pack import make_bundle
from p2pfaas.channels import sign_channel
from p2pfaas.client import values
from p2pfaas.dht import records, wire
from p2pfaas.identity import KeyPair
from p2pfaas.messages import ChannelTicket, ChannelTickets, InvokeRequest, Receipt, ReceiptBatch, Voucher
from p2pfaas.relay import wire as relay_wire

CORPUS = Path(__file__).parent / "corpus"
KEYS = KeyPair.from_seed(hashlib.sha256(b"fuzz seeds").digest())


def _messages() -> list[codec.Message]:
    voucher = signing.sign(Voucher("v1", KEYS.public.raw, 10_000, 2e9, signer=b"", signature=b""), KEYS)
    request = tickets.signed_request(
        InvokeRequest("inv-1", "ab" * 32, b'{"x": 1}', 5.0, voucher, signer=b"", signature=b""),
        KEYS, payee=KEYS.key_id, max_price_micro=500,
    )  # fmt: skip
    receipt = signing.sign(
        Receipt("inv-1", "ab" * 32, KEYS.public.raw, "v1", True, 3, 64, 4, 12, b"\0" * 32, 1e9, b"", b""),
        KEYS,
    )
    ticket = sign_channel("v1", KEYS.key_id, seq=1, total_micro=12, keys=KEYS)
    batch = signing.sign(ReceiptBatch((receipt,), b"", b"", channels=(ticket,)), KEYS)
    ping = signing.sign(wire.Ping(b"12345678", False, b"", b""), KEYS)
    record = records.make_record(
        KEYS, key=records.advert_key("python3.11"), seq=1, expires_at=2e9, host="192.0.2.1", port=8000
    )
    return [voucher, request, receipt, ticket, batch, ChannelTickets((ticket,), (voucher,)), ping, record]


def _wheel() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("pkg/__init__.py", "VALUE = 1\n")
        archive.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\nVersion: 1.0\n")
        archive.writestr("pkg-1.0.dist-info/RECORD", "")
    return out.getvalue()


def main() -> None:
    seeds: dict[str, list[bytes]] = {name: [] for name in TARGETS}
    for message in _messages():
        seeds["codec"].append(codec.encode(message))
        if isinstance(message, InvokeRequest | ChannelTicket):
            seeds["payment"].append(codec.encode(message))
        if type(message).__module__.endswith("dht.wire"):
            seeds["dht_datagram"].append(codec.encode(message))
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "echo"
        directory.mkdir()
        manifest = (
            'name = "echo"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
            "memory_mb = 64\ntimeout_s = 5\n"
        )
        (directory / "p2pfaas.toml").write_text(manifest)
        (directory / "main.py").write_text("def handle(event):\n    return event\n")
        bundle = make_bundle(directory, KEYS)
        seeds["bundle_archive"].append(bundle.archive)
        seeds["bundle_tar"].append(gzip.decompress(bundle.archive))
        seeds["codec"].append(codec.encode(bundle.header))
        seeds["manifest"].append(manifest.encode())
    wheel = _wheel()
    name = "pkg-1.0-py3-none-any.whl"
    locked = lock.Lock((lock.LockedWheel("pkg", "1.0", name, hashlib.sha256(wheel).hexdigest(), len(wheel)),),
                       "0" * 64, lock.PLATFORM)  # fmt: skip
    seeds["lock"].append(locked.to_json().encode())
    seeds["wheel"].append(wheel)
    for value in (None, 1, 2.5, "text", b"bytes", [1, "a"], {"k": [1, 2]}, {1, 2}, (1, 2), 10**30):
        seeds["result_value"].append(values.encode(value))
    seeds["shim_header"] += [
        b'{"v": 1, "ok": true, "duration_s": 0.01}',
        b'{"v": 1, "ok": false, "duration_s": 0.5, "error_type": "ValueError", "error_message": "x", '
        b'"traceback": "Traceback"}',
    ]
    frames = [
        relay_wire.TunnelData(0, b"\x17\x03\x03 record"), relay_wire.TunnelAck(1, 100),
        relay_wire.TunnelData(2, bytes(4096)), relay_wire.TunnelClose(1, "done"),
        relay_wire.TunnelData(7, b"x"),
    ]  # fmt: skip
    seeds["relay_frames"].append(b"".join(len(f).to_bytes(2, "big") + f for f in map(codec.encode, frames)))
    seeds["egress_head"] += [
        b"CONNECT api.example.org:443 HTTP/1.1\r\nHost: api.example.org:443\r\n\r\n",
        b"CONNECT 192.0.2.7:8080 HTTP/1.0\r\n\r\n",
    ]
    for target, inputs in seeds.items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{target}: {len(inputs)} seeds in {directory}")


if __name__ == "__main__":
    main()
