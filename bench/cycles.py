#!/usr/bin/env python3
"""Benchmark (not a test): does a session run leave anything behind when it ends?

    bench/cycles.sh [CYCLES]     (default: 200)

Pairs one session with a release gateway built with `--features simulator` against wa-sim,
lets it settle, then stops and starts it CYCLES times through the HTTP API (each start waits for
`working`). Reads the gateway's resident memory (VmRSS and RssAnon from /proc) and the engine's
gauges from GET /metrics (`wagate_engine_tasks`, `wagate_engine_clients_alive`) before the first
cycle and after the last, and at every 50th. Prints a Markdown table.
"""

import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simgw import GW, pair, req, start_gateway, start_sim, stop, wait  # noqa: E402
from sessions import settle  # noqa: E402


def gauges():
    text = urllib.request.urlopen(f"{GW}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("wagate_engine_tasks ") or line.startswith("wagate_engine_clients_alive "):
            k, v = line.split()
            out[k] = int(float(v))
    return out.get("wagate_engine_tasks"), out.get("wagate_engine_clients_alive")


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    data = tempfile.mkdtemp(prefix="wagate-cycles-")
    sim = start_sim()
    gw = start_gateway(data)
    key = open(os.path.join(data, "admin-key")).read().strip()
    sid = pair(key, 0)
    rows = []

    def row(n):
        rss, anon = settle(gw.pid)
        tasks, clients = gauges()
        rows.append((n, rss, anon, tasks, clients))
        print(f"after {n} cycles: RSS {rss} KiB, RssAnon {anon} KiB, tasks {tasks}, clients {clients}", flush=True)

    # A few warm-up cycles: allocator pools and caches reach their working size.
    for _ in range(5):
        req("POST", f"{GW}/api/v1/sessions/{sid}:stop", None, key)
        req("POST", f"{GW}/api/v1/sessions/{sid}:start", None, key)
        wait("working", lambda: req("GET", f"{GW}/api/v1/sessions/{sid}", None, key)[1]["status"] == "working")
    row(0)
    t0 = time.time()
    for i in range(1, cycles + 1):
        s, v = req("POST", f"{GW}/api/v1/sessions/{sid}:stop", None, key)
        assert s == 200, v
        s, v = req("POST", f"{GW}/api/v1/sessions/{sid}:start", None, key)
        assert s == 200, v
        wait("working", lambda: req("GET", f"{GW}/api/v1/sessions/{sid}", None, key)[1]["status"] == "working")
        if i % 50 == 0 or i == cycles:
            row(i)
    took = time.time() - t0
    stop(gw, sim)
    sim.wait(timeout=30)
    print()
    print(f"{cycles} stop/start cycles of one paired session in {took:.0f} s")
    print()
    print("| cycles | VmRSS KiB | RssAnon KiB | engine tasks | clients alive |")
    print("|---:|---:|---:|---:|---:|")
    for n, rss, anon, tasks, clients in rows:
        print(f"| {n} | {rss} | {anon} | {tasks} | {clients} |")
    first, last = rows[0], rows[-1]
    print()
    print(f"RssAnon growth over {cycles} cycles: {last[2] - first[2]} KiB "
          f"({(last[2] - first[2]) / cycles:.1f} KiB per cycle)")


if __name__ == "__main__":
    main()
