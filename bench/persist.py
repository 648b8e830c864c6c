#!/usr/bin/env python3
"""Restart with cache.persist: what a drain's snapshot costs and what the restart saves.

    python3 bench/persist.py [--binary target/release/outpost] [--keys 12000]
        [--memory 256MiB] [--clients 4]

On 127.0.0.1, on free ports: the origin of bench/chaos.py (16 KiB cacheable objects /k/N,
each with X-Sha256) and one node with `cache.persist` in a temporary directory. The node is
filled with --keys objects, sent SIGTERM, and started again on the same configuration; then
every object is asked once more. Prints: the snapshot's size, the time to write it (the
node's own figure) and the whole drain, the time from start to /readyz 200 and the node's
load time, and how many of the objects reached the origin after the restart (goal: 0).
Exit status 1 if any body fails its checksum or any object reached the origin again.
"""
import argparse
import http.client
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (the origin and processes)

CONF = """[node]
name = "persist-bench"
[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "info"
[cache]
memory = "{memory}"
max_object = "1MiB"
persist = "{dir}"
[[site]]
name = "bench"
hosts = ["localhost", "127.0.0.1"]
origin = ["http://127.0.0.1:{origin}"]
"""


def origin_requests(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(m.group(1)) for m in
               re.finditer(r"^outpost_origin_requests_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def fetch_all(port, keys, clients):
    """Ask /k/0 .. /k/<keys-1> once each; the breaches (bad status or checksum)."""
    lock = threading.Lock()
    state = {"next": 0, "bad": []}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                n = state["next"]
                state["next"] += 1
            if n >= keys:
                break
            path = f"/k/{n}"
            conn.request("GET", path, headers={"Host": chaos.HOST})
            r = conn.getresponse()
            body = r.read()
            headers = {k.lower(): v for k, v in r.getheaders()}
            breach = f"status {r.status}" if r.status != 200 else chaos.check_body(path, headers, body)
            if breach:
                with lock:
                    state["bad"].append(f"{path}: {breach}")
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["bad"]


def logged_ms(log, message):
    with open(log) as f:
        text = f.read()
    for line in text.splitlines():
        if message in line:
            m = re.search(r"took_ms=(\d+)", line)
            return int(m.group(1)) if m else None
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(chaos.HERE, "..", "target", "release",
                                                    "outpost"))
    p.add_argument("--keys", type=int, default=12_000)
    p.add_argument("--memory", default="256MiB")
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.path.isfile(binary):
        sys.exit(f"error: {binary} not found (cargo build --release)")
    work = tempfile.mkdtemp(prefix="outpost-persist-")
    origin_port, port, admin = chaos.free_ports(3)
    origin = chaos.Proc("origin", [sys.executable, os.path.join(chaos.HERE, "chaos.py"),
                                   "--serve-origin", str(origin_port), str(time.time()), "3600"],
                        os.path.join(work, "origin.log"))
    conf = os.path.join(work, "node.toml")
    with open(conf, "w") as f:
        f.write(CONF.format(port=port, admin=admin, memory=args.memory, origin=origin_port,
                            dir=os.path.join(work, "cache")))
    failures = []
    try:
        origin.start()
        chaos.wait_for("origin", lambda: chaos.http_ok(f"http://127.0.0.1:{origin_port}/health"))
        logs = [os.path.join(work, f"node-{i}.log") for i in (1, 2)]
        node = chaos.Proc("node", [binary, "--config", conf], logs[0])
        node.start()
        chaos.wait_for("node", lambda: chaos.http_ok(f"http://127.0.0.1:{admin}/readyz"))
        failures += fetch_all(port, args.keys, args.clients)
        t0 = time.monotonic()
        node.proc.terminate()
        node.proc.wait(60)
        drain_s = time.monotonic() - t0
        snapshot = os.path.join(work, "cache", "cache.snapshot")
        size = os.path.getsize(snapshot)
        write_ms = logged_ms(logs[0], "cache snapshot written")

        node = chaos.Proc("node", [binary, "--config", conf], logs[1])
        t0 = time.monotonic()
        node.start()
        chaos.wait_for("node", lambda: chaos.http_ok(f"http://127.0.0.1:{admin}/readyz"),
                       within=120)
        ready_s = time.monotonic() - t0
        load_ms = logged_ms(logs[1], "cache snapshot loaded")
        t0 = time.monotonic()
        failures += fetch_all(port, args.keys, args.clients)
        refill_s = time.monotonic() - t0
        refetched = origin_requests(admin)
        node.stop()
        mib = 1 << 20
        print(f"## Restart with cache.persist: {args.keys} x 16 KiB objects, "
              f"cache.memory = {args.memory}")
        print(f"snapshot: {size / mib:.1f} MiB, written in {write_ms} ms "
              f"({size / mib / max(write_ms or 1, 1) * 1000:.0f} MiB/s); SIGTERM to exit {drain_s:.2f} s")
        print(f"restart: loaded in {load_ms} ms, start to /readyz 200 in {ready_s:.2f} s")
        print(f"after the restart: {args.keys} requests in {refill_s:.2f} s, "
              f"{refetched:.0f} reached the origin")
        if refetched:
            failures.append(f"{refetched:.0f} objects fetched again")
        for f in failures[:10]:
            print(f"FAIL: {f}")
        print("PASS" if not failures else f"FAIL: {len(failures)} breaches")
        return 1 if failures else 0
    finally:
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
