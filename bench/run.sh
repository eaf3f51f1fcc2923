#!/usr/bin/env bash
# Benchmark of the stored-copy API (not a test).
#
#   bench/run.sh [sqlite|postgres|all]
#
# For each backend: fills one session with MESSAGES messages over CHATS chats and CONTACTS
# contacts through the store's ingest operations (examples/bench_seed.rs), starts the release
# server, and loads four list endpoints and the event feed with wrk (CONNECTIONS connections, DURATION seconds
# each). Results go to bench/out/results.md. Environment knobs and their defaults:
#   MESSAGES=1000000 CHATS=10000 CONTACTS=100000 CONNECTIONS=32 DURATION=15 THREADS=2
#   BENCH_PG_ADMIN=postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
cd "$(dirname "$0")/.."

WHICH="${1:-all}"
MESSAGES="${MESSAGES:-1000000}"
CHATS="${CHATS:-10000}"
CONTACTS="${CONTACTS:-100000}"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-15}"
THREADS="${THREADS:-2}"
PG_ADMIN="${BENCH_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
PORT=18181
OUT=bench/out
mkdir -p "$OUT"

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi

cargo build --release --locked -p wagate --bin wagate --example bench_seed
BIN=target/release/wagate
SEED=target/release/examples/bench_seed

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# The process's own memory, without the database pages SQLite maps from the file.
anon_kb() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }

run_backend() {
  local backend="$1" url dir
  dir="$OUT/$backend"
  rm -rf "$dir" && mkdir -p "$dir"
  if [ "$backend" = sqlite ]; then
    url="sqlite://$PWD/$dir/wagate.db"
  else
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS wagate_bench WITH (FORCE)" >/dev/null
    psql "$PG_ADMIN" -qc "CREATE DATABASE wagate_bench" >/dev/null
    url="${PG_ADMIN%/*}/wagate_bench"
  fi

  echo "== $backend: seeding $MESSAGES messages, $CHATS chats, $CONTACTS contacts"
  "$SEED" "$url" "$dir/seed.json" "$MESSAGES" "$CHATS" "$CONTACTS" >/dev/null
  read -r SID KEY BIG DEEP WORD RATE < <(python3 -c "import json;d=json.load(open('$dir/seed.json'));print(d['sessionId'],d['key'],d['bigChat'],d['deepCursor'],d['searchWord'],round(d['messagesPerSecond']))")
  # The feed is read from the middle of the seeded events.
  EVENTS_AFTER=$((MESSAGES / 2))
  echo "   ingest: $RATE messages/s"

  WAGATE_DATABASE_URL="$url" WAGATE_DATA_DIR="$dir" WAGATE_LISTEN="127.0.0.1:$PORT" WAGATE_LOG=warn "$BIN" serve >"$dir/server.log" 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  local idle_kb; idle_kb=$(rss_kb "$pid")
  local idle_anon; idle_anon=$(anon_kb "$pid")

  local base="http://127.0.0.1:$PORT/api/v1/sessions/$SID"
  declare -A urls=(
    [chats]="$base/chats"
    [messages_first]="$base/chats/$BIG/messages"
    [messages_deep]="$base/chats/$BIG/messages?cursor=$DEEP"
    [contacts_q]="$base/contacts?q=$WORD"
    [events]="http://127.0.0.1:$PORT/api/v1/events?after=$EVENTS_AFTER&limit=100"
  )
  for name in chats messages_first messages_deep contacts_q events; do
    # One request first, to check the answer is a success with data.
    curl -sf -H "Authorization: Bearer $KEY" "${urls[$name]}" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['data'], 'empty page'"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $KEY" "${urls[$name]}" >"$dir/wrk-$name.txt"
  done
  local loaded_kb; loaded_kb=$(rss_kb "$pid")
  local loaded_anon; loaded_anon=$(anon_kb "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true

  python3 - "$dir" "$backend" "$RATE" "$idle_kb" "$loaded_kb" "$idle_anon" "$loaded_anon" <<'PY' | tee -a "$OUT/results.md"
import re, sys, json
d, backend, rate, idle, loaded, idle_anon, loaded_anon = sys.argv[1:8]
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[u]
rows = []
for name in ["chats", "messages_first", "messages_deep", "contacts_q", "events"]:
    t = open(f"{d}/wrk-{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", t).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", t).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    err = re.search(r"Socket errors: (.*)", t)
    rows.append((name, rps, p50, p99, bad.group(1) if bad else "0", err.group(1) if err else "none"))
print(f"\n### {backend}\n")
print(f"- ingest: {int(rate):,} messages/s through `record_messages` (batches of 1,000)")
print(f"- resident memory: {int(idle)/1024:.1f} MiB idle after start, {int(loaded)/1024:.1f} MiB after the load")
print(f"- of which the process's own (RssAnon, without mapped database pages): {int(idle_anon)/1024:.1f} / {int(loaded_anon)/1024:.1f} MiB\n")
print("| endpoint | requests/s | p50 ms | p99 ms | non-2xx | socket errors |")
print("|---|---:|---:|---:|---:|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]:,.0f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]} | {r[5]} |")
ev = [r for r in rows if r[0] == "events"][0]
print(f"\n- event feed: {ev[1] * 100:,.0f} events/s read (pages of 100)")
PY
}

{
  echo "## wagate benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r). $MESSAGES messages / $CHATS chats / $CONTACTS contacts;"
  echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on the same machine (it competes with the server for the 2 cores)."
} >>"$OUT/results.md"

case "$WHICH" in
  sqlite) run_backend sqlite ;;
  postgres) run_backend postgres ;;
  all) run_backend sqlite; run_backend postgres ;;
  *) echo "usage: bench/run.sh [sqlite|postgres|all]" >&2; exit 2 ;;
esac
echo "results appended to $OUT/results.md"
