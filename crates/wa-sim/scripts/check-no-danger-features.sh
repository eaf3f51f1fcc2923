#!/usr/bin/env bash
# Fails if a release build of the gateway would contain any `danger-*`
# feature of the WhatsApp engine (danger-skip-cert-chain-verify,
# danger-skip-tls-verify). Those exist only for talking to wa-sim and belong
# in tests (dev-dependencies) or an explicitly named build.
#
# Cargo unifies features across every package of one build, so two builds
# are checked, as the README's commands run them:
#   cargo build --release -p wagate      -> the dependency graph of wagate
#   cargo build --release --workspace    -> the graph of every member (wa-sim
#                                           included), unified
# Dev-dependencies are not part of either (they only unify into builds of
# tests, benches and examples), so the edges checked are normal + build.
#
# Usage: crates/wa-sim/scripts/check-no-danger-features.sh [package]  (default: wagate)
set -euo pipefail
pkg="${1:-wagate}"
cd "$(dirname "$0")/../../.."
fail=0
check() {
  local what="$1"; shift
  local tree
  tree="$(cargo tree "$@" --edges features,normal,build --target all --prefix none -f '{p} {f}' 2>&1)" || {
    echo "cargo tree failed ($what):"; echo "$tree"; exit 2; }
  if echo "$tree" | grep -i 'danger' ; then
    echo "FAIL: $what enables danger-* features (above)"
    fail=1
  else
    echo "ok: no danger-* feature in $what"
  fi
}
check "the release dependency graph of $pkg (cargo build --release -p $pkg)" -p "$pkg"
check "the unified release graph of the workspace (cargo build --release --workspace)" --workspace
exit "$fail"
