#!/usr/bin/env bash
# Fails if the release build of wagate (default features, no dev-dependencies)
# would enable any `danger-*` feature of the WhatsApp engine, e.g.
# danger-skip-cert-chain-verify or danger-skip-tls-verify. Those exist only
# for talking to wa-sim and belong in tests or an explicitly named build.
#
# Usage: crates/wa-sim/scripts/check-no-danger-features.sh [package]  (default: wagate)
set -euo pipefail
pkg="${1:-wagate}"
cd "$(dirname "$0")/../../.."
tree="$(cargo tree -p "$pkg" --edges features,normal,build --target all --prefix none -f '{p} {f}' 2>&1)" || {
  echo "cargo tree failed:"; echo "$tree"; exit 2; }
if echo "$tree" | grep -i 'danger' ; then
  echo "FAIL: the release dependency graph of $pkg enables danger-* features (above)"
  exit 1
fi
echo "ok: no danger-* feature in the release dependency graph of $pkg"
