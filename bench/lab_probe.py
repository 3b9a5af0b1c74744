"""The measuring side of `bench.bench_lab`, run inside a lab host: warm invocations along each URL.

    python -m bench.lab_probe ANCHOR KEY FUNCTION_DIR N CONCURRENT URL...

Deploys the function, warms every URL, then times N sequential calls per URL, interleaved one call
per URL per round in a rotating order (noise hits all alike), then CONCURRENT calls at a time for a
throughput figure. Prints one JSON object: {url: {"samples_s": [...], "per_s": float}}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair


async def main(anchor: str, key: str, function_dir: str, n: int, concurrent: int, urls: list[str]) -> None:
    async with AsyncClient(anchor, KeyPair.load_or_create(Path(key))) as client:
        info = await client.deploy(Path(function_dir))
        name = info.name
        for url in urls:
            for _ in range(20):
                await client.invoke(name, {"x": 1}, node_url=url)
        samples: dict[str, list[float]] = {url: [] for url in urls}
        for i in range(n):
            for url in urls[i % len(urls) :] + urls[: i % len(urls)]:
                start = time.perf_counter()
                await client.invoke(name, {"x": i}, node_url=url)
                samples[url].append(time.perf_counter() - start)
        rates: dict[str, float] = {}
        for url in urls:
            total = concurrent * 25

            async def worker(count: int, url: str = url) -> None:
                for j in range(count):
                    await client.invoke(name, {"x": j}, node_url=url)

            start = time.perf_counter()
            await asyncio.gather(*(worker(total // concurrent) for _ in range(concurrent)))
            rates[url] = total / (time.perf_counter() - start)
    print(json.dumps({url: {"samples_s": samples[url], "per_s": rates[url]} for url in urls}))


if __name__ == "__main__":
    anchor, key, function_dir, n, concurrent, *urls = sys.argv[1:]
    asyncio.run(main(anchor, key, function_dir, int(n), int(concurrent), urls))
