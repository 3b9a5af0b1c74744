#!/usr/bin/env bash
# Build the node's container image from this repository: p2pfaas/node:0.1 (see the Dockerfile).
# The wheels of p2pfaas and its dependencies are made here (pip, from PyPI or its cache) and the
# image installs only those, offline; its base is the Debian image `p2pfaas runtime build` makes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-.venv/bin/python}"
tag="${1:-p2pfaas/node:0.1}"
if ! docker image inspect p2pfaas/debian-python3:bookworm >/dev/null 2>&1; then
    "$python" -m p2pfaas runtime build
fi
rm -rf build/wheelhouse && mkdir -p build/wheelhouse
"$python" -m pip wheel --quiet --wheel-dir build/wheelhouse . pip
docker build --quiet --tag "$tag" . >/dev/null
echo "built $tag"
