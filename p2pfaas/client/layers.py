"""The lessee's side of dependency layers: resolve a function's requirements, upload its wheels.

`prepare(directory)` locks the directory's requirements (`p2pfaas.bundle.resolve`, pip at pack
time, for the runtime's platform) so that the bundle packed next carries `p2pfaas.lock`;
`upload_missing(...)` puts the lock's wheels the anchor lacks (`HEAD`, then a signed `PUT
/v1/wheels/{sha256}`, `p2pfaas.anchor.wheels`) before the bundle is deployed, from the client's
wheel cache. Nodes then fetch the layer themselves (peers first, the anchor last).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from p2pfaas import codec, rpc
from p2pfaas.bundle.lock import Lock, wheel_claim
from p2pfaas.bundle.resolve import default_cache, wheel_path
from p2pfaas.errors import BundleError, NotFound
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack

__all__ = ["upload_missing"]

UPLOAD_TIMEOUT_S = 600.0


async def upload_missing(
    session: aiohttp.ClientSession,
    anchor_url: str,
    keys: KeyPair,
    lock: Lock,
    *,
    cache: Path | None = None,
    timeout_s: float = 30.0,
) -> int:
    """Upload the wheels of `lock` that the anchor does not have; how many were uploaded."""
    cache = cache or default_cache()
    uploaded = 0
    for wheel in lock.wheels:
        url = f"{anchor_url}/v1/wheels/{wheel.sha256}"
        try:
            await rpc.request_bytes(session, "HEAD", url, timeout_s=timeout_s)
            continue  # the anchor has it
        except NotFound:
            pass
        path = wheel_path(cache, wheel)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise BundleError(f"{wheel.filename} is not in the wheel cache ({path}): pack again") from error
        signature = keys.sign(wheel_claim(wheel.sha256, wheel.filename, len(data)))
        headers = {
            "Content-Type": "application/octet-stream",
            "X-P2PFaaS-Filename": wheel.filename,
            "X-P2PFaaS-Key": keys.public.raw.hex(),
            "X-P2PFaaS-Signature": signature.hex(),
        }
        body = await rpc.request_bytes(
            session, "PUT", url, data, timeout_s=max(timeout_s, UPLOAD_TIMEOUT_S), headers=headers
        )
        codec.decode_as(Ack, body)
        uploaded += 1
    return uploaded
