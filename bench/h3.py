#!/usr/bin/env python3
"""HTTP/3 hits beside HTTP/2-over-TLS hits of the same node, with the same load generator.

    python3 bench/h3.py [--binary target/release/outpost] [--duration 10] [--clients 32]
        [--streams 8] [--trials 3]

On 127.0.0.1, on free ports: a Python origin serving a cacheable 1 KiB object and one node
with `https` and `quic` on the same port number (TCP and UDP), pinned to CPU 1 (`taskset`);
on CPU 0 one load generator, `examples/h3load.rs` (hyper's h2 client and h3's client, the
same loop for both; Debian's h2load has no HTTP/3), runs hits over h2 and over h3 in turn,
--trials times, alternating, with the same connections and streams per connection; h2load
runs the h2 hits too, to show how much of the h2 figure is the Rust client. Prints the median
requests/s and mean latency of each, the share of its core the node and the load generator
used (the one near 100 % is the bound; the warm-up second is inside the window), and the ratio
h3 / h2.
"""
import argparse
import http.server
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (processes, ports, waits)

FIXTURES = os.path.join(chaos.HERE, "..", "tests", "fixtures", "tls")

CONF = """[node]
name = "h3-bench"
[listen]
http = []
https = ["127.0.0.1:{port}"]
quic = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "warn"
[[tls.certificates]]
cert = "{fixtures}/alpha.pem"
key = "{fixtures}/alpha.key"
[[site]]
name = "bench"
hosts = ["localhost", "127.0.0.1", "alpha.test"]
origin = ["http://127.0.0.1:{origin}"]
"""


class Origin(http.server.BaseHTTPRequestHandler):
    body = b"x" * 1024
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Cache-Control", "public, max-age=3600")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def proc_ticks(pid):
    """CPU ticks (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def children_seconds():
    """CPU seconds used by the waited-for children (the load generators) so far."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(node_pid, run):
    """`run()`'s result, with the node's and the load generator's share of one core."""
    import time
    hz = os.sysconf("SC_CLK_TCK")
    t0, n0, c0 = time.monotonic(), proc_ticks(node_pid), children_seconds()
    result = run()
    wall = time.monotonic() - t0
    node = (proc_ticks(node_pid) - n0) / hz / wall
    client = (children_seconds() - c0) / wall
    return result + (node, client)


def h3load(port, proto, args):
    cmd = ["taskset", "-c", "0", args.h3load, "--proto", proto, "--addr", f"127.0.0.1:{port}",
           "--sni", "alpha.test", "--ca", os.path.join(os.path.abspath(FIXTURES), "ca.pem"),
           "--url", "https://alpha.test/f/1k", "-c", str(args.clients), "-m",
           str(args.streams), "-d", str(args.duration)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"requests (\d+) failed (\d+) req/s ([0-9.]+) mean_ms ([0-9.]+)", out)
    if not m or m.group(2) != "0":
        sys.exit(f"error: h3load over {proto}: {out}")
    return float(m.group(3)), f"{m.group(4)}ms"


def h2load(port, proto, args):
    cmd = ["taskset", "-c", "0", "h2load", "-t1", f"-c{args.clients}", f"-m{args.streams}",
           "-D", str(args.duration), "--warm-up-time", "1", "--npn-list", proto,
           f"https://127.0.0.1:{port}/f/1k"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    got = re.search(r"Application protocol: (\S+)", out)
    if not got or got.group(1) != proto:
        sys.exit(f"error: h2load did not negotiate {proto}\n{out}")
    rps = float(re.search(r"finished in [^,]+, ([0-9.]+) req/s", out).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if done and done.group(1) != done.group(2):
        sys.exit(f"error: failed requests over {proto}\n{out}")
    lat = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    return rps, lat


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(chaos.HERE, "..", "target", "release",
                                                    "outpost"))
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--h3load", default=os.path.join(chaos.HERE, "..", "target", "release",
                                                    "examples", "h3load"))
    args = p.parse_args()
    if not os.path.isfile(args.h3load):
        sys.exit(f"error: {args.h3load} not found (cargo build --release --example h3load)")
    binary = os.path.abspath(args.binary)
    if not os.path.isfile(binary):
        sys.exit(f"error: {binary} not found (cargo build --release)")
    work = tempfile.mkdtemp(prefix="outpost-h3-")
    origin_port, port, admin = chaos.free_ports(3)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", origin_port), Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conf = os.path.join(work, "node.toml")
    with open(conf, "w") as f:
        f.write(CONF.format(port=port, admin=admin, origin=origin_port,
                            fixtures=os.path.abspath(FIXTURES)))
    node = chaos.Proc("node", ["taskset", "-c", "1", binary, "--config", conf],
                      os.path.join(work, "node.log"))
    try:
        node.start()
        chaos.wait_for("node", lambda: chaos.http_ok(f"http://127.0.0.1:{admin}/readyz"))
        results = {"h2": [], "h3": [], "h2 (h2load)": []}
        for _ in range(args.trials):
            pid = node.pid()
            results["h2"].append(measured(pid, lambda: h3load(port, "h2", args)))
            results["h3"].append(measured(pid, lambda: h3load(port, "h3", args)))
            if shutil.which("h2load"):
                results["h2 (h2load)"].append(measured(pid, lambda: h2load(port, "h2", args)))
        medians = {}
        for proto, runs in results.items():
            if not runs:
                continue
            medians[proto] = statistics.median(r[0] for r in runs)
            trials = ", ".join(f"{r:.0f} req/s, mean {lat}, node CPU {n:.0%}, client CPU {c:.0%}"
                               for r, lat, n, c in runs)
            print(f"{proto:>12}: {medians[proto]:9.0f} req/s  (trials: {trials})")
        print(f"h3 hits / h2+TLS hits: {medians['h3'] / medians['h2']:.2f}x requests/s "
              f"({args.clients} clients x {args.streams} streams, 1 KiB, one proxy core)")
    finally:
        node.stop()
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
