#!/usr/bin/env python3
"""What a shield hop costs, and how many origin fetches a cold burst through two regions
makes. On loopback: a small Python origin, one shield node (a cluster of one) and two edge
regions of three nodes each, every edge site with `shield = [the shield node]`.

    python3 bench/shield_hop.py target/release/outpost [--seconds 10] [--burst 60]

latency  wrk with one connection, once against the shield node directly (a hit there), once
         against the edge node that owns the object: the edge may not store it (the origin
         marks it storable only for the shield, through the shield's targeted field), so
         every request crosses the shield hop and is a hit on the shield. The hop's cost is
         the difference of the two p50s (and p99s). Closed loop: service times plus loopback
         round trips, not queueing. Needs wrk.
burst    For each of 5 cold objects, --burst concurrent clients spread over the 6 edge nodes
         ask at once; the origin delays each answer 200 ms and counts what it is asked. The
         goal is 1 fetch per object.
"""
import argparse
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

BASE = 19700
SHIELD = BASE + 1
BODY = os.urandom(1024)
SEEN = Counter()
SEEN_LOCK = threading.Lock()


class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with SEEN_LOCK:
            SEEN[self.path] += 1
        if self.path.startswith("/slow/"):
            time.sleep(0.2)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        if self.path.startswith("/shield-only/"):
            # Stored by the shield only: the edges ask it every time.
            self.send_header("Shield-Cache-Control", "max-age=3600")
            self.send_header("Cache-Control", "no-store")
        else:
            self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


def node_config(name, region, port, admin, peers, shield):
    shield_line = f'shield = ["http://127.0.0.1:{shield}"]' if shield else ""
    targeted = 'targeted_field = "Shield-Cache-Control"' if not shield else ""
    return f"""
[node]
name = "{name}"
region = "{region}"
[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
[cluster]
advertise = "127.0.0.1:{port}"
peers = [{", ".join(f'"127.0.0.1:{p}"' for p in peers)}]
secret = "shield-hop-bench-secret"
replicate = "none"
[[site]]
hosts = ["localhost"]
origin = ["http://127.0.0.1:{BASE}"]
{shield_line}
[site.cache]
{targeted}
"""


def get(url, host="localhost"):
    request = urllib.request.Request(url, headers={"Host": host})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


def wrk(url, seconds):
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", "-H", "Host: localhost", url],
        capture_output=True, text=True, check=True).stdout
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out, re.M)
        lat[pct] = float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
    return lat


def wait_ready(admin):
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"node with admin {admin} never became ready")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=60)
    args = parser.parse_args()
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", BASE), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="shield-hop-")
    nodes = [("shield-0", "eu-central", SHIELD, SHIELD + 50, [SHIELD], None)]
    for r, region in enumerate(["eu-west", "us-east"]):
        ports = [BASE + 10 + 10 * r + i for i in range(3)]
        for i, port in enumerate(ports):
            nodes.append((f"{region}-{i}", region, port, port + 50, ports, SHIELD))
    procs = []
    try:
        for name, region, port, admin, peers, shield in nodes:
            path = os.path.join(work, f"{name}.toml")
            with open(path, "w") as f:
                f.write(node_config(name, region, port, admin, peers, shield))
            procs.append(subprocess.Popen([args.binary, "--config", path],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for node in nodes:
            wait_ready(node[3])
        edges = nodes[1:]

        # Latency: the object's owner in eu-west, so the request goes straight to the shield.
        owner_admin = edges[0][3]
        for i in range(100):
            url = f"http://localhost/shield-only/o{i}"
            owner = json.loads(get(f"http://127.0.0.1:{owner_admin}/cluster/owner?url={url}")[0])
            if owner["self"]:
                path = f"/shield-only/o{i}"
                break
        edge = f"http://127.0.0.1:{edges[0][2]}{path}"
        shield = f"http://127.0.0.1:{SHIELD}{path}"
        for _ in range(3):
            _, headers = get(edge)
        print(f"{path} through the edge: Cache-Status: {headers.get('cache-status')}")
        direct = wrk(shield, args.seconds)
        hopped = wrk(edge, args.seconds)
        print(f"{'':24} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8}")
        print(f"{'shield hit, direct':24} {direct['50']:8.0f} {direct['90']:8.0f} {direct['99']:8.0f}")
        print(f"{'edge -> shield hit':24} {hopped['50']:8.0f} {hopped['90']:8.0f} {hopped['99']:8.0f}")
        print(f"shield hop cost: p50 {hopped['50'] - direct['50']:.0f} µs, "
              f"p99 {hopped['99'] - direct['99']:.0f} µs")
        print(f"origin fetches of {path}: {SEEN[path]}")

        # Cold bursts over both regions.
        fetches = []
        for n in range(5):
            path = f"/slow/burst-{n}"
            results = []

            def one(i):
                try:
                    body, _ = get(f"http://127.0.0.1:{edges[i % len(edges)][2]}{path}")
                    results.append(body == BODY)
                except OSError:
                    results.append(False)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(args.burst)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            fetches.append(SEEN[path])
            print(f"{path}: {args.burst} clients over 2 regions x 3 nodes, "
                  f"{results.count(True)} whole bodies, origin fetches {SEEN[path]}")
        print(f"origin fetches per cold object: {fetches}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        origin.shutdown()


if __name__ == "__main__":
    main()
