#!/usr/bin/env python3
"""Key spray: one node with a small cache fed far more distinct objects than it can hold.

    python3 bench/key_spray.py [--binary target/release/outpost] [--memory 64MiB]
        [--keys 200000] [--clients 4] [--json FILE] [--keep]

On 127.0.0.1, on free ports: the origin of bench/chaos.py (16 KiB cacheable objects /k/N,
each with X-Sha256) and one node with `cache.memory = --memory`. Client threads (keep-alive)
request /k/0 .. /k/<keys-1> once each, as fast as they go: 200,000 x 16 KiB is about 3 GiB
through a 64 MiB cache, so the store evicts all the time. The node's RSS (VmRSS) is sampled
every 0.5 s.

Invariants (exit status 1 on any breach): every response is a 200 whose body hashes to its
X-Sha256; RSS <= 1.15 x cache.memory + 64 MiB at every sample. Prints max RSS, throughput and
the node's cache figures at the end.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (the origin, processes and RSS sampling)

MIB = chaos.MIB


def metric(admin, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = [float(m.group(1)) for m in
              re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)]
    return sum(values)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(chaos.HERE, "..", "target", "release",
                                                    "outpost"))
    p.add_argument("--memory", default="64MiB")
    p.add_argument("--keys", type=int, default=200_000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--keep", action="store_true", help="keep configs and logs")
    args = p.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.path.isfile(args.binary):
        sys.exit(f"error: {args.binary} not found (cargo build --release)")
    args.version_period = 3600.0  # the objects never change during the spray

    work = tempfile.mkdtemp(prefix="outpost-spray-")
    cluster = chaos.Cluster(args, work, 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = False
    try:
        cluster.start()
        node, port, admin = cluster.nodes[0], cluster.ports[0], cluster.admins[0]
        limit = 1.15 * chaos.parse_size(args.memory) + 64 * MIB
        rss = chaos.RssSampler([node], limit)
        lock = threading.Lock()
        counts = {"next": 0, "ok": 0, "bad": [], "bytes": 0}

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                with lock:
                    n = counts["next"]
                    counts["next"] += 1
                if n >= args.keys:
                    break
                path = f"/k/{n}"
                try:
                    conn.request("GET", path, headers={"Host": chaos.HOST})
                    r = conn.getresponse()
                    body = r.read()
                    headers = {k.lower(): v for k, v in r.getheaders()}
                    breach = (f"status {r.status}" if r.status != 200
                              else chaos.check_body(path, headers, body))
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    breach = f"{type(e).__name__}: {e}"
                    body = b""
                with lock:
                    if breach:
                        counts["bad"].append(f"{path}: {breach}")
                    else:
                        counts["ok"] += 1
                        counts["bytes"] += len(body)
            conn.close()

        rss.start()
        t0 = time.monotonic()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        time.sleep(1.0)  # one more second of samples after the last request
        rss.halt.set()
        rss.join()
        node_alive = node.alive()
        figures = {
            "keys": args.keys, "ok": counts["ok"], "failed": len(counts["bad"]),
            "seconds": elapsed, "req_per_s": args.keys / elapsed,
            "mib_per_s": counts["bytes"] / MIB / elapsed,
            "rss_max_mib": rss.max[node.name] / MIB, "rss_limit_mib": limit / MIB,
            "rss_samples": rss.samples, "rss_over": len(rss.over),
        }
        if node_alive:
            figures["cache_bytes_mib"] = metric(admin, "outpost_cache_bytes") / MIB
            figures["cache_entries"] = metric(admin, "outpost_cache_entries")
            figures["evictions"] = metric(admin, "outpost_cache_evictions_total")
        print(f"## Key spray: 1 node, cache.memory = {args.memory}, {args.keys} distinct "
              f"16 KiB URLs, {args.clients} clients")
        print(f"requests: {args.keys} in {elapsed:.1f} s ({figures['req_per_s']:.0f}/s, "
              f"{figures['mib_per_s']:.0f} MiB/s), ok {counts['ok']}, failed {len(counts['bad'])}")
        if node_alive:
            print(f"cache at the end: {figures['cache_bytes_mib']:.1f} MiB in "
                  f"{figures['cache_entries']:.0f} entries, {figures['evictions']:.0f} evictions")
        print(f"RSS: max {figures['rss_max_mib']:.1f} MiB over {rss.samples} samples, limit "
              f"1.15 x {args.memory} + 64 MiB = {limit / MIB:.1f} MiB")
        checks = [
            (node_alive, "the node is still running", []),
            (not counts["bad"], "every response a 200 true to its checksum", counts["bad"]),
            (not rss.over, "RSS within the limit at every sample",
             [f"{t:.1f}s {r / MIB:.1f} MiB" for t, _, r in rss.over]),
        ]
        for good, claim, detail in checks:
            print(f"{'PASS' if good else 'FAIL'}: {claim}"
                  + ("" if good else f" ({len(detail)} breaches)"))
            for d in detail[:10]:
                print(f"    {d}")
        ok = all(good for good, _, _ in checks)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)
    finally:
        cluster.stop()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"(configs and logs in {work})", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
