#!/usr/bin/env bash
# Sends per second and their latency, sync and async, against wa-sim (see bench/send.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/bench cargo build --release --locked -p wagate --features simulator -p wa-sim
exec python3 bench/send.py "$@"
