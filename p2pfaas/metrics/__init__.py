"""Prometheus metrics of the node and the anchor (prometheus-client), served at `GET /metrics`.

- `catalog`: every metric's name, type, unit and labels, defined once; `docs/metrics.md` lists them
  and `tests/metrics/test_catalog.py` checks that the list and the code agree.
- `http`: the aiohttp middleware that counts and times every request by route (never by path, so
  ids in paths add no series), and the `/metrics` handler.
- `files`: a node's worker processes (`node run --workers N`) keep their figures in files in the
  node's work directory (prometheus-client's multiprocess mode); the primary's `/metrics` sums
  them with its own, so a scrape covers the whole node.

Labels are bounded: function names are capped per process (`FunctionLabels`, the rest is
"other"), routes are the app's route templates, outcomes and stages are small fixed sets.
"""
