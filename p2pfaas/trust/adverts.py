"""Did a node's advert lie? A receipt that charges more than the node's own signed prices allow.

A node advertises `price_per_cpu_s` and `price_per_gb_s` (micro-credits) in its signed DHT
capacity advert, and signs a receipt with the usage it metered and the price it charges. Both
are signed by the same key, so a receipt whose price exceeds what those prices give for that
usage is proof, checkable by anyone, that the node lied in one of them. The bound is generous on
purpose (memory billed at the larger of the reserved and the peak, every term rounded up, plus a
slack), so honest rounding never looks like a lie.

Only price lies are provable this way; a node that advertises free slots and then answers "busy"
signs nothing, and is left to the placement layer's own view of load.
Sans-I/O: plain numbers in, a verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdvertPrices", "Usage", "max_price_micro", "overcharged"]

SLACK_MICRO = 1


@dataclass(frozen=True)
class AdvertPrices:
    price_per_cpu_s: int  # micro-credits per CPU-second
    price_per_gb_s: int  # micro-credits per GB-second of memory


@dataclass(frozen=True)
class Usage:
    cpu_ms: int
    wall_ms: int
    peak_memory_mb: int
    reserved_memory_mb: int  # the manifest's memory_mb


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def max_price_micro(prices: AdvertPrices, usage: Usage) -> int:
    """The most an honest node with these prices could charge for this usage."""
    memory_mb = max(usage.peak_memory_mb, usage.reserved_memory_mb)
    cpu = _ceil_div(prices.price_per_cpu_s * usage.cpu_ms, 1000)
    memory = _ceil_div(prices.price_per_gb_s * memory_mb * usage.wall_ms, 1024 * 1000)
    return cpu + memory + SLACK_MICRO


def overcharged(prices: AdvertPrices, usage: Usage, price_micro: int) -> bool:
    return price_micro > max_price_micro(prices, usage)
