"""The lessee's calls to the anchor's function registry: register the key, deploy (lock, pack, sign,
upload the missing wheels and the bundle), resolve a name (cached) or `name@version`, list functions
and versions, roll back and remove (signed by the owner key).

`RegistryCalls` is a part of `AsyncClient` (a mixin, as redis-py's command groups are): it uses the
client's session, anchor URL, keys and timeout, and keeps the resolved names in its cache.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path

import aiohttp

from p2pfaas import bundle, rpc, signing
from p2pfaas.bundle.lock import Lock
from p2pfaas.bundle.resolve import lock_directory
from p2pfaas.client.layers import upload_missing
from p2pfaas.clock import wall_time
from p2pfaas.identity import KeyPair
from p2pfaas.messages import (
    Ack,
    Bundle,
    FunctionChange,
    FunctionInfo,
    FunctionList,
    FunctionVersion,
    LesseeKeyRegistration,
)


class RegistryCalls:
    """The registry's calls; the attributes below are the client's."""

    anchor_url: str
    keys: KeyPair
    request_timeout_s: float
    _functions: dict[str, FunctionInfo]  # name or name@version -> what it resolved to
    _registered: bool

    @property
    def session(self) -> aiohttp.ClientSession:
        raise NotImplementedError

    async def register_key(self, *, label: str = "") -> str:
        msg = signing.sign(
            LesseeKeyRegistration(label=label, issued_at=wall_time(), signer=b"", signature=b""), self.keys
        )
        ack = await rpc.call(
            self.session, "POST", f"{self.anchor_url}/v1/lessees", Ack, msg, timeout_s=self.request_timeout_s
        )
        self._registered = True
        return ack.detail

    async def deploy(self, directory: Path) -> FunctionInfo:
        """Lock its requirements (pip, for the runtime's platform), pack, sign and upload `directory`
        and the wheels the anchor lacks; the function's name now points at this version."""
        lock = await asyncio.to_thread(lock_directory, Path(directory))
        return await self.deploy_bundle(bundle.make_bundle(Path(directory), self.keys), lock=lock)

    async def deploy_bundle(self, upload: Bundle, *, lock: Lock | None = None) -> FunctionInfo:
        """Upload a bundle signed with this client's keys (after the wheels of its `lock` that the
        anchor lacks); its name now points at its version."""
        if not self._registered:
            await self.register_key(label="p2pfaas client")
        if lock is not None:
            await upload_missing(self.session, self.anchor_url, self.keys, lock)
        info = await rpc.call(
            self.session,
            "POST",
            f"{self.anchor_url}/v1/bundles",
            FunctionInfo,
            upload,
            timeout_s=max(self.request_timeout_s, 60.0),
        )
        self._functions[info.name] = info
        return info

    async def function(self, name: str, *, refresh: bool = False) -> FunctionInfo:
        """Function `name` at its current version, or `name@version` at that deployed version."""
        if refresh or name not in self._functions:
            base, _, version = name.partition("@")
            url = f"{self.anchor_url}/v1/functions/{self.keys.key_id}/{base}"
            if version:
                url += f"?version={urllib.parse.quote(version)}"
            self._functions[name] = await rpc.call(
                self.session, "GET", url, FunctionInfo, timeout_s=self.request_timeout_s
            )
        return self._functions[name]

    async def functions(self) -> list[FunctionVersion]:
        """This key's functions, each at its current version, by name."""
        url = f"{self.anchor_url}/v1/functions/{self.keys.key_id}"
        listed = await rpc.call(self.session, "GET", url, FunctionList, timeout_s=self.request_timeout_s)
        return list(listed.functions)

    async def versions(self, name: str) -> list[FunctionVersion]:
        """Every version of function `name` deployed with this key, oldest first; NotFound if none."""
        url = f"{self.anchor_url}/v1/functions/{self.keys.key_id}/{name}/versions"
        listed = await rpc.call(self.session, "GET", url, FunctionList, timeout_s=self.request_timeout_s)
        return list(listed.functions)

    async def rollback(self, name: str, version: str) -> str:
        """Point function `name` at its deployed `version` again (or a later one); the anchor's answer."""
        return await self._change(name, version)

    async def remove(self, name: str) -> str:
        """Remove function `name`: invoking it is NotFound from now on (its bundles stay fetchable)."""
        return await self._change(name, "")

    async def _change(self, name: str, version: str) -> str:
        unsigned = FunctionChange(name, version, wall_time(), signer=b"", signature=b"")
        change = signing.sign(unsigned, self.keys)
        url = f"{self.anchor_url}/v1/functions/changes"
        ack = await rpc.call(self.session, "POST", url, Ack, change, timeout_s=self.request_timeout_s)
        for cached in [n for n in self._functions if n == name or n.startswith(f"{name}@")]:
            del self._functions[cached]
        return ack.detail
