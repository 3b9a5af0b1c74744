"""One harness per decoder of untrusted bytes: each takes the fuzzer's bytes and may raise only
the error its decoder documents (`ALLOWED`); anything else, a crash or a hang is a bug.

The harnesses import p2pfaas under atheris's instrumentation (`run.py`), so coverage guides the
fuzzer through our code and the libraries it calls (msgpack's Python paths, tomllib, zipfile, tarfile).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from p2pfaas import channels, codec, signing, tickets
from p2pfaas.bundle import lock, manifest, verify
from p2pfaas.client import values
from p2pfaas.dht import records, sealing, wire
from p2pfaas.errors import BundleError, DecodeError, ExecutorError, SignatureError
from p2pfaas.exec import egress, shim_client
from p2pfaas.messages import ChannelTicket, InvokeRequest
from p2pfaas.node import layers
from p2pfaas.relay.hub import RelayHub, _Link
from p2pfaas.relay.stream import Stream

Target = Callable[[bytes], None]


def codec_any(data: bytes) -> None:
    """Any registered wire message (every HTTP body, datagram and journal line is one of these).
    Decoded, it re-encodes to a message that decodes to itself; a signed one verifies or raises
    SignatureError."""
    message = codec.decode(data)
    again = codec.decode(codec.encode(message))
    assert again == message, f"{type(message).__name__} does not survive a round trip"
    if hasattr(message, "signature") and hasattr(message, "signer"):
        with contextlib.suppress(SignatureError):
            signing.verify(message)


def payment(data: bytes) -> None:
    """What a node checks of a payment before it runs anything: a paid request's voucher, spend
    ticket and delegations, and a lessee's channel ticket. The checks answer a reason or None."""
    message = codec.decode(data)
    if isinstance(message, InvokeRequest):
        problem = tickets.request_ticket_problem(message, message.signer, node_id="ab" * 20, delegations=())
        assert problem is None or isinstance(problem, str)
        if message.voucher is not None:
            with contextlib.suppress(SignatureError):
                signing.verify(message.voucher)
    elif isinstance(message, ChannelTicket):
        problem = channels.channel_problem(message, node_id=message.node_id)
        assert problem is None or isinstance(problem, str)


def dht_datagram(data: bytes) -> None:
    """A DHT datagram as `SecureProtocol.datagram_received` takes it: decode, then the signature."""
    if len(data) > wire.MAX_DATAGRAM_BYTES:
        return  # the protocol drops these unread
    message = codec.decode(data)
    if hasattr(message, "signature"):
        with contextlib.suppress(SignatureError):
            sealing.verify_datagram(message, data)
    if isinstance(message, wire.Record):
        with contextlib.suppress(SignatureError, DecodeError):
            records.check_record(message)


def bundle_archive(data: bytes) -> None:
    """A bundle's archive as a node checks it before extracting: bounded gunzip, then every tar
    member's header (names, types, sizes) and the manifest inside."""
    tar = verify._gunzip(data)
    verify._check_members(tar)


def bundle_tar(data: bytes) -> None:
    """The tar inside a bundle (after gunzip): members, manifest, and the dependency lock."""
    verify._check_members(data)
    lock.lock_in_tar(data)


def manifest_toml(data: bytes) -> None:
    manifest.parse_manifest(data)


def dependency_lock(data: bytes) -> None:
    lock.parse_lock(data)


_SITE = Path(tempfile.mkdtemp(prefix="p2pfuzz-wheel-"))


def wheel(data: bytes) -> None:
    """A wheel of a dependency layer, unpacked into a scratch directory as a node would."""
    site = _SITE / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    layers.unpack_wheel(data, site, limit=1 << 20)


def result_value(data: bytes) -> None:
    """A packed callable's result, as the lessee's client decodes a hostile node's answer."""
    values.decode(data)


def shim_header(data: bytes) -> None:
    """A response header from the runtime shim inside a container (a hostile function's)."""
    shim_client.parse_response(data, b"", b"")


def relay_frames(data: bytes) -> None:
    """What a hostile node sends on its relay link, frame after frame (each a 2-byte length and a
    message), as the relay's hub takes them for three open tunnels: a frame is passed on or the link
    is dropped, and no tunnel ever holds more than its window of the node's bytes."""
    hub = RelayHub()
    link = _Link("ab" * 20, ws=None)  # type: ignore[arg-type]  # the hub writes nothing here

    async def put(frame: codec.Message) -> None:  # never awaited: nothing is taken from the queues
        raise AssertionError("the hub answered on a link it only reads")

    for number in range(3):
        link.streams[number] = Stream(number, put, window=4096)
    at = 0
    while at + 2 <= len(data):
        size = int.from_bytes(data[at : at + 2], "big")
        frame, at = data[at + 2 : at + 2 + size], at + 2 + size
        if not hub._on_answer(link, frame):
            return
        for stream in link.streams.values():
            queued: Iterable[bytes] = stream._inbox._queue  # type: ignore[attr-defined]
            held = sum(map(len, queued))
            assert held <= stream.window, f"tunnel {stream.stream} holds {held} bytes past its window"


def egress_head(data: bytes) -> None:
    """A request head a function's code sends to the node's egress proxy (`exec/egress.py`)."""
    host, port = egress.connect_target(data, frozenset({"api.example.org:443", "192.0.2.7:8080"}))
    assert f"{host}:{port}" in {"api.example.org:443", "192.0.2.7:8080"}


TARGETS: dict[str, Target] = {
    "codec": codec_any,
    "payment": payment,
    "dht_datagram": dht_datagram,
    "bundle_archive": bundle_archive,
    "bundle_tar": bundle_tar,
    "manifest": manifest_toml,
    "lock": dependency_lock,
    "wheel": wheel,
    "result_value": result_value,
    "shim_header": shim_header,
    "relay_frames": relay_frames,
    "egress_head": egress_head,
}

# What each may raise for bad input: its decoder's documented error.
ALLOWED: dict[str, tuple[type[BaseException], ...]] = {
    "codec": (DecodeError,),
    "payment": (DecodeError,),
    "dht_datagram": (DecodeError,),
    "bundle_archive": (BundleError,),
    "bundle_tar": (BundleError,),
    "manifest": (BundleError,),
    "lock": (BundleError,),
    "wheel": (BundleError,),
    "result_value": (ValueError,),
    "shim_header": (ExecutorError,),
    "relay_frames": (),  # a bad frame drops the link: nothing is raised
    "egress_head": (egress.EgressRefused,),
}
