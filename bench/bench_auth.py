"""What authentication costs an anchor request: a bearer-token check against no check, and a login.

One process starts an anchor on 127.0.0.1 (SQLite, and MariaDB when reachable), signs up a user,
then runs rounds; each round makes one sequential call per path, in a rotating order:

- **health**: `GET /v1/health`, no authentication (the baseline);
- **token**: `GET /v1/accounts/me` with `Authorization: Bearer`: hash the token, one indexed join
  (api_tokens x users), the scope check, and the profile's key list (a second query);
- **login**: `POST /v1/sessions`, one scrypt verification at the default cost (N=2^15, r=8: 32 MiB),
  fewer rounds (it is meant to be slow).

    .venv/bin/python -m bench.bench_auth --n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from p2pfaas import codec
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.anchor.wire import LoginRequest, SignupRequest, TokenIssued
from p2pfaas.db.testing import exclusive_mysql_database

PASSWORD = "benchmark password 1"
MYSQL_URL = "mysql+aiomysql://p2pfaas:p2pfaas@127.0.0.1:3306/p2pfaas_test"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(db_url: str, n: int, logins: int) -> dict[str, list[float]]:
    async with AsyncExitStack() as stack:
        if db_url.startswith("mysql"):
            await stack.enter_async_context(exclusive_mysql_database(db_url))
        anchor = await stack.enter_async_context(AnchorServer(db_url, port=0))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        async with session.post(
            f"{anchor.url}/v1/accounts", data=codec.encode(SignupRequest("bench", PASSWORD, "lessee"))
        ) as response:
            token = codec.decode_as(TokenIssued, await response.read()).token
        auth = {"Authorization": f"Bearer {token}"}
        login_body = codec.encode(LoginRequest("bench", PASSWORD, (), 0.0))

        async def health() -> None:
            async with session.get(f"{anchor.url}/v1/health") as r:
                assert r.status == 200
                await r.read()

        async def me() -> None:
            async with session.get(f"{anchor.url}/v1/accounts/me", headers=auth) as r:
                assert r.status == 200
                await r.read()

        async def login() -> None:
            async with session.post(f"{anchor.url}/v1/sessions", data=login_body) as r:
                assert r.status == 200, await r.read()
                await r.read()

        paths: dict[str, Callable[[], Awaitable[None]]] = {"health": health, "token": me}
        samples: dict[str, list[float]] = {name: [] for name in (*paths, "login")}
        for _ in range(100):  # warm-up
            for call in paths.values():
                await call()
        for i in range(n):
            names = list(paths)
            names = names[i % len(names) :] + names[: i % len(names)]
            for name in names:
                started = time.perf_counter()
                await paths[name]()
                samples[name].append((time.perf_counter() - started) * 1000)
        for _ in range(logins):
            started = time.perf_counter()
            await login()
            samples["login"].append((time.perf_counter() - started) * 1000)
        return samples


async def main_async(n: int, logins: int, mysql_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as root:
        backends = {"sqlite": f"sqlite+aiosqlite:///{Path(root) / 'anchor.db'}"}
        if mysql_url:
            backends["mariadb"] = mysql_url
        print(f"n = {n} rounds ({logins} logins); times in ms")
        print()
        print("| database | path | p50 | p99 | p50 over health |")
        print("|---|---|---|---|---|")
        for backend, url in backends.items():
            samples = await measure(url, n, logins)
            base = statistics.median(samples["health"])
            for name, values in samples.items():
                p50 = statistics.median(values)
                print(f"| {backend} | {name} | {p50:.2f} | {pct(values, 0.99):.2f} | +{p50 - base:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--mysql", default=MYSQL_URL, help="MariaDB URL ('' to skip)")
    args = parser.parse_args()
    asyncio.run(main_async(args.n, args.logins, args.mysql or None))


if __name__ == "__main__":
    main()
