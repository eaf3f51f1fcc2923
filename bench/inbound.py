#!/usr/bin/env python3
"""Benchmark (not a test): inbound messages per second, from simulated people to committed rows
(with their outbox events) in the gateway, against wa-sim on this machine.

    bench/inbound.sh [SESSIONS PEOPLE_PER_SESSION MESSAGES_PER_PERSON]   (default: 4 4 2000)

Pairs SESSIONS sessions, creates PEOPLE_PER_SESSION simulated people per session, lets each
person say hello once (so the Signal sessions exist), then has every person send its messages
at once through the simulator's burst endpoint (each person one after another, people in
parallel). Measures the time from the start of the bursts until the gateway's stored copy holds
every message (the sum of the chats' unread counters, read through the API), the gateway's and
the simulator's CPU time meanwhile, and checks that the feed holds one `message` event each.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simgw import GW, SIM, cpu_seconds, pair, req, start_gateway, start_sim, stop, wait  # noqa: E402


def stored(key, sids):
    total = 0
    for sid in sids:
        s, v = req("GET", f"{GW}/api/v1/sessions/{sid}/chats?limit=200", None, key)
        total += sum(c["unreadCount"] for c in v["data"])
    return total


def main():
    args = [int(a) for a in sys.argv[1:]]
    sessions, people, count = (args + [4, 4, 2000][len(args):])[:3]
    import tempfile
    data = tempfile.mkdtemp(prefix="wagate-inbound-")
    sim = start_sim()
    gw = start_gateway(data)
    key = open(os.path.join(data, "admin-key")).read().strip()
    sids = [pair(key, i) for i in range(sessions)]
    senders = []
    for s in range(sessions):
        for p in range(people):
            phone = f"62877{s:03d}{p:04d}"
            st, v = req("POST", f"{SIM}/control/people", {"phone": phone, "name": f"P{s}-{p}"})
            assert st == 201, v
            st, v = req("POST", f"{SIM}/control/people/{phone}/send", {"to": f"62899{s:07d}", "text": "hello"})
            assert st == 200, v
            senders.append((phone, f"62899{s:07d}"))
    warm = len(senders)
    wait("the hellos are stored", lambda: stored(key, sids) == warm)
    total = warm + len(senders) * count
    gw_cpu0, sim_cpu0 = cpu_seconds(gw.pid), cpu_seconds(sim.pid)
    t0 = time.time()
    threads = [threading.Thread(target=req, args=("POST", f"{SIM}/control/people/{phone}/burst",
                                                  {"to": to, "count": count}))
               for phone, to in senders]
    for t in threads:
        t.start()
    wait("every message is stored", lambda: stored(key, sids) == total, timeout=1800)
    elapsed = time.time() - t0
    gw_cpu, sim_cpu = cpu_seconds(gw.pid) - gw_cpu0, cpu_seconds(sim.pid) - sim_cpu0
    for t in threads:
        t.join()
    # One `message` event per stored message.
    events, after = 0, 0
    while True:
        s, v = req("GET", f"{GW}/api/v1/events?after={after}&event=message&limit=1000", None, key)
        if not v["data"]:
            break
        events += len(v["data"])
        after = v["next"]
    n = len(senders) * count
    print(f"{sessions} sessions x {people} people x {count} messages = {n} messages")
    print(f"stored in {elapsed:.2f} s: {n / elapsed:,.0f} messages/s end to end")
    print(f"gateway CPU {gw_cpu:.1f} s ({n / gw_cpu:,.0f} messages per gateway CPU-second), "
          f"simulator CPU {sim_cpu:.1f} s")
    print(f"`message` events in the feed: {events} (expected {total})")
    stop(gw, sim)


if __name__ == "__main__":
    main()
