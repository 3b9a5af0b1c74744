"""Coverage-guided fuzzing (atheris, libFuzzer) of every decoder of untrusted bytes (issue #22).

`targets.py` holds one harness per decoder; `run.py` runs one, or all for a bounded time, each in
its own process, with the seed corpus under `corpus/<target>/`; `seeds.py` writes those seeds.
See docs/fuzzing.md.
"""
