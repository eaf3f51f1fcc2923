#!/usr/bin/env bash
# Memory per connected session and restart time, against wa-sim (see bench/sessions.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/bench cargo build --release --locked -p wagate --features simulator -p wa-sim
exec python3 bench/sessions.py "$@"
