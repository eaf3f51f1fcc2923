#!/usr/bin/env bash
# Inbound messages per second to committed rows, against wa-sim (see bench/inbound.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/bench cargo build --release --locked -p wagate --features simulator -p wa-sim
exec python3 bench/inbound.py "$@"
