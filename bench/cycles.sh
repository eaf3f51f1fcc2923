#!/usr/bin/env bash
# A paired session stopped and started N times: the gateway's memory and task count before and
# after, against wa-sim (see bench/cycles.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/bench cargo build --release --locked -p wagate --features simulator -p wa-sim
exec python3 bench/cycles.py "$@"
