#!/usr/bin/env bash
# The main job: set up, start a local network (an anchor and three volunteer nodes, each its own
# process), deploy and invoke the sample function on every node, then stop the network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
DIR=.devnet
.venv/bin/p2pfaas devnet up --nodes "${NODES:-3}" --dir "$DIR" --detach
trap '.venv/bin/p2pfaas devnet down --dir "$DIR"' EXIT
.venv/bin/p2pfaas devnet demo --dir "$DIR"
