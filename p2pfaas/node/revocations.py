"""Functions their owners removed: a node polls the anchor for revoked bundles and runs them no more.

`fn rm NAME` revokes every bundle the owner deployed under the name (the anchor's
`GET /v1/revoked?after=SEQ`, in the order revoked). `follow_revocations` asks for what is new every
`poll_s` and hands each digest to `NodeService.revoke`, which refuses invocations of it (404),
drops its bundle from the cache (so no peer fetches it from here either) and its idle warm
instances. Each worker process of a node follows on its own. An anchor that does not answer is
asked again at the next round; a malformed answer is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp

from p2pfaas import rpc
from p2pfaas.errors import P2PFaaSError
from p2pfaas.messages import RevokedBundles

__all__ = ["POLL_S", "follow_revocations", "poll_revocations"]

log = logging.getLogger(__name__)

POLL_S = 30.0
_HEX = frozenset("0123456789abcdef")


async def poll_revocations(
    session: aiohttp.ClientSession, anchor_url: str, after: int, revoke: Callable[[str], None]
) -> int:
    """Hand `revoke` every digest revoked after `after`; the last seq seen (`after` when none)."""
    while True:
        url = f"{anchor_url}/v1/revoked?after={after}"
        page = await rpc.call(session, "GET", url, RevokedBundles, timeout_s=30.0)
        if len(page.seqs) != len(page.digests):
            raise P2PFaaSError("the anchor's list of revoked bundles does not add up")
        for seq, digest in zip(page.seqs, page.digests, strict=True):
            if seq <= after:
                raise P2PFaaSError("the anchor's list of revoked bundles is out of order")
            if len(digest) == 64 and set(digest) <= _HEX:
                revoke(digest)
            after = seq
        if len(page.seqs) < 1000:
            return after


async def follow_revocations(
    session: aiohttp.ClientSession,
    anchor_url: str,
    revoke: Callable[[str], None],
    stop: asyncio.Event,
    *,
    poll_s: float = POLL_S,
) -> None:
    """`poll_revocations` now and every `poll_s` until `stop` is set."""
    after = 0
    while not stop.is_set():
        try:
            after = await poll_revocations(session, anchor_url, after, revoke)
        except P2PFaaSError as error:
            log.warning("could not learn the revoked bundles from the anchor (will retry): %s", error)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(poll_s):
                await stop.wait()
