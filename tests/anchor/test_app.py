"""The anchor's own routes (p2pfaas/anchor/app.py) on a devnet-style anchor: health, the caller's
address, bundles stored and served by digest, a key's functions, the revocations nodes follow, and a
clear 404 for a malformed or unknown digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas import rpc
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import NotFound
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, Bundle, FunctionList, Observed, RevokedBundles
from tests.functions import write_function


async def test_health_and_the_callers_own_address(open_anchor: AnchorServer) -> None:
    async with AsyncClient(open_anchor.url, KeyPair.generate()) as client:
        health = await rpc.call(client.session, "GET", f"{open_anchor.url}/v1/health", Ack, timeout_s=10)
        seen = await rpc.call(client.session, "GET", f"{open_anchor.url}/v1/whoami", Observed, timeout_s=10)
    assert health.detail == "anchor ok" and seen.address == "127.0.0.1"


async def test_a_bundle_is_served_by_digest_listed_under_its_key_and_revoked_on_removal(
    open_anchor: AnchorServer, tmp_path: Path
) -> None:
    base = open_anchor.url
    async with AsyncClient(base, KeyPair.generate()) as client:
        info = await client.deploy(write_function(tmp_path, "echo"))
        digest = info.header.digest
        served = await rpc.call(client.session, "GET", f"{base}/v1/bundles/{digest}", Bundle, timeout_s=10)
        assert served.header == info.header
        listed = await rpc.call(
            client.session, "GET", f"{base}/v1/functions/{client.keys.key_id}", FunctionList, timeout_s=10
        )
        assert [(f.name, f.digest) for f in listed.functions] == [("echo", digest)]
        for bad in ("f" * 64, "not-a-digest"):
            with pytest.raises(NotFound):
                await rpc.call(client.session, "GET", f"{base}/v1/bundles/{bad}", Bundle, timeout_s=10)
        before = await rpc.call(client.session, "GET", f"{base}/v1/revoked", RevokedBundles, timeout_s=10)
        assert before.digests == ()
        await client.remove("echo")
        after = await rpc.call(
            client.session, "GET", f"{base}/v1/revoked?after=0", RevokedBundles, timeout_s=10
        )
        assert after.digests == (digest,) and len(after.seqs) == 1
        later = f"{base}/v1/revoked?after={after.seqs[0]}"
        assert (await rpc.call(client.session, "GET", later, RevokedBundles, timeout_s=10)).digests == ()
        with pytest.raises(NotFound):  # a removed function's bundle is no longer served
            await rpc.call(client.session, "GET", f"{base}/v1/bundles/{digest}", Bundle, timeout_s=10)
