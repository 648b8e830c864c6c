#!/usr/bin/env python3
"""What one peer hop costs: a 3-node Outpost cluster on loopback, wrk with one connection
against node 0, once for an object node 0 owns (a local hit) and once for an object another
node owns (node 0 forwards to the owner, which answers from its cache).

    python3 bench/hop_latency.py target/release/outpost [--seconds 10]

Prints p50/p90/p99 of both and the difference. Needs wrk. Closed loop with one connection,
so the latencies are service times plus loopback round trips, not queueing.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

BASE = 19300


def config(i, nodes, origin):
    peers = ", ".join(f'"127.0.0.1:{BASE + 10 + n}"' for n in range(nodes))
    return f"""
[node]
name = "hop-{i}"
[listen]
http = ["127.0.0.1:{BASE + 10 + i}"]
[admin]
listen = "127.0.0.1:{BASE + 20 + i}"
[cluster]
advertise = "127.0.0.1:{BASE + 10 + i}"
peers = [{peers}]
secret = "hop-latency-bench-secret"
replicate = "none"
[[site]]
hosts = ["127.0.0.1", "localhost"]
origin = ["http://127.0.0.1:{origin}"]
[site.cache.status_ttl]
200 = "1h"
"""


def get(url, host=None):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


def wrk(url, seconds):
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", "-H", "Host: localhost", url],
        capture_output=True, text=True, check=True).stdout
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        lat[pct] = value * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return lat, rps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="hop-latency-")
    for i in range(64):
        with open(os.path.join(work, f"o{i}"), "wb") as f:
            f.write(os.urandom(1024))
    procs = [subprocess.Popen([sys.executable, "-m", "http.server", str(BASE), "-b", "127.0.0.1"],
                              cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for i in range(3):
            path = os.path.join(work, f"node-{i}.toml")
            with open(path, "w") as f:
                f.write(config(i, 3, BASE))
            procs.append(subprocess.Popen([args.binary, "--config", path],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.5)
        local = remote = None
        for i in range(64):
            owner = json.loads(get(f"http://127.0.0.1:{BASE + 20}/cluster/owner?url=http://localhost/o{i}")[0])
            if owner["self"] and local is None:
                local = f"/o{i}"
            if not owner["self"] and remote is None:
                remote = f"/o{i}"
        node0 = f"http://127.0.0.1:{BASE + 10}"
        for path in (local, remote):
            for _ in range(3):
                _, headers = get(node0 + path, "localhost")
            print(f"{path}: Cache-Status: {headers.get('cache-status')}")
        (l_lat, l_rps), (r_lat, r_rps) = wrk(node0 + local, args.seconds), wrk(node0 + remote, args.seconds)
        print(f"{'':12} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'req/s':>8}")
        print(f"{'local hit':12} {l_lat['50']:8.0f} {l_lat['90']:8.0f} {l_lat['99']:8.0f} {l_rps:8.0f}")
        print(f"{'one hop':12} {r_lat['50']:8.0f} {r_lat['90']:8.0f} {r_lat['99']:8.0f} {r_rps:8.0f}")
        print(f"hop cost at p50: {r_lat['50'] - l_lat['50']:.0f} µs")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
