#!/usr/bin/env python3
"""Benchmark (not a test): sending, against wa-sim on this machine, with rate limits lifted.

    bench/send.sh [SESSIONS MESSAGES_PER_SESSION CLIENTS_PER_SESSION]   (default: 1 1000 4, then 4 sessions)

For each configuration: synchronous sends (each request waits for WhatsApp's server ack and
answers 201) from CLIENTS_PER_SESSION concurrent callers per session, timing every request
(p50/p99 from request to server ack) and the sustained rate; then asynchronous sends (202 at
once from the durable outbox), timing the answers and the time until every message is `sent`.
"""

import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simgw import GW, SIM, cpu_seconds, pair, req, start_gateway, start_sim, stop, wait  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def run(key, sids, per_session, clients, mode, tag):
    """Sends per_session texts from each session; returns (elapsed, latencies in ms)."""
    lat, lock = [], threading.Lock()
    jobs = {sid: list(range(per_session)) for sid in sids}

    def worker(sid, to):
        while True:
            with lock:
                if not jobs[sid]:
                    return
                i = jobs[sid].pop()
            t = time.perf_counter()
            q = "?async=true" if mode == "async" else ""
            s, v = req("POST", f"{GW}/api/v1/sessions/{sid}/messages{q}",
                       {"to": to, "type": "text", "text": f"{tag} {i}"}, key)
            ms = (time.perf_counter() - t) * 1000
            assert s == (202 if mode == "async" else 201), (s, v)
            with lock:
                lat.append(ms)

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(sid, to))
               for sid, to in sids.items() for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = time.time() - t0
    return t0, accepted, lat


class SentCounter:
    """Counts `sent` status events as they come, reading each event of the feed once (a
    bench that re-read the whole feed on every look would measure its own reads)."""

    def __init__(self, key, after):
        self.key, self.after, self.n = key, after, 0

    def __call__(self):
        while True:
            s, v = req("GET", f"{GW}/api/v1/events?after={self.after}&event=message.status&limit=1000",
                       None, self.key)
            if not v["data"]:
                return self.n
            self.n += sum(1 for e in v["data"] if e["payload"]["status"] == "sent")
            self.after = v["next"]


def main():
    args = [int(a) for a in sys.argv[1:]]
    configs = [tuple(args[:3])] if args else [(1, 1000, 4), (4, 500, 4)]
    import tempfile
    data = tempfile.mkdtemp(prefix="wagate-send-")
    sim = start_sim()
    gw = start_gateway(data)
    key = open(os.path.join(data, "admin-key")).read().strip()
    need = max(c[0] for c in configs)
    sids = {}
    for i in range(need):
        sid = pair(key, i)
        s, v = req("PATCH", f"{GW}/api/v1/sessions/{sid}", {"ratePerMin": 10000, "ratePerHour": 1000000}, key)
        assert s == 200, v
        phone = f"62866{i:07d}"
        s, v = req("POST", f"{SIM}/control/people", {"phone": phone, "name": f"R{i}"})
        assert s == 201, v
        sids[sid] = f"{phone}@s.whatsapp.net"
    # Warm-up: the first message to a person fetches their devices and starts Signal sessions.
    run(key, sids, 5, 1, "sync", "warm")
    print("| sessions | mode | messages | clients/session | accepted in | all sent in | sent/s | p50 answer | p99 answer | gateway CPU | CPU/message |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sessions, per_session, clients in configs:
        use = dict(list(sids.items())[:sessions])
        n = sessions * per_session
        for mode in ["sync", "async"]:
            s, v = req("GET", f"{GW}/api/v1/events?limit=1000&after=0", None, key)
            after = 0
            while v["data"]:
                after = v["next"]
                s, v = req("GET", f"{GW}/api/v1/events?limit=1000&after={after}", None, key)
            cpu0 = cpu_seconds(gw.pid)
            perf = None
            if os.environ.get("SEND_PERF"):
                # A CPU profile of the gateway while it sends (perf's software clock).
                out = f"{os.environ['SEND_PERF']}-{sessions}-{mode}.data"
                perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", os.environ.get("SEND_PERF_HZ", "499"), *os.environ.get("SEND_PERF_CG", "-g").split(),
                                         "-p", str(gw.pid), "-o", out],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0, accepted, lat = run(key, use, per_session, clients, mode, f"{mode}-{sessions}")
            counter = SentCounter(key, after)
            wait("every message sent", lambda: counter() >= n or time.sleep(0.2), timeout=1800)
            done = time.time() - t0
            cpu = cpu_seconds(gw.pid) - cpu0
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=120)
            print(f"| {sessions} | {mode} | {n} | {clients} | {accepted:.2f} s | {done:.2f} s | "
                  f"{n / done:,.0f} | {pct(lat, 0.5):.1f} ms | {pct(lat, 0.99):.1f} ms | {cpu:.1f} s | "
                  f"{cpu / n * 1000:.2f} ms |", flush=True)
    stop(gw, sim)


if __name__ == "__main__":
    main()
