#!/usr/bin/env python3
"""A large object through three nodes: stored in chunks (cold and warm) against streamed
through uncached. Time to first byte and throughput, as a client sees them.

    python3 bench/chunks.py [--binary target/release/outpost] [--size 256MiB]
        [--chunk-size 1MiB] [--trials 3] [--origin-delay-ms 0]

On 127.0.0.1, on free ports: a Python origin serving --size random bytes at any path, with
a strong ETag, `Cache-Control: max-age=3600` and single-range support (it counts requests
and can delay each answer's head by --origin-delay-ms, an origin far away), and two
clusters of three real nodes:

uncached  max_object below the object's size: every GET is streamed from the origin
          through the node asked and the owner.
cold      max_object above it: the first GET of a path stores it in chunks spread over
          the three nodes (each chunk from the origin with Range and If-Range). Twice:
          into fresh memory (a new cluster, whose pages the kernel must first zero), and
          into recycled memory (the nodes hold about two objects; the third one stored
          evicts the first and reuses its memory, a cache's steady state).
warm      the second GET of the first path: every chunk from the cluster's memory.

Each trial starts a new chunked cluster. The client (curl, to /dev/null) always asks the
first node; one warm body is checked by sha256 against the origin's. Prints per mode the
median time to first byte and throughput over --trials, and the origin's requests per
GET; exit status 1 if the body differs or a warm GET reached the origin.
"""
import argparse
import hashlib
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
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (processes, ports, waiting)

CONF = """[node]
name = "node-{i}"
[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "warn"
[cache]
memory = "{memory}"
max_object = "{max_object}"
chunk_size = "{chunk_size}"
[cluster]
advertise = "127.0.0.1:{port}"
peers = [{peers}]
secret = "chunks-bench-secret"
replicate = "none"
[[site]]
name = "bench"
hosts = ["localhost"]
origin = ["http://127.0.0.1:{origin}"]
"""


