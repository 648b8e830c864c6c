#!/usr/bin/env python3
"""Edge compression: what a coding saves and what its hits cost, against identity hits.

    python3 bench/compression.py [--binary target/release/outpost] [--duration 10]
        [--connections 32] [--trials 3] [--coding br]

On 127.0.0.1, on free ports: a Python origin serving one 100 KiB HTML page (cacheable, with
an ETag) and one node with `compress = [<coding>]`, pinned to CPU 1 (`taskset`), wrk on
CPU 0. First --misses URLs never asked before are fetched one at a time as identity and
encoded, alternating (a miss is compressed as it streams, at a fast level), timed to the last
byte. The page is fetched once as identity and once encoded (the one compression, timed), then
wrk runs hits of each form in turn, --trials times, alternating. Prints the encoded size and
ratio, and for each form the median requests/s and bytes/s of the trials; the ratio of the
encoded form's requests/s to identity's is the figure docs/performance.md quotes. Needs wrk.
"""
import argparse
import http.client
import http.server
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (processes, ports, waits)

CONF = """[node]
name = "compression-bench"
[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "warn"
[[site]]
name = "bench"
hosts = ["localhost", "127.0.0.1"]
origin = ["http://127.0.0.1:{origin}"]
compress = ["{coding}"]
"""


def page():
    rows, i = [], 0
    size = 0
    while size < 100 * 1024:
        row = f'<p class="row">row {i}: <a href="/item/{i * 7919 % 100003}">item</a> the quick brown fox</p>\n'
        rows.append(row)
        size += len(row)
        i += 1
    return ("<!doctype html><html><body>\n" + "".join(rows) + "</body></html>\n").encode()


class Origin(http.server.BaseHTTPRequestHandler):
    body = page()
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "public, max-age=3600")
        self.send_header("ETag", '"page-1"')
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def fetch(port, accept, path="/page.html"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": "localhost"}
    if accept:
        headers["Accept-Encoding"] = accept
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    coding = r.getheader("Content-Encoding") or ""
    conn.close()
    return r.status, coding, body


def misses(port, coding, count):
    """`count` misses of each form, alternating, each a URL never asked before: the time to
    the last byte (ms) and the bytes of each body."""
    times = {"identity": [], coding: []}
    sizes = {"identity": [], coding: []}
    for i in range(count):
        for form, accept in (("identity", None), (coding, coding)):
            t0 = time.monotonic()
            status, got, body = fetch(port, accept, f"/miss/{i}/{form}")
            times[form].append((time.monotonic() - t0) * 1000)
            sizes[form].append(len(body))
            assert status == 200 and got == (accept or ""), f"miss {form}: {status} {got!r}"
    return times, sizes


def quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def size(text):
    n, unit = float(text[:-2] if text[-2:] in ("KB", "MB", "GB") else text[:-1]), text[-2:]
    return n * {"KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}.get(unit, 1)


def wrk(port, accept, args):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s",
           "-H", "Host: localhost"]
    if accept:
        cmd += ["-H", f"Accept-Encoding: {accept}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/page.html"], capture_output=True,
                         text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([0-9.]+[KMG]?B)", out).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"error: {non2xx.group(1)} failed responses\n{out}")
    return rps, size(transfer)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(chaos.HERE, "..", "target", "release",
                                                    "outpost"))
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--coding", default="br", choices=["br", "zstd", "gzip"])
    p.add_argument("--misses", type=int, default=200, help="misses of each form")
    args = p.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.path.isfile(binary):
        sys.exit(f"error: {binary} not found (cargo build --release)")
    if not shutil.which("wrk"):
        sys.exit("error: wrk not found (apt-get install wrk)")
    work = tempfile.mkdtemp(prefix="outpost-compression-")
    origin_port, port, admin = chaos.free_ports(3)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", origin_port), Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conf = os.path.join(work, "node.toml")
    with open(conf, "w") as f:
        f.write(CONF.format(port=port, admin=admin, origin=origin_port, coding=args.coding))
    node = chaos.Proc("node", ["taskset", "-c", "1", binary, "--config", conf],
                      os.path.join(work, "node.log"))
    try:
        node.start()
        chaos.wait_for("node", lambda: chaos.http_ok(f"http://127.0.0.1:{admin}/readyz"))
        status, _, identity = fetch(port, None)
        assert status == 200 and identity == Origin.body, "identity body"
        t0 = time.monotonic()
        status, coding, encoded = fetch(port, args.coding)
        first_ms = (time.monotonic() - t0) * 1000
        assert status == 200 and coding == args.coding, f"not encoded: {coding!r}"
        miss_times, miss_sizes = misses(port, args.coding, args.misses)
        results = {"identity": [], args.coding: []}
        for _ in range(args.trials):
            results["identity"].append(wrk(port, None, args))
            results[args.coding].append(wrk(port, args.coding, args))
        print(f"page: {len(identity)} bytes; {args.coding}: {len(encoded)} bytes "
              f"(ratio {len(identity) / len(encoded):.1f}:1); first encoded hit, which "
              f"compresses: {first_ms:.1f} ms")
        medians = {}
        for form, runs in results.items():
            rps = statistics.median(r for r, _ in runs)
            bps = statistics.median(b for _, b in runs)
            medians[form] = (rps, bps)
            print(f"{form:>8}: {rps:9.0f} req/s  {bps / 1024 ** 2:8.1f} MiB/s  "
                  f"(trials: {', '.join(f'{r:.0f}' for r, _ in runs)})")
        (i_rps, i_bps), (e_rps, e_bps) = medians["identity"], medians[args.coding]
        print(f"{args.coding} hits / identity hits: {e_rps / i_rps:.2f}x requests/s, "
              f"{e_bps / i_bps:.2f}x bytes/s on the wire")
        for form in ("identity", args.coding):
            t = miss_times[form]
            print(f"{form:>8} misses: {statistics.median(miss_sizes[form]):9.0f} bytes, "
                  f"to last byte p50 {quantile(t, 0.5):.2f} ms p90 {quantile(t, 0.9):.2f} ms "
                  f"p99 {quantile(t, 0.99):.2f} ms ({len(t)} misses)")
        added = quantile(miss_times[args.coding], 0.5) - quantile(miss_times["identity"], 0.5)
        saved = 1 - statistics.median(miss_sizes[args.coding]) / statistics.median(
            miss_sizes["identity"])
        print(f"{args.coding} misses: {saved:.0%} of the bytes saved, {added:+.2f} ms at the "
              f"median to the last byte")
    finally:
        node.stop()
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
