#!/usr/bin/env python3
"""Benchmark (not a test): how much the database keeps of sent attachments, against wa-sim.

    bench/outbox.sh [FILES MIB]   (default: 100 files of 5 MiB)

One paired session is stopped, FILES sends of a MIB-MiB document are queued (the outbox then
holds every file, base64), the session is started again and sends them all; the database's
size on disk (file and write-ahead log) is printed before, while queued and once all are sent.
"""

import glob
import os
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simgw import GW, SIM, pair, req, start_gateway, start_sim, stop, wait  # noqa: E402


def db_bytes(data):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(data, "**", "*.db*"), recursive=True)
               if p.endswith((".db", ".db-wal")))


def post_file(key, sid, to, blob):
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"to\"\r\n\r\n{to}\r\n"
            f"--{boundary}\r\ncontent-disposition: form-data; name=\"type\"\r\n\r\ndocument\r\n"
            f"--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n"
            "content-type: application/octet-stream\r\n\r\n").encode()
    body = head + blob + f"\r\n--{boundary}--\r\n".encode()
    r = urllib.request.Request(f"{GW}/api/v1/sessions/{sid}/messages?async=true", data=body, method="POST")
    r.add_header("content-type", f"multipart/form-data; boundary={boundary}")
    r.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(r, timeout=120) as resp:
        assert resp.status == 202, resp.status


def main():
    files, mib = (int(a) for a in (sys.argv[1:3] if len(sys.argv) > 2 else ("100", "5")))
    import tempfile
    data = tempfile.mkdtemp(prefix="wagate-outbox-")
    os.environ["WAGATE_BODY_LIMIT_BYTES"] = str((mib + 1) << 20)
    sim = start_sim()
    gw = start_gateway(data)
    key = open(os.path.join(data, "admin-key")).read().strip()
    sid = pair(key, 0)
    s, v = req("PATCH", f"{GW}/api/v1/sessions/{sid}", {"ratePerMin": 10000, "ratePerHour": 1000000}, key)
    assert s == 200, v
    s, v = req("POST", f"{SIM}/control/people", {"phone": "628660000001", "name": "R"})
    assert s == 201, v
    s, v = req("POST", f"{GW}/api/v1/sessions/{sid}:stop", None, key)
    assert s in (200, 202), (s, v)
    wait("stopped", lambda: req("GET", f"{GW}/api/v1/sessions/{sid}", None, key)[1]["status"] == "stopped")
    before = db_bytes(data)
    blob = os.urandom(mib << 20)
    t0 = time.time()
    for _ in range(files):
        post_file(key, sid, "628660000001", blob)
    queued = db_bytes(data)
    req("POST", f"{GW}/api/v1/sessions/{sid}:start", None, key)


    chat = "628660000001@s.whatsapp.net"

    def pending():
        s, v = req("GET", f"{GW}/api/v1/sessions/{sid}/chats/{chat}/messages?limit=200", None, key)
        return sum(1 for m in v["data"] if m["status"] == "pending") if s == 200 else -1

    wait("every file sent", lambda: pending() == 0 or time.sleep(0.5), timeout=3600)
    after = db_bytes(data)
    mb = lambda n: f"{n / (1 << 20):,.1f} MiB"  # noqa: E731
    print(f"| files | file size | database before | while queued | after all sent | sent in |")
    print(f"|---:|---:|---:|---:|---:|---:|")
    print(f"| {files} | {mib} MiB | {mb(before)} | {mb(queued)} | {mb(after)} | {time.time() - t0:.1f} s |")
    stop(gw, sim)


if __name__ == "__main__":
    main()