MODES = ["uncached", "cold, fresh memory", "cold, recycled memory", "warm"]


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As origin servers do (nginx's tcp_nodelay): a chunk's last segment is not held back.
    disable_nagle_algorithm = True
    body = b""
    etag = ""
    delay = 0.0
    lock = threading.Lock()
    requests = 0

    def do_GET(self):
        with Origin.lock:
            Origin.requests += 1
        if Origin.delay:
            time.sleep(Origin.delay)
        total = len(Origin.body)
        start, end, status = 0, total - 1, 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if m and (if_range is None or if_range == Origin.etag):
            start = int(m.group(1))
            end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", Origin.etag)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        self.end_headers()
        view = memoryview(Origin.body)[start:end + 1]
        try:
            for at in range(0, len(view), 1 << 20):
                self.wfile.write(view[at:at + (1 << 20)])
        except (BrokenPipeError, ConnectionResetError):
            # A node that stores a manifest drops the rest of the first whole response.
            self.close_connection = True

    def log_message(self, *args):
        pass


def curl(port, path):
    """(time to first byte s, total s, bytes) of one GET to /dev/null."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-H", "Host: localhost", "-w",
         "%{http_code} %{time_starttransfer} %{time_total} %{size_download}",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True, timeout=600).stdout.split()
    if out[0] != "200":
        raise SystemExit(f"GET {path}: status {out[0]}")
    return float(out[1]), float(out[2]), int(out[3])


def sha256_of(port, path):
    h = hashlib.sha256()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": "localhost"})
    with urllib.request.urlopen(req, timeout=600) as r:
        while True:
            block = r.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


class Cluster:
    def __init__(self, work, name, binary, origin, memory, max_object, chunk_size):
        ports = chaos.free_ports(6)
        self.ports, self.admins = ports[:3], ports[3:]
        peers = ", ".join(f'"127.0.0.1:{p}"' for p in self.ports)
        self.procs = []
        for i, (port, admin) in enumerate(zip(self.ports, self.admins)):
            conf = os.path.join(work, f"{name}-{i}.toml")
            with open(conf, "w") as f:
                f.write(CONF.format(i=i, port=port, admin=admin, memory=memory,
                                    max_object=max_object, chunk_size=chunk_size,
                                    peers=peers, origin=origin))
            self.procs.append(chaos.Proc(f"{name}-{i}", [binary, "--config", conf],
                                         os.path.join(work, f"{name}-{i}.log")))

    def __enter__(self):
        for p in self.procs:
            p.start()
        for admin in self.admins:
            chaos.wait_for("node", lambda: chaos.http_ok(f"http://127.0.0.1:{admin}/readyz"))
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(chaos.HERE, "..", "target", "release",
                                                    "outpost"))
    p.add_argument("--size", default="256MiB")
    p.add_argument("--chunk-size", default="1MiB")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--origin-delay-ms", type=float, default=0.0)
    args = p.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.path.isfile(binary):
        sys.exit(f"error: {binary} not found (cargo build --release)")
    size = chaos.parse_size(args.size)
    Origin.body = os.urandom(size)
    Origin.etag = '"' + hashlib.sha256(Origin.body).hexdigest()[:16] + '"'
    Origin.delay = args.origin_delay_ms / 1000
    want = hashlib.sha256(Origin.body).hexdigest()
    (origin_port,) = chaos.free_ports(1)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", origin_port), Origin)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="outpost-chunks-")
    # Room for about two objects over the three nodes (each holds a third of every object):
    # the third object stored evicts the first, and its chunks reuse that memory.
    memory = f"{size * 2 // 3 // (1 << 20) + 64}MiB"
    samples = {mode: [] for mode in MODES + ["filling"]}
    requests = {mode: 0 for mode in MODES + ["filling"]}
    failures = []
    try:
        def get(mode, port, path):
            before = Origin.requests
            samples[mode].append(curl(port, path))
            if os.environ.get("CHUNKS_RAW"):
                print(mode, path, samples[mode][-1], file=sys.stderr)
            requests[mode] += Origin.requests - before

        small = f"{max(1, size // (1 << 20) // 2)}MiB"
        with Cluster(work, "uncached", binary, origin_port, memory, small, args.chunk_size) as c:
            for n in range(args.trials):
                get("uncached", c.ports[0], f"/u/{n}")
        for n in range(args.trials):
            name = f"chunked-{n}"
            with Cluster(work, name, binary, origin_port, memory, "1TiB", args.chunk_size) as c:
                get("cold, fresh memory", c.ports[0], "/c/0")
                get("warm", c.ports[0], "/c/0")
                if n == 0 and sha256_of(c.ports[0], "/c/0") != want:
                    failures.append("the warm body differs from the origin's")
                get("filling", c.ports[0], "/c/1")
                get("cold, recycled memory", c.ports[0], "/c/2")
        if requests["warm"]:
            failures.append(f"warm GETs reached the origin {requests['warm']} times")
        print(f"## {args.size} object, chunk_size {args.chunk_size}, three nodes of {memory}, "
              f"origin delay {args.origin_delay_ms:g} ms, median of {args.trials}")
        print("| mode | first byte | whole GET | throughput after first byte "
              "| origin requests per GET |")
        print("|---|---|---|---|---|")
        rates = {}
        for mode in MODES:
            got = samples[mode]
            ttfb = statistics.median(s[0] for s in got)
            total = statistics.median(s[1] for s in got)
            rates[mode] = statistics.median(s[2] / (s[1] - s[0]) for s in got) / (1 << 20)
            ratio = rates[mode] / rates["uncached"]
            print(f"| {mode} | {ttfb * 1000:.1f} ms | {total:.2f} s | {rates[mode]:.0f} MiB/s "
                  f"({ratio:.2f}x uncached) | {requests[mode] / len(got):.0f} |")
        for f in failures:
            print(f"FAIL: {f}")
        print("PASS" if not failures else "FAIL")
        return 1 if failures else 0
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
