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
from simgw import GW, cpu_seconds, pair, req, start_gateway, start_sim, wait  # noqa: E402


def memory(pid):
    """(VmRSS, RssAnon) in KiB: all resident pages, and the process's own without mapped files."""
    v = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, rest = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                v[k] = int(rest.split()[0])
    return v["VmRSS"], v["RssAnon"]


def settle(pid):
    """Memory after the process has been quiet: the lowest of several reads over a few seconds."""
    time.sleep(3)
    return min(memory(pid) for _ in range(5) if time.sleep(0.4) is None)


def main():
    targets = [int(a) for a in sys.argv[1:]] or [100, 500, 1000]
    data = tempfile.mkdtemp(prefix="wagate-bench-")
    sim = start_sim()
    gw = start_gateway(data)
    key = open(os.path.join(data, "admin-key")).read().strip()
    rows = []
    base = settle(gw.pid)
    rows.append((0, base))
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
        rows.append((n, r))
        print(f"{n} sessions: RSS {r[0]} KiB, {(r[0] - base[0]) / n:.0f} KiB per session "
              f"({time.time() - t0:.0f} s so far)", flush=True)
    # Restart: every session back to working.
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=120)
    t1 = time.time()
    gw = start_gateway(data)

    def all_working():
        # The list is large at 10,000 sessions: read it twice a second, not twenty times.
        time.sleep(0.5)
        s, v = req("GET", f"{GW}/api/v1/sessions", None, key)
        return s == 200 and len(v["data"]) == n and all(x["status"] == "working" for x in v["data"])

    wait("every session working after the restart", all_working, timeout=900)
    back = time.time() - t1
    after = settle(gw.pid)
    # Idle: only keepalives go over the connections.
    idle_window = 30
    c0 = cpu_seconds(gw.pid)
    time.sleep(idle_window)
    idle_cpu = (cpu_seconds(gw.pid) - c0) / idle_window
    print()
    rows.append((f"{n} after a restart", after))
    print("| connected idle sessions | RSS (KiB) | RSS growth per session, from empty / from the previous row (KiB) "
          "| RssAnon (KiB) | RssAnon growth per session, from empty (KiB) |")
    print("|---:|---:|---:|---:|---:|")
    prev = (0, base)
    for count, r in rows:
        k = n if isinstance(count, str) else count
        if k == 0:
            print(f"| 0 | {r[0]} | | {r[1]} | |")
            continue
        step = "" if isinstance(count, str) else f" / {(r[0] - prev[1][0]) / (k - prev[0]):.0f}"
        print(f"| {count} | {r[0]} | {(r[0] - base[0]) / k:.0f}{step} | {r[1]} | {(r[1] - base[1]) / k:.0f} |")
        if not isinstance(count, str):
            prev = (k, r)
    print(f"\nRestart: all {n} sessions `working` again {back:.1f} s after the new process started.")
    print(f"Idle: the gateway used {idle_cpu * 100:.1f}% of one core over {idle_window} s with {n} "
          f"connected sessions (keepalives only).")
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=120)
    sim.terminate()


if __name__ == "__main__":
    main()
