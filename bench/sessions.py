#!/usr/bin/env python3
"""Benchmark (not a test): memory per connected idle session, and time to bring every session
back to `working` after a restart, against wa-sim on this machine.

    bench/sessions.sh [N ...]     (default: 100 500 1000)

Starts the simulator and a release gateway built with `--features simulator` (both from
target/bench), pairs sessions one by one through the gateway's HTTP API (QR read from
GET /sessions/{sid}/qr, scanned through the simulator's control API), and reads the gateway's
resident memory (VmRSS, /proc) after each checkpoint has settled. Then restarts the gateway and
times how long until every session is `working` again. Prints a Markdown table.
"""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simgw import GW, pair, req, rss_kib, start_gateway, start_sim, wait  # noqa: E402


def settle(pid):
    """RSS after the process has been quiet: the lowest of several reads over a few seconds."""
    time.sleep(3)
    return min(rss_kib(pid) for _ in range(5) if time.sleep(0.4) is None)


def main():
    targets = [int(a) for a in sys.argv[1:]] or [100, 500, 1000]
    data = tempfile.mkdtemp(prefix="wagate-bench-")
    sim = start_sim()
    gw = start_gateway(data)
    key = open(os.path.join(data, "admin-key")).read().strip()
    rows = []
    base = settle(gw.pid)
    rows.append((0, base, None))
    n = 0
    t0 = time.time()
    for target in targets:
        lock = threading.Lock()
        todo = list(range(n, target))
        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                pair(key, i)
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        n = target
        r = settle(gw.pid)
        rows.append((n, r, (r - base) / n))
        print(f"{n} sessions: RSS {r} KiB, {(r - base) / n:.0f} KiB per session ({time.time() - t0:.0f} s so far)", flush=True)
    # Restart: every session back to working.
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=120)
    t1 = time.time()
    gw = start_gateway(data)

    def all_working():
        s, v = req("GET", f"{GW}/api/v1/sessions", None, key)
        return s == 200 and len(v["data"]) == n and all(x["status"] == "working" for x in v["data"])

    wait("every session working after the restart", all_working, timeout=900)
    back = time.time() - t1
    after = settle(gw.pid)
    print()
    print("| connected idle sessions | gateway RSS (KiB) | growth per session (KiB) |")
    print("|---:|---:|---:|")
    for count, r, per in rows:
        print(f"| {count} | {r} | {'' if per is None else f'{per:.0f}'} |")
    print(f"\nRestart: all {n} sessions `working` again {back:.1f} s after the new process started "
          f"(RSS then {after} KiB).")
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=120)
    sim.terminate()


if __name__ == "__main__":
    main()
