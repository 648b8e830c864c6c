#!/usr/bin/env python3
"""Chaos soak: a 3-node Outpost cluster under steady load while nodes and the origin fail.

    python3 bench/chaos.py [--binary target/release/outpost] [--seconds 120] [--memory 64MiB]
        [--clients 6] [--client-timeout 5] [--seed 1] [--json FILE] [--keep] [--examples]

On 127.0.0.1, on free ports: an origin (this script run with --serve-origin, a threaded
http.server) and three clustered nodes in front of it. Client threads send GETs with
keep-alive to all three nodes; a chaos thread meanwhile, one event at a time,

  - SIGKILLs a node, and restarts it 3 s later,
  - SIGSTOPs a node, and SIGCONTs it 6 s later,
  - SIGKILLs the origin, and restarts it 10 s later,

with 4-8 s of calm between events (the first 5 s in). Before the clock starts every cacheable
object is fetched once, so the soak measures a warm cluster. Each node has
`cache.memory = --memory`, `replicate = "hot"` and otherwise the defaults.

The origin's objects carry their own proof: the body starts with "<path> v=<version>\\n",
the rest is derived from path and version, and the response has X-Version and X-Sha256 (of
the body), and an ETag per version (so revalidation answers 304). The version of every path
goes up every --version-period seconds. Kinds of object, by path prefix:

  /s/N   2 KiB,   max-age=2,    stale-if-error=600
  /c/N   64 KiB,  max-age=3,    stale-if-error=600, sent chunked (no Content-Length)
  /b/N   256 KiB, max-age=5,    stale-if-error=600
  /l/N   8 KiB,   max-age=3600
  /n/N   1 KiB,   no-store (every request reaches the origin)

Of the requests, about 39 % ask for /l/, 38 % /s/, 9 % /b/, 8 % /c/ and 7 % /n/.

A client request goes to one node, chosen at random, and like a client behind DNS failover
moves on to the next node when the connection is refused, reset, cut mid-body or times out
(every node at most once). A stale keep-alive connection (the node was restarted since) is
reopened once on the same node, as HTTP clients do, and not counted as a failure. HTTP
errors are final: they are what the client gets.

Invariants, checked on every response and sample; any breach makes the exit status 1:

  1. A 200 has X-Version and X-Sha256, its body hashes to X-Sha256, starts with the path
     asked for and the version of X-Version, and has the length of Content-Length.
  2. A 200 is never cut short unless its node, another node or the origin failed during it.
  3. No request fails (after failover) while the origin was up throughout and at least one
     node was up: every such failure is listed by cause.
  4. Every node's RSS (VmRSS, sampled every 0.5 s) <= 1.15 x cache.memory + 64 MiB.

Failures are listed by cause (status and Cache-Status detail, or the transport error), kind
of object and what was down meanwhile, with the reason where it is understood. Requests with
stale-if-error that ran wholly inside an origin outage are counted as served fresh, served
stale (Cache-Status detail=stale-if-error or stale-disconnected) or failed. Failures while the origin is down are
not held against invariant 3.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "localhost"
MIB = 1 << 20

# kind -> (body bytes, Cache-Control, chunked)
KINDS = {
    "s": (2 << 10, "public, max-age=2, stale-if-error=600", False),
    "c": (64 << 10, "public, max-age=3, stale-if-error=600", True),
    "b": (256 << 10, "public, max-age=5, stale-if-error=600", False),
    "l": (8 << 10, "public, max-age=3600", False),
    "n": (1 << 10, "no-store", False),
    "k": (16 << 10, "public, max-age=3600", False),  # the key spray's objects
}
STALE_KINDS = {"s", "c", "b"}


# ---------------------------------------------------------------------------------------------
# Objects and their proof


def make_body(path, version, size):
    head = f"{path} v={version}\n".encode()
    seed = hashlib.sha256(f"{path}:{version}".encode()).digest()
    filler = (seed * (size // len(seed) + 1))[: max(0, size - len(head))]
    return head + filler


def check_body(path, headers, body):
    """The breach of invariant 1 in a 200 response, or None."""
    sha, version = headers.get("x-sha256"), headers.get("x-version")
    if sha is None or version is None:
        return "200 without X-Sha256 / X-Version"
    length = headers.get("content-length")
    if length is not None and int(length) != len(body):
        return f"Content-Length {length} but {len(body)} bytes"
    if hashlib.sha256(body).hexdigest() != sha:
        return f"body does not hash to X-Sha256 (X-Version {version}, {len(body)} bytes)"
    first = body.split(b"\n", 1)[0].decode(errors="replace")
    got_path, _, got_version = first.rpartition(" v=")
    if got_path != path:
        return f"body is of {got_path!r}"
    if got_version != version:
        return f"body is version {got_version}, X-Version {version}"
    return None


# ---------------------------------------------------------------------------------------------
# The origin (run as a child process: `chaos.py --serve-origin PORT EPOCH PERIOD`)


def serve_origin(port, epoch, period):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, *_):
            pass

        def do_GET(self):
            path = self.path
            if path == "/health":
                return self.reply(200, {"Cache-Control": "no-store"}, b"ok\n")
            kind = path.split("/")[1] if path.count("/") >= 2 else ""
            if kind not in KINDS:
                return self.reply(404, {"Cache-Control": "no-store"}, b"no such object\n")
            size, cache_control, chunked = KINDS[kind]
            version = int((time.time() - epoch) // period)
            body = make_body(path, version, size)
            headers = {
                "Cache-Control": cache_control,
                "ETag": f'"{version}"',
                "X-Version": str(version),
                "X-Sha256": hashlib.sha256(body).hexdigest(),
                "Content-Type": "application/octet-stream",
            }
            if kind != "n" and self.headers.get("If-None-Match") == headers["ETag"]:
                return self.reply(304, headers, b"")
            self.reply(200, headers, body, chunked)

        def reply(self, status, headers, body, chunked=False):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                step = 16 << 10
                for i in range(0, len(body), step):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step]))
                self.wfile.write(b"0\r\n\r\n")
            else:
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    Server(("127.0.0.1", port), Handler).serve_forever()


# ---------------------------------------------------------------------------------------------
# Processes


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def parse_size(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def http_ok(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def wait_for(what, check, within=20.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {within} s")


class Proc:
    """One child process, restartable; its pid is the only handle used to signal it."""

    def __init__(self, name, cmd, log):
        self.name, self.cmd, self.log, self.proc = name, cmd, log, None

    def start(self):
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)

    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Timeline:
    """When each component was unavailable: component -> [[start, end or None], ...]."""

    def __init__(self, names):
        self.lock = threading.Lock()
        self.down = {name: [] for name in names}
        self.events = []

    def mark_down(self, name, how):
        with self.lock:
            self.down[name].append([time.monotonic(), None])
            self.events.append((time.monotonic(), name, how))

    def mark_up(self, name):
        with self.lock:
            self.down[name][-1][1] = time.monotonic()
            self.events.append((time.monotonic(), name, "up"))

    def was_down(self, name, t0, t1):
        with self.lock:
            return any(s <= t1 and (e is None or e >= t0) for s, e in self.down[name])

    def since_up(self, name, t):
        """Seconds between the end of the last outage of `name` before t and t."""
        with self.lock:
            ends = [e for s, e in self.down[name] if e is not None and e <= t]
        return t - max(ends) if ends else None


NODE_CONF = """[node]
name = "{name}"
[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "warn"
[cache]
memory = "{memory}"
max_object = "1MiB"
{cluster}
[[site]]
name = "chaos"
hosts = ["localhost", "127.0.0.1"]
origin = ["http://127.0.0.1:{origin}"]
"""

CLUSTER_CONF = """[cluster]
advertise = "127.0.0.1:{port}"
peers = [{peers}]
secret = "chaos-soak-cluster-secret-0123"
replicate = "hot"
"""


class Cluster:
    def __init__(self, args, work, nodes):
        self.args, self.work = args, work
        ports = free_ports(2 * nodes + 1)
        self.origin_port, self.ports, self.admins = ports[0], ports[1:nodes + 1], ports[nodes + 1:]
        self.names = [f"chaos-{i + 1}" for i in range(nodes)]
        self.timeline = Timeline(self.names + ["origin"])
        epoch = time.time()
        self.origin = Proc("origin", [sys.executable, os.path.abspath(__file__), "--serve-origin",
                                      str(self.origin_port), str(epoch),
                                      str(args.version_period)],
                           os.path.join(work, "origin.log"))
        peers = ", ".join(f'"127.0.0.1:{p}"' for p in self.ports)
        self.nodes = []
        for i, name in enumerate(self.names):
            cluster = CLUSTER_CONF.format(port=self.ports[i], peers=peers) if nodes > 1 else ""
            conf = os.path.join(work, f"{name}.toml")
            with open(conf, "w") as f:
                f.write(NODE_CONF.format(name=name, port=self.ports[i], admin=self.admins[i],
                                         memory=args.memory, cluster=cluster,
                                         origin=self.origin_port))
            self.nodes.append(Proc(name, [args.binary, "--config", conf],
                                   os.path.join(work, f"{name}.log")))

    def start_origin(self):
        self.origin.start()
        wait_for("origin", lambda: http_ok(f"http://127.0.0.1:{self.origin_port}/health"))

    def start_node(self, i):
        self.nodes[i].start()
        wait_for(self.names[i], lambda: http_ok(f"http://127.0.0.1:{self.admins[i]}/readyz"))

    def start(self):
        self.start_origin()
        for i in range(len(self.nodes)):
            self.start_node(i)
        if len(self.nodes) > 1:  # every node sees every other one live
            def all_live():
                for admin in self.admins:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/cluster",
                                                    timeout=1) as r:
                            text = r.read().decode()
                    except OSError:
                        return False
                    if text.count('"alive":true') + text.count('"alive": true') < len(self.nodes):
                        return False
                return True
            wait_for("cluster membership", all_live)

    def stop(self):
        for p in reversed(self.nodes + [self.origin]):
            p.stop()


# ---------------------------------------------------------------------------------------------
# Load


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.ok = Counter()             # how the 200s were served: hit, miss, stale, ...
        self.attempt_failures = Counter()   # (cause, context) of attempts that moved on
        self.final_failures = Counter()     # (cause, kind, context) of requests that failed
        self.examples = {}                  # (cause, kind, context) -> a few Cache-Status
        self.breaches = []                  # invariant 1 and 2 breaches, described
        self.unexcused = []                 # invariant 3 breaches: (t, path, cause, context)
        self.unexcused_by = Counter()       # (cause, kind, context) of those
        self.outage = Counter()             # stale-allowed requests inside an origin outage
        self.latencies = []
        self.reconnects = 0
        self.started = None


def classify_served(cache_status):
    """hit, stale, miss, peer, revalidated or pass, from this node's Cache-Status members."""
    if "detail=stale-if-error" in cache_status:
        return "stale-if-error"
    if "detail=stale-while-revalidate" in cache_status:
        return "stale-while-revalidate"
    if "detail=stale-disconnected" in cache_status:
        return "stale-disconnected"
    first = cache_status.split(",")[0]
    if "; hit" in first:
        return "hit" if "," not in cache_status else "hit via owner"
    if "fwd-status=304" in cache_status:
        return "revalidated"
    if "detail=not-owner" in cache_status:
        return "via owner"
    if "fwd=" in first:
        return "miss"
    return "other"


def error_cause(status, cache_status):
    details = [part.strip()[len("detail="):] for member in cache_status.split(",")
               for part in member.split(";") if part.strip().startswith("detail=")]
    return f"{status} {details[0] if details else '(no detail)'}"


class Client(threading.Thread):
    def __init__(self, idx, cluster, stats, stop_at, args, paths):
        super().__init__(daemon=True)
        self.cluster, self.stats, self.stop_at, self.args = cluster, stats, stop_at, args
        self.rng = random.Random(args.seed * 1000 + idx)
        self.paths = paths
        self.conns = [None] * len(cluster.ports)

    def conn(self, i):
        if self.conns[i] is None:
            self.conns[i] = http.client.HTTPConnection("127.0.0.1", self.cluster.ports[i],
                                                       timeout=self.args.client_timeout)
        return self.conns[i]

    def drop(self, i):
        if self.conns[i] is not None:
            self.conns[i].close()
            self.conns[i] = None

    def attempt(self, i, path):
        """(status, headers, body) or raises; one reopen of a stale keep-alive connection."""
        for reopen in (False, True):
            fresh = self.conns[i] is None
            c = self.conn(i)
            try:
                c.request("GET", path, headers={"Host": HOST})
                r = c.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.drop(i)
                if fresh or reopen:
                    raise
                with self.stats.lock:
                    self.stats.reconnects += 1
                continue
            except Exception:
                self.drop(i)
                raise
            try:
                body = r.read()
            except Exception as e:
                self.drop(i)
                raise Truncated(r.status, e) from e
            headers = {k.lower(): v for k, v in r.getheaders()}
            if r.will_close:
                self.drop(i)
            return r.status, headers, body

    def try_attempt(self, i, path):
        """(None, (status, headers, body)), or (the cause of a transport failure, None)."""
        try:
            return None, self.attempt(i, path)
        except Truncated as e:
            return f"{e.status} cut mid-body", None
        except ConnectionRefusedError:
            return "connection refused", None
        except (socket.timeout, TimeoutError):
            return "client timeout", None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            return "connection reset", None
        except (OSError, http.client.HTTPException) as e:
            return f"transport: {type(e).__name__}", None

    def run(self):
        tl, names = self.cluster.timeline, self.cluster.names
        while time.monotonic() < self.stop_at:
            path = self.rng.choice(self.paths)
            kind = path.split("/")[1]
            first = self.rng.randrange(len(names))
            order = [(first + k) % len(names) for k in range(len(names))]
            t0 = time.monotonic()
            final = None  # (cause, node) of the failure the client is left with
            for i in order:
                a0 = time.monotonic()
                cause, response = self.try_attempt(i, path)
                if cause is None:
                    status, headers, body = response
                a1 = time.monotonic()
                if cause is not None:
                    ctx = self.context(i, a0, a1)
                    with self.stats.lock:
                        self.stats.attempt_failures[(cause, ctx)] += 1
                        if cause.endswith("cut mid-body") and ctx.startswith("all up"):
                            self.stats.breaches.append(
                                f"{a1 - self.stats.started:.1f}s {path} on {names[i]}: "
                                f"{cause} with every node and the origin up")
                    final = (cause, i)
                    continue
                final = None
                if status == 200:
                    breach = check_body(path, headers, body)
                    served = classify_served(headers.get("cache-status", ""))
                    with self.stats.lock:
                        if breach:
                            self.stats.breaches.append(
                                f"{a1 - self.stats.started:.1f}s {path} on {names[i]}: {breach} "
                                f"(Cache-Status: {headers.get('cache-status')})")
                        self.stats.ok[served] += 1
                else:
                    final = (error_cause(status, headers.get("cache-status", "")), i)
                    example = f"{names[i]}: {headers.get('cache-status', '')}"
                break
            t1 = time.monotonic()
            origin_down_all = tl.was_down("origin", t0, t0) and tl.was_down("origin", t1, t1) \
                and not self.origin_came_back(t0, t1)
            with self.stats.lock:
                self.stats.requests += 1
                self.stats.latencies.append(t1 - t0)
                if kind in STALE_KINDS and origin_down_all:
                    outcome = "failed" if final else (
                        "stale" if served.startswith("stale") else "fresh")
                    self.stats.outage[outcome] += 1
                if final:
                    cause, i = final
                    ctx = self.context(i, t0, t1)
                    key = (cause, kind, ctx)
                    self.stats.final_failures[key] += 1
                    seen = self.stats.examples.setdefault(key, [])
                    if len(seen) < 3 and not cause.startswith(("connection", "client", "200")):
                        seen.append(f"{path} {example}")
                    if not tl.was_down("origin", t0, t1):  # one node at most is ever down
                        self.stats.unexcused.append((t1 - self.stats.started, path, cause, ctx))
                        self.stats.unexcused_by[(cause, kind, ctx)] += 1
        for i in range(len(self.conns)):
            self.drop(i)

    def origin_came_back(self, t0, t1):
        with self.cluster.timeline.lock:
            return any(e is not None and t0 <= e <= t1
                       for _, e in self.cluster.timeline.down["origin"])

    def context(self, i, t0, t1):
        """What was failing while an attempt ran: the node asked, another node, the origin."""
        tl, names = self.cluster.timeline, self.cluster.names
        parts = []
        if tl.was_down("origin", t0, t1):
            parts.append("origin down")
        if tl.was_down(names[i], t0, t1):
            parts.append("this node down")
        if any(tl.was_down(n, t0, t1) for j, n in enumerate(names) if j != i):
            parts.append("a peer down")
        if not parts:
            back = tl.since_up("origin", t0)
            if back is not None and back < 60:
                bucket = next(b for b in (1, 5, 15, 60) if back < b)
                return f"all up, origin back < {bucket} s"
            return "all up"
        return ", ".join(parts)


class Truncated(Exception):
    def __init__(self, status, error):
        super().__init__(f"{status} cut: {error!r}")
        self.status = status


# ---------------------------------------------------------------------------------------------
# RSS and chaos


class RssSampler(threading.Thread):
    def __init__(self, procs, limit, every=0.5):
        super().__init__(daemon=True)
        self.procs, self.limit, self.every = procs, limit, every
        self.max = {p.name: 0 for p in procs}
        self.samples = 0
        self.over = []
        self.halt = threading.Event()

    def run(self):
        t_start = time.monotonic()
        while not self.halt.wait(self.every):
            self.sample(time.monotonic() - t_start)

    def sample(self, t):
        self.samples += 1
        for p in self.procs:
            pid = p.pid()
            rss = rss_bytes(pid) if pid and p.alive() else None
            if rss is None:
                continue
            self.max[p.name] = max(self.max[p.name], rss)
            if rss > self.limit:
                self.over.append((t, p.name, rss))


class Chaos(threading.Thread):
    def __init__(self, cluster, stop_at, seed):
        super().__init__(daemon=True)
        self.cluster, self.stop_at = cluster, stop_at
        self.rng = random.Random(seed)
        self.done = Counter()
        self.error = None

    def pause(self, seconds):
        time.sleep(max(0.0, min(seconds, self.stop_at - time.monotonic())))

    def run(self):
        try:
            self.loop()
        except Exception as e:  # reported by main
            self.error = e

    def loop(self):
        c, tl = self.cluster, self.cluster.timeline
        actions = ["kill", "stop", "origin"]
        n = len(c.nodes)
        k = 0
        self.pause(5)
        while time.monotonic() + 12 < self.stop_at:
            action, i = actions[k % 3], (k // 3 + k) % n
            k += 1
            if action == "kill":
                tl.mark_down(c.names[i], "SIGKILL")  # before the signal: no attempt sees it first
                c.nodes[i].kill()
                time.sleep(3)
                c.start_node(i)
                tl.mark_up(c.names[i])
            elif action == "stop":
                tl.mark_down(c.names[i], "SIGSTOP")
                c.nodes[i].signal(signal.SIGSTOP)
                time.sleep(6)
                c.nodes[i].signal(signal.SIGCONT)
                tl.mark_up(c.names[i])
            else:
                tl.mark_down("origin", "SIGKILL")
                c.origin.kill()
                time.sleep(10)
                c.start_origin()
                tl.mark_up("origin")
            self.done[action if action != "origin" else "origin outage"] += 1
            self.pause(self.rng.uniform(4, 8))


# ---------------------------------------------------------------------------------------------
# Report


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def summary(args, cluster, stats, rss, chaos, elapsed):
    lat = sorted(stats.latencies)
    out = [f"## Chaos soak: 3 nodes, cache.memory = {args.memory}, {args.clients} clients, "
           f"{elapsed:.0f} s", ""]
    out.append("chaos events: " + ", ".join(f"{v} x {k}" for k, v in sorted(chaos.done.items())))
    out.append(f"requests: {stats.requests} ({stats.requests / elapsed:.0f}/s), "
               f"200: {sum(stats.ok.values())} ("
               + ", ".join(f"{k} {v}" for k, v in stats.ok.most_common()) + ")")
    out.append(f"latency: p50 {percentile(lat, 50) * 1000:.1f} ms, p99 "
               f"{percentile(lat, 99) * 1000:.1f} ms, max {lat[-1] * 1000 if lat else 0:.0f} ms")
    out.append(f"stale keep-alive connections reopened: {stats.reconnects}")
    out += ["", "attempts that failed over to the next node (cause | while):"]
    out += [f"  {v:6d}  {cause} | {ctx}" for (cause, ctx), v in
            sorted(stats.attempt_failures.items(), key=lambda kv: -kv[1])] or ["  none"]
    out += ["", "requests that failed after failover (cause, object kind | while | why):"]
    for (cause, kind, ctx), v in sorted(stats.final_failures.items(), key=lambda kv: -kv[1]):
        out.append(f"  {v:6d}  {cause}, /{kind}/ | {ctx} | {known(cause, kind, ctx)}")
        if args.examples:
            out += [f"            e.g. {e}" for e in stats.examples.get((cause, kind, ctx), [])]
    if not stats.final_failures:
        out.append("  none")
    o = stats.outage
    out += ["", f"stale-if-error objects requested during origin outages: {sum(o.values())} "
            f"(served stale {o['stale']}, still fresh {o['fresh']}, failed {o['failed']})"]
    out += ["", f"RSS ({rss.samples} samples; limit 1.15 x {args.memory} + 64 MiB = "
            f"{rss.limit / MIB:.1f} MiB):"]
    out += [f"  {name}: max {v / MIB:.1f} MiB" for name, v in rss.max.items()]
    out += [""]
    verdicts = [  # (holds, claim, breaches, lines describing them)
        (not stats.breaches, "every 200 whole and true to its checksum and version",
         len(stats.breaches), stats.breaches),
        (not stats.unexcused, "no request failed while the origin and a node were up",
         len(stats.unexcused),
         [f"{v} x {c}, /{k}/ | {x} (at {span(stats, c, k, x)})"
          for (c, k, x), v in stats.unexcused_by.most_common()]),
        (not rss.over, "RSS within the limit at every sample", len(rss.over),
         [f"{t:.1f}s {n}: {r / MIB:.1f} MiB" for t, n, r in rss.over]),
    ]
    for ok, claim, count, detail in verdicts:
        out.append(f"{'PASS' if ok else 'FAIL'}: {claim}" + ("" if ok else f" ({count} breaches)"))
        out += [f"    {d}" for d in detail[:15]]
        if len(detail) > 15:
            out.append(f"    ... {len(detail) - 15} more")
    return "\n".join(out), all(v[0] for v in verdicts)


def known(cause, kind, ctx):
    """Why a failure of this class happens, where the cause is understood."""
    if cause.startswith("503 origin-down") and "origin back" in ctx:
        return ("the origin server is still out of rotation (passive-health backoff) after it "
                "came back")
    if cause == "client timeout" and "a peer down" in ctx:
        return "the key's owner is stopped; the hop waits for it"
    if "origin down" in ctx and kind == "n":
        return "no-store object: nothing to serve without the origin"
    if "origin down" in ctx and cause.split()[0] in ("502", "503"):
        return "not stored on the node that answered"
    return ""


def span(stats, cause, kind, ctx):
    """When the soak's failures of one class happened: "12.3-15.1 s, 40.2-41.0 s"."""
    times = sorted(t for t, p, c, x in stats.unexcused
                   if c == cause and x == ctx and p.split("/")[1] == kind)
    runs = [[times[0], times[0]]]
    for t in times[1:]:
        if t - runs[-1][1] > 2:
            runs.append([t, t])
        runs[-1][1] = t
    return ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in runs)


def paths_for_soak():
    counts = {"s": 300, "c": 60, "b": 120, "l": 1000, "n": 100}
    weights = {"s": 40, "c": 8, "b": 10, "l": 35, "n": 7}
    paths = []
    for kind, n in counts.items():
        objects = [f"/{kind}/{j}" for j in range(n)]
        # Repeat each kind's list so that its share of draws matches its weight.
        paths += objects * max(1, round(weights[kind] * 100 / n))
    return paths


def warm_up(cluster, paths):
    """Every cacheable object once, through the nodes in turn, before the clock starts: the
    soak measures a cluster in its steady state, not its cold start."""
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in cluster.ports]
    for n, path in enumerate(p for p in paths if not p.startswith("/n/")):
        c = conns[n % len(conns)]
        c.request("GET", path, headers={"Host": HOST})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"warm-up: {path} answered {r.status}")
    for c in conns:
        c.close()


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-origin":
        return serve_origin(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "outpost"))
    p.add_argument("--seconds", type=int, default=120)
    p.add_argument("--memory", default="64MiB", help="cache.memory of each node")
    p.add_argument("--clients", type=int, default=6, help="client threads")
    p.add_argument("--client-timeout", type=float, default=5.0)
    p.add_argument("--version-period", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep configs and logs")
    p.add_argument("--examples", action="store_true",
                   help="show Cache-Status of a few failed requests per cause")
    args = p.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.path.isfile(args.binary):
        sys.exit(f"error: {args.binary} not found (cargo build --release)")

    work = tempfile.mkdtemp(prefix="outpost-chaos-")
    cluster = Cluster(args, work, 3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = False
    try:
        cluster.start()
        stats = Stats()
        limit = 1.15 * parse_size(args.memory) + 64 * MIB
        rss = RssSampler(cluster.nodes, limit)
        paths = paths_for_soak()
        warm_up(cluster, sorted(set(paths)))
        t_start = time.monotonic()
        stats.started = t_start
        stop_at = t_start + args.seconds
        chaos = Chaos(cluster, stop_at, args.seed)
        clients = [Client(i, cluster, stats, stop_at, args, paths) for i in range(args.clients)]
        for t in [rss, chaos, *clients]:
            t.start()
        for t in clients:
            t.join()
        chaos.join()
        rss.halt.set()
        rss.join()
        if chaos.error:
            raise chaos.error
        elapsed = time.monotonic() - t_start
        text, ok = summary(args, cluster, stats, rss, chaos, elapsed)
        print(text)
        print("\nevents: " + "; ".join(f"{t - t_start:.1f}s {n} {h}"
                                        for t, n, h in cluster.timeline.events))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({
                    "requests": stats.requests, "ok": dict(stats.ok),
                    "attempt_failures": {f"{c} | {x}": v
                                         for (c, x), v in stats.attempt_failures.items()},
                    "final_failures": {f"{c}, /{k}/ | {x}": v
                                       for (c, k, x), v in stats.final_failures.items()},
                    "outage": dict(stats.outage), "rss_max": rss.max, "rss_limit": limit,
                    "breaches": stats.breaches, "rss_over": rss.over,
                    "unexcused": stats.unexcused, "seconds": elapsed,
                }, f, indent=2)
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
