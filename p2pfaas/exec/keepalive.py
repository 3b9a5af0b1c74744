"""Keep-alive and pre-warm windows per function: the hybrid histogram policy, and a fixed fallback.

Sans-I/O: fed idle times (seconds) measured by the pool on the loop's clock; no clock of its own.

`HybridHistogramPolicy` follows Shahrad et al., "Serverless in the Wild: Characterizing and
Optimizing the Serverless Workload at a Large Cloud Provider", USENIX ATC'20, section 4.2. Per
function it keeps a histogram of idle times (ITs: from the end of the function's last invocation to
the start of the next; bins of `bin_s`, 1 minute in the paper, up to `range_s`, 4 hours there) and
derives two windows:
- the *pre-warm window*: the head of the distribution (5th percentile, minus a 10% margin). After an
  invocation ends, the instance is unloaded and loaded again once this window has passed;
- the *keep-alive window*: from the pre-warm point to the tail (99th percentile, plus 10%).
When the histogram is not yet representative (fewer than `min_samples` ITs, or a coefficient of
variation of the bin counts below `min_cv`, i.e. no clear pattern) or too many ITs fall beyond the
range (the paper switches to ARIMA there; we do not), it falls back to the fixed keep-alive with no
pre-warm, which is exactly `FixedKeepAlive`.

With `memory_budget` (our addition, the node's default) the windows may cost no more idle memory
than the fallback would on the same histogram: the expected warm-but-idle seconds per idle time,
E[min(IT, end) - prewarm] over the ITs past the pre-warm point, must not exceed E[min(IT, fixed)].
Where the paper's tail costs more (bursty functions: most ITs tiny, the 99th percentile hours
away), the window end is cut back to the latest bin edge that fits. Pre-warming pays for the rest:
the trace-replay benchmark (`bench/bench_keepalive.py`) shows fewer cold starts than fixed 10
minutes at less memory with it, and more memory without it.

What it does not do: decide *how many* instances to keep (that is `ArrivalForecast`'s job) or act
on the windows (the pool policy does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from p2pfaas.errors import LocalError


@dataclass(frozen=True)
class Windows:
    """After an invocation ends at t: unload at once if `prewarm_s` > 0 and load again at t + prewarm_s;
    keep the instance until t + prewarm_s + keep_alive_s."""

    prewarm_s: float
    keep_alive_s: float
    learned: bool  # False: the fixed fallback applied


class FixedKeepAlive:
    """The baseline: every instance stays warm `keep_alive_s` after its last invocation."""

    def __init__(self, keep_alive_s: float) -> None:
        if keep_alive_s < 0:
            raise LocalError("keep_alive_s must be >= 0")
        self.keep_alive_s = keep_alive_s

    def observe_idle(self, digest: str, idle_s: float) -> None:
        pass

    def windows(self, digest: str) -> Windows:
        return Windows(0.0, self.keep_alive_s, learned=False)

    def forget(self, digest: str) -> None:
        pass


class _Histogram:
    __slots__ = ("bins", "cached", "oob", "since", "total")

    def __init__(self, n_bins: int) -> None:
        self.since = 0  # samples since `cached` was computed
        self.bins = [0] * n_bins
        self.total = 0  # in range
        self.oob = 0  # beyond the range
        self.cached: Windows | None = None


class HybridHistogramPolicy:
    """Learns each function's windows from its idle times (Shahrad et al., ATC'20, section 4.2)."""

    def __init__(
        self,
        *,
        fallback_keep_alive_s: float = 600.0,
        bin_s: float = 60.0,
        range_s: float = 4 * 3600.0,
        head_percentile: float = 5.0,
        tail_percentile: float = 99.0,
        margin: float = 0.10,
        memory_budget: bool = False,
        min_samples: int = 10,
        min_cv: float = 2.0,
        max_oob_share: float = 0.5,
        max_functions: int = 100_000,
    ) -> None:
        if bin_s <= 0 or range_s < bin_s or not 0 <= head_percentile < tail_percentile <= 100:
            raise LocalError("need bin_s > 0, range_s >= bin_s and 0 <= head < tail <= 100")
        self.fallback = FixedKeepAlive(fallback_keep_alive_s)
        self.bin_s = bin_s
        self.n_bins = math.ceil(range_s / bin_s)
        self.head = head_percentile / 100
        self.tail = tail_percentile / 100
        self.margin = margin
        self.memory_budget = memory_budget
        self.min_samples = min_samples
        self.min_cv = min_cv
        self.max_oob_share = max_oob_share
        self.max_functions = max_functions
        self._histograms: dict[str, _Histogram] = {}

    def observe_idle(self, digest: str, idle_s: float) -> None:
        """One idle time of `digest`: from the end of its last invocation to the start of this one."""
        histogram = self._histograms.get(digest)
        if histogram is None:
            if len(self._histograms) >= self.max_functions:  # bounded memory: drop the oldest function
                del self._histograms[next(iter(self._histograms))]
            histogram = self._histograms[digest] = _Histogram(self.n_bins)
        index = int(max(idle_s, 0.0) // self.bin_s)
        if index < self.n_bins:
            histogram.bins[index] += 1
            histogram.total += 1
        else:
            histogram.oob += 1
        histogram.since += 1
        # Recompute after ~1.5% new samples: windows move slowly, and hot functions observe constantly.
        if histogram.since * 64 >= histogram.total + histogram.oob or histogram.total < 4 * self.min_samples:
            histogram.cached = None
            histogram.since = 0

    def windows(self, digest: str) -> Windows:
        histogram = self._histograms.get(digest)
        if histogram is None:
            return self.fallback.windows(digest)
        if histogram.cached is None:
            histogram.cached = self._compute(histogram)
        return histogram.cached

    def forget(self, digest: str) -> None:
        self._histograms.pop(digest, None)

    def _compute(self, h: _Histogram) -> Windows:
        samples = h.total + h.oob
        if h.total < self.min_samples or h.oob > self.max_oob_share * samples:
            return self.fallback.windows("")
        if _cv(h.bins) < self.min_cv:
            return self.fallback.windows("")
        head_bin = _percentile_bin(h.bins, h.total, self.head)
        tail_bin = _percentile_bin(h.bins, h.total, self.tail)
        # The head is the bin's lower edge, the tail its upper edge: conservative on both sides.
        head_s, tail_s = head_bin * self.bin_s, (tail_bin + 1) * self.bin_s
        prewarm_s, tail_s = head_s * (1 - self.margin), tail_s * (1 + self.margin)
        assert 0 <= prewarm_s < tail_s
        if self.memory_budget:
            budget = self._idle_cost(h, 0.0, self.fallback.keep_alive_s)
            if self._idle_cost(h, prewarm_s, tail_s) > budget:
                tail_s = self._cap_tail(h, prewarm_s, tail_s, budget)
                if tail_s <= prewarm_s:
                    return self.fallback.windows("")
        return Windows(prewarm_s=prewarm_s, keep_alive_s=tail_s - prewarm_s, learned=True)

    def _idle_cost(self, h: _Histogram, prewarm_s: float, end_s: float) -> float:
        """Expected warm-but-idle seconds per idle time under windows (prewarm_s, end_s), taking
        each idle time at its bin's centre: unloaded until prewarm_s, warm until the call or end_s."""
        cost = h.oob * (end_s - prewarm_s)
        for index, count in enumerate(h.bins):
            if count:
                idle_s = (index + 0.5) * self.bin_s
                if idle_s >= prewarm_s:
                    cost += count * (min(idle_s, end_s) - prewarm_s)
        return cost

    def _cap_tail(self, h: _Histogram, prewarm_s: float, tail_s: float, budget: float) -> float:
        """The latest window end, at a bin edge below `tail_s`, whose idle cost fits `budget`;
        `prewarm_s` if none does. The cost grows with the end, so bisect over bin edges."""
        low, high = math.floor(prewarm_s / self.bin_s) + 1, math.ceil(tail_s / self.bin_s)
        best = prewarm_s
        while low <= high:
            middle = (low + high) // 2
            if self._idle_cost(h, prewarm_s, middle * self.bin_s) <= budget:
                best, low = middle * self.bin_s, middle + 1
            else:
                high = middle - 1
        return best


def _percentile_bin(bins: list[int], total: int, q: float) -> int:
    """The first bin at which the cumulative count reaches the share `q` of `total`."""
    threshold = q * total
    cumulative = 0
    for index, count in enumerate(bins):
        cumulative += count
        if cumulative >= threshold and cumulative > 0:
            return index
    return len(bins) - 1


def _cv(bins: list[int]) -> float:
    """Coefficient of variation of the bin counts: high when the ITs cluster in a few bins."""
    n = len(bins)
    mean = sum(bins) / n
    if mean == 0:
        return 0.0
    variance = sum((count - mean) ** 2 for count in bins) / n
    return math.sqrt(variance) / mean
