"""The kit of the metrics tests: the metrics docs/metrics.md lists."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).parents[2] / "docs" / "metrics.md"


def documented() -> dict[str, str]:
    """Metric name -> type, from the table in docs/metrics.md."""
    rows = re.findall(r"^\| `(p2pfaas_[a-z_]+)` \| (counter|gauge|histogram) \|", DOCS.read_text(), re.M)
    return dict(rows)
