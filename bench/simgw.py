"""Shared by the benchmarks: a wa-sim and a release gateway (built with `--features simulator`
in target/bench) on loopback, and small HTTP helpers."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# WAGATE_BENCH_BIN: another build's folder (to measure an older build beside this one).
BIN = os.environ.get("WAGATE_BENCH_BIN") or os.path.join(ROOT, "target", "bench", "release")
SIM_PORT, GW_PORT = 18291, 18292
SIM = f"http://127.0.0.1:{SIM_PORT}"
GW = f"http://127.0.0.1:{GW_PORT}"


def req(method, url, body=None, key=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(url, data=data, method=method)
    r.add_header("content-type", "application/json")
    if key:
        r.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait(what, cond, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out: {what}")


def start_gateway(data):
    env = dict(os.environ, WAGATE_LISTEN=f"127.0.0.1:{GW_PORT}", WAGATE_DATA_DIR=data,
               WAGATE_WA_URL=f"ws://127.0.0.1:{SIM_PORT}/ws/chat", WAGATE_LOG=os.environ.get("WAGATE_BENCH_LOG", "warn"))
    p = subprocess.Popen([os.path.join(BIN, "wagate"), "serve"], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "gw.log"), "a"))
    wait("gateway", lambda: _ok(f"{GW}/readyz"))
    return p


def _ok(url):
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except Exception:
        return False


def pair(key, i):
    s, v = req("POST", f"{GW}/api/v1/sessions", {"label": f"bench {i}"}, key)
    sid = v["id"]
    req("POST", f"{GW}/api/v1/sessions/{sid}:start", None, key)

    def qr():
        s, v = req("GET", f"{GW}/api/v1/sessions/{sid}/qr", None, key)
        return v["qr"] if s == 200 else None

    code = wait("qr", qr)
    s, v = req("POST", f"{SIM}/control/scan", {"qr": code, "phone": f"62899{i:07d}", "name": f"B{i}"})
    assert s == 200, v
    wait("working", lambda: req("GET", f"{GW}/api/v1/sessions/{sid}", None, key)[1]["status"] == "working")
    return sid




def start_sim():
    sim = subprocess.Popen([os.path.join(BIN, "wa-sim"), "--listen", f"127.0.0.1:{SIM_PORT}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait("simulator", lambda: _ok(f"{SIM}/control/health"))
    return sim


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(gw, sim):
    """Ends the gateway (graceful: it stops its sessions and tasks) and then the simulator."""
    gw.terminate()
    gw.wait(timeout=60)
    sim.terminate()
