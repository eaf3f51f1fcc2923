#!/usr/bin/env bash
# What the database keeps of sent attachments (see bench/outbox.py), against wa-sim.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/bench cargo build --release --locked -p wagate --features simulator -p wa-sim
exec python3 bench/outbox.py "$@"
