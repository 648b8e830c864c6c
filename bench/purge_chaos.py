#!/usr/bin/env python3
"""Purge soak: purges through two regions and a shield while their nodes fail.

    python3 bench/purge_chaos.py [--binary target/release/outpost] [--seconds 120]
        [--clients 6] [--client-timeout 5] [--objects 200] [--purge-timeout 30] [--seed 1]
        [--log-level info] [--json FILE] [--keep]

On 127.0.0.1, on free ports: an origin (this script run with --serve-origin, a threaded
http.server), one shield node (a cluster of one) and two edge regions, eu and us, of three
nodes each, every edge site with `shield = [the shield]`. Every node has `replicas = 2`,
`probe_interval = "200ms"`, `cache.persist` in its own directory (a snapshot written on
SIGTERM and loaded at start), and `[cluster.regions]` naming the other region(s), so a purge
taken by any edge node reaches every node of both regions and the shield.

The origin's objects are /p/N (N < --objects), 4 KiB, `Cache-Control: public,
max-age=3600`, with chaos.py's proof (the body starts with "<path> v=<version>\\n", X-Version,
X-Sha256 and an ETag per version, a matching If-None-Match answered 304). An object's version
changes only when the soak asks: `POST /_bump/p/N` on the origin makes it one higher and
answers the new version. Before the clock starts every object is fetched once, and one is
bumped and purged to show that the purge URL (http://localhost/p/N, the clients' Host) names
the clients' cache key: the next request of it must not be a hit anywhere and must carry the
new version.

Then, until --seconds have passed:

  - client threads GET /p/N (N at random) with keep-alive from a random edge node of either
    region, moving on, like chaos.py's clients, to the other nodes of that region and then of
    the other region when an attempt is refused, reset, cut or times out;
  - a purger, every 0.5-1.5 s, picks an N, bumps it at the origin (version V), and sends
    POST /purge {"urls": ["http://localhost/p/N"]} to the admin API of a random edge node
    it believes up (the next one if that one is refused or does not answer), noting when it
    started, when the answer came and whether it said "complete";
  - a chaos thread, one event at a time with 4-8 s between them (the first 5 s in),
    SIGKILLs a node and restarts it 3 s later, SIGSTOPs one and SIGCONTs it 6 s later, or
    SIGTERMs one (it drains and writes its snapshot) and restarts it 3 s after it exited;
    the victims are all seven nodes, the shield among them, in a seeded random order. The
    origin is never touched.

Invariants; a breach of either makes the exit status 1:

  1. (chaos.py's 1) A 200 has X-Version and X-Sha256, its body hashes to X-Sha256, starts
     with the path asked for and the version of X-Version, and has the length of
     Content-Length.
  2. Once POST /purge has answered, no node serves the purged version: a 200 of /p/N whose
     request (the attempt that got it) started after a purge of N answered, the purge having
     bumped N to V, has X-Version >= V. Each breach is listed with the node, what happened
     to it before (the chaos events), the purge answer it followed and its Cache-Status.

The summary gives requests, 200s (how they were served, and by which node), failures by
cause (and what was down meanwhile), purges sent, answered complete or not, their latency
(answer - start: p50, p99, max), and how many 200s the purge invariant applied to.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing chaos.py
from chaos import (HOST, Chaos, Client, Proc, Timeline, check_body,  # noqa: E402
                   classify_served, error_cause, free_ports, http_ok, make_body, percentile,
                   wait_for)

SIZE = 4 << 10
CACHE_CONTROL = "public, max-age=3600"
SECRET = "chaos-cluster-secret-0123456789"
TOKEN = "secret"
REGIONS = ("eu", "us")
PER_REGION = 3


# ---------------------------------------------------------------------------------------------
# The origin (run as a child process: `purge_chaos.py --serve-origin PORT`)


def serve_origin(port):
    versions = defaultdict(lambda: 1)
    lock = threading.Lock()
    counts = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *_):
            pass

        def do_GET(self):
            path = self.path
            if path == "/health":
                return self.reply(200, {"Cache-Control": "no-store"}, b"ok\n")
            if path == "/_stats":
                with lock:
                    body = json.dumps(dict(counts)).encode()
                return self.reply(200, {"Cache-Control": "no-store"}, body)
            if not path.startswith("/p/"):
                return self.reply(404, {"Cache-Control": "no-store"}, b"no such object\n")
            with lock:
                version = versions[path]
            body = make_body(path, version, SIZE)
            headers = {
                "Cache-Control": CACHE_CONTROL,
                "ETag": f'"v{version}"',
                "X-Version": str(version),
                "X-Sha256": hashlib.sha256(body).hexdigest(),
                "Content-Type": "application/octet-stream",
            }
            if self.headers.get("If-None-Match") == headers["ETag"]:
                with lock:
                    counts["304"] += 1
                return self.reply(304, headers, b"")
            with lock:
                counts["200"] += 1
            self.reply(200, headers, body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if not self.path.startswith("/_bump/p/"):
                return self.reply(404, {"Cache-Control": "no-store"}, b"no such control\n")
            path = self.path[len("/_bump"):]
            with lock:
                versions[path] += 1
                version = versions[path]
                counts["bump"] += 1
            self.reply(200, {"Cache-Control": "no-store"}, str(version).encode())

        def reply(self, status, headers, body):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    Server(("127.0.0.1", port), Handler).serve_forever()


# ---------------------------------------------------------------------------------------------
# Topology


def quoted(ports):
    return "[" + ", ".join(f'"127.0.0.1:{p}"' for p in ports) + "]"


NODE_CONF = """[node]
name = "{name}"
region = "{region}"
[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
token = "{token}"
[log]
level = "{log_level}"
[cache]
memory = "{memory}"
persist = "{persist}"
[cluster]
advertise = "127.0.0.1:{port}"
peers = {peers}
secret = "{secret}"
probe_interval = "200ms"
replicas = 2
[cluster.regions]
{regions}
[[site]]
name = "purge-chaos"
hosts = ["localhost"]
origin = ["http://127.0.0.1:{origin}"]
{shield}
"""


class PurgeCluster:
    """Nodes 0-5: the edges (eu-1..3, us-1..3), node 6: the shield. `ports`, `names` and
    `timeline` are what chaos.py's Client reads: `ports` lists the edges only."""

    def __init__(self, args, work):
        self.args, self.work = args, work
        edges = len(REGIONS) * PER_REGION
        ports = free_ports(2 * (edges + 1) + 1)
        self.origin_port = ports[0]
        self.http_ports, self.admins = ports[1:edges + 2], ports[edges + 2:]
        self.ports = self.http_ports[:edges]
        self.region_of = [r for r in REGIONS for _ in range(PER_REGION)] + ["shield"]
        self.names = [f"{r}-{k + 1}" for r in REGIONS for k in range(PER_REGION)] + ["shield"]
        self.edge_names = self.names[:edges]
        self.shield = edges
        self.timeline = Timeline(self.names + ["origin"])
        self.timeline_t0 = time.monotonic()  # the soak's start, once known
        self.origin = Proc("origin", [sys.executable, os.path.abspath(__file__),
                                      "--serve-origin", str(self.origin_port)],
                           os.path.join(work, "origin.log"))
        members = {r: self.http_ports[k * PER_REGION:(k + 1) * PER_REGION]
                   for k, r in enumerate(REGIONS)}
        shield_port = self.http_ports[self.shield]
        self.nodes, self.confs = [], []
        for i, name in enumerate(self.names):
            region = self.region_of[i]
            if region == "shield":
                peers = quoted([shield_port])
                regions = "\n".join(f"{r} = {quoted(members[r])}" for r in REGIONS)
                shield = ""
            else:
                peers = quoted(members[region])
                regions = "\n".join(f"{r} = {quoted(members[r])}" for r in REGIONS
                                    if r != region)
                shield = f'shield = ["http://127.0.0.1:{shield_port}"]'
            persist = os.path.join(work, "persist", name)
            os.makedirs(persist)
            conf = os.path.join(work, f"{name}.toml")
            with open(conf, "w") as f:
                f.write(NODE_CONF.format(
                    name=name, region=region, port=self.http_ports[i], admin=self.admins[i],
                    token=TOKEN, log_level=args.log_level, memory=args.memory,
                    persist=persist, peers=peers, secret=SECRET, regions=regions,
                    origin=self.origin_port, shield=shield))
            check = subprocess.run([args.binary, "check", "--config", conf],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                raise RuntimeError(f"{conf}: outpost check failed:\n{check.stdout}"
                                   f"{check.stderr}")
            self.confs.append(conf)
            self.nodes.append(Proc(name, [args.binary, "run", "--config", conf],
                                   os.path.join(work, f"{name}.log")))

    def origin_url(self, path):
        return f"http://127.0.0.1:{self.origin_port}{path}"

    def start_origin(self):
        self.origin.start()
        wait_for("origin", lambda: http_ok(self.origin_url("/health")))

    def start_node(self, i):
        self.nodes[i].start()
        wait_for(self.names[i], lambda: http_ok(f"http://127.0.0.1:{self.admins[i]}/readyz"),
                 within=60)

    def start(self):
        self.start_origin()
        for i in range(len(self.nodes)):
            self.nodes[i].start()
        for i in range(len(self.nodes)):
            wait_for(self.names[i],
                     lambda: http_ok(f"http://127.0.0.1:{self.admins[i]}/readyz"), within=60)

        def members_live():  # every edge sees its region's three members alive
            for admin in self.admins[:self.shield]:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/cluster",
                                                timeout=1) as r:
                        members = json.load(r).get("members", [])
                except (OSError, ValueError):
                    return False
                if sum(1 for m in members if m.get("alive")) < PER_REGION:
                    return False
            return True
        wait_for("cluster membership", members_live, within=30)

    def down_now(self, i):
        now = time.monotonic()
        return self.timeline.was_down(self.names[i], now, now)

    def stop(self):
        for p in reversed(self.nodes + [self.origin]):
            p.stop()


# ---------------------------------------------------------------------------------------------
# Load


class PurgeStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.reconnects = 0                 # chaos.Client.attempt counts these
        self.served = Counter()             # how the 200s were served: hit, miss, ...
        self.by_node = Counter()            # which node answered the 200s
        self.attempt_failures = Counter()   # (cause, while) of attempts that moved on
        self.final_failures = Counter()     # (cause, while) of requests that failed
        self.body_breaches = []             # invariant 1
        self.records = []                   # every 200: (a0, a1, node, n, version, status)
        self.purges = defaultdict(list)     # n -> [Purge answered], in order
        self.purge_log = []                 # every purge sent, as dicts
        self.started = None


class PurgeClient(Client):
    """chaos.py's client (keep-alive, one reopen of a stale connection, failover) asking
    /p/N of the edge nodes, the asked node's region first."""

    def __init__(self, idx, cluster, stats, stop_at, args):
        super().__init__(idx, cluster, stats, stop_at, args, paths=None)

    def order(self):
        c = self.cluster
        first = self.rng.randrange(len(c.ports))
        region = first // PER_REGION
        same = [region * PER_REGION + (first + k) % PER_REGION for k in range(PER_REGION)]
        other = [i for i in range(len(c.ports)) if i // PER_REGION != region]
        self.rng.shuffle(other)
        return same + other

    def run(self):
        c, s = self.cluster, self.stats
        while time.monotonic() < self.stop_at:
            n = self.rng.randrange(self.args.objects)
            path = f"/p/{n}"
            t0 = time.monotonic()
            final = None
            for i in self.order():
                a0 = time.monotonic()
                cause, response = self.try_attempt(i, path)
                a1 = time.monotonic()
                if cause is not None:
                    with s.lock:
                        s.attempt_failures[(cause, context(c, i, a0, a1))] += 1
                    final = (cause, i, a0, a1)
                    continue
                status, headers, body = response
                final = None
                cache_status = headers.get("cache-status", "")
                if status == 200:
                    breach = check_body(path, headers, body)
                    version = int(headers.get("x-version") or -1)
                    with s.lock:
                        if breach:
                            s.body_breaches.append(
                                f"{a1 - s.started:.1f}s {path} on {c.names[i]}: {breach} "
                                f"(Cache-Status: {cache_status})")
                        s.served[classify_served(cache_status)] += 1
                        s.by_node[c.names[i]] += 1
                        s.records.append((a0, a1, i, n, version, cache_status))
                else:
                    final = (error_cause(status, cache_status), i, a0, a1)
                break
            with s.lock:
                s.requests += 1
                if final:
                    cause, i, a0, a1 = final
                    s.final_failures[(cause, context(c, i, t0, a1))] += 1
        for i in range(len(self.conns)):
            self.drop(i)


def context(cluster, i, t0, t1):
    """What was down while an attempt ran: the node asked, a peer, the shield."""
    tl, names = cluster.timeline, cluster.names
    parts = []
    if tl.was_down(names[i], t0, t1):
        parts.append("this node down")
    if any(tl.was_down(names[j], t0, t1) for j in range(len(names))
           if j != i and j != cluster.shield):
        parts.append("another edge down")
    if tl.was_down(names[cluster.shield], t0, t1):
        parts.append("shield down")
    return ", ".join(parts) or "all up"


# ---------------------------------------------------------------------------------------------
# Purges


def bump(cluster, n):
    request = urllib.request.Request(cluster.origin_url(f"/_bump/p/{n}"), data=b"",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        return int(r.read())


def post_purge(cluster, i, n, timeout):
    """The purge answer (JSON) of edge node i, or raises."""
    body = json.dumps({"urls": [f"http://{HOST}/p/{n}"]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.admins[i]}/purge", data=body, method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return json.load(r)


def purge_once(cluster, stats, rng, n, timeout):
    """Bump N, purge it through an edge node believed up (the next on failure); log it and,
    once answered, record it as a constraint. The record, or None if no node answered."""
    version = bump(cluster, n)
    t_start = time.monotonic()
    up = [i for i in range(len(cluster.ports)) if not cluster.down_now(i)]
    down = [i for i in range(len(cluster.ports)) if i not in up]
    rng.shuffle(up)
    record = {"n": n, "version": version, "t_start": t_start, "tries": []}
    for i in up + down:
        try:
            answer = post_purge(cluster, i, n, timeout)
        except Exception as e:  # refused, reset, timed out, an HTTP error
            record["tries"].append((cluster.names[i], f"{type(e).__name__}: {e}"))
            continue
        record.update(
            t_answered=time.monotonic(), node=cluster.names[i],
            complete=bool(answer.get("complete")),
            unconfirmed=[u.get("node") for u in answer.get("unconfirmed", [])],
            timed_out=[u.get("node") for u in answer.get("unconfirmed", [])
                       if u.get("timed_out")],
            purged=answer.get("purged"))
        break
    with stats.lock:
        stats.purge_log.append(record)
        if "t_answered" in record:
            stats.purges[n].append(record)
    return record if "t_answered" in record else None


class Purger(threading.Thread):
    def __init__(self, cluster, stats, stop_at, args):
        super().__init__(daemon=True)
        self.cluster, self.stats, self.stop_at, self.args = cluster, stats, stop_at, args
        self.rng = random.Random(args.seed * 1000 + 999)
        self.error = None

    def run(self):
        try:
            while True:
                time.sleep(self.rng.uniform(0.5, 1.5))
                if time.monotonic() >= self.stop_at:
                    return
                purge_once(self.cluster, self.stats, self.rng,
                           self.rng.randrange(self.args.objects), self.args.purge_timeout)
        except Exception as e:  # reported by main
            self.error = e


class PurgeChaos(Chaos):
    """chaos.py's chaos thread with other events: SIGKILL + restart after 3 s, SIGSTOP for
    6 s, SIGTERM (drain and snapshot) + restart 3 s after the exit; every node a victim in
    turn (seeded order), the shield included; never the origin."""

    def loop(self):
        c, tl = self.cluster, self.cluster.timeline
        actions = ["kill", "stop", "term"]
        victims = []
        k = 0
        self.pause(5)
        while time.monotonic() + 12 < self.stop_at:
            if not victims:
                victims = list(range(len(c.nodes)))
                self.rng.shuffle(victims)
            i, action = victims.pop(), actions[k % 3]
            k += 1
            name, proc = c.names[i], c.nodes[i]
            if action == "kill":
                tl.mark_down(name, "SIGKILL")
                proc.kill()
                time.sleep(3)
                c.start_node(i)
                tl.mark_up(name)
            elif action == "stop":
                tl.mark_down(name, "SIGSTOP")
                proc.signal(signal.SIGSTOP)
                time.sleep(6)
                proc.signal(signal.SIGCONT)
                tl.mark_up(name)
            else:
                tl.mark_down(name, "SIGTERM")
                t0 = time.monotonic()
                proc.signal(signal.SIGTERM)
                try:
                    proc.proc.wait(30)
                    how = f"exited {proc.proc.returncode} after {time.monotonic() - t0:.1f} s"
                except subprocess.TimeoutExpired:
                    proc.kill()
                    how = "no exit within 30 s: SIGKILLed"
                with tl.lock:
                    tl.events.append((time.monotonic(), name, how))
                time.sleep(3)
                c.start_node(i)
                tl.mark_up(name)
            self.done[action] += 1
            self.pause(self.rng.uniform(4, 8))


# ---------------------------------------------------------------------------------------------
# Start, check, report


def get(cluster, i, path):
    c = http.client.HTTPConnection("127.0.0.1", cluster.http_ports[i], timeout=10)
    try:
        c.request("GET", path, headers={"Host": HOST})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def warm_up(cluster, objects):
    for n in range(objects):
        status, _, _ = get(cluster, n % len(cluster.ports), f"/p/{n}")
        if status != 200:
            raise RuntimeError(f"warm-up: /p/{n} answered {status}")


def key_check(cluster, stats, rng):
    """Purge /p/0 as the soak does; the next request must be no hit, anywhere, and carry
    the new version; then every edge serves the new version. Lines describing it."""
    i = 0
    for _ in range(2):
        _, headers, _ = get(cluster, i, "/p/0")
    before = headers.get("cache-status", "")
    record = purge_once(cluster, stats, rng, 0, 60)
    if record is None:
        raise RuntimeError("key check: no node answered the purge of /p/0")
    _, headers, _ = get(cluster, i, "/p/0")
    after = headers.get("cache-status", "")
    if "; hit" in after or headers.get("x-version") != str(record["version"]):
        raise RuntimeError(f"key check: after the purge of http://{HOST}/p/0 {cluster.names[i]} "
                           f"answered X-Version {headers.get('x-version')} (purged to "
                           f"{record['version']}), Cache-Status: {after}")
    for j in range(len(cluster.ports)):
        _, headers, _ = get(cluster, j, "/p/0")
        if headers.get("x-version") != str(record["version"]):
            raise RuntimeError(f"key check: {cluster.names[j]} serves /p/0 version "
                               f"{headers.get('x-version')} after its purge")
    return [f"key check: purge of http://{HOST}/p/0 answered in "
            f"{(record['t_answered'] - record['t_start']) * 1000:.0f} ms "
            f"(complete {record['complete']}); {cluster.names[i]} before: {before}; "
            f"after: {after} (X-Version {record['version']})"]


def find_breaches(cluster, stats):
    """Invariant 2: (record, purge) for every 200 older than a purge answered before it."""
    breaches, checked, close = [], 0, 0
    for a0, a1, i, n, version, cache_status in stats.records:
        before = [p for p in stats.purges.get(n, []) if p["t_answered"] < a0]
        if not before:
            continue
        purge = max(before, key=lambda p: p["version"])
        checked += 1
        if a0 - purge["t_answered"] < 1:
            close += 1
        if version < purge["version"]:
            breaches.append(((a0, a1, i, n, version, cache_status), purge))
    return breaches, checked, close


def history(cluster, name, t):
    """The node's chaos events before t, the last three."""
    with cluster.timeline.lock:
        events = [(te, how) for te, who, how in cluster.timeline.events if who == name and te < t]
    return ", ".join(f"{how} at {te - cluster.timeline_t0:.1f}s" for te, how in events[-3:]) \
        or "no event"


def describe(cluster, stats, breach):
    (a0, a1, i, n, version, cache_status), purge = breach
    t0 = stats.started
    return (f"{a0 - t0:.2f}s {cluster.names[i]} /p/{n}: served v{version}, required "
            f"v{purge['version']} (purge via {purge['node']} started {purge['t_start'] - t0:.2f}s, "
            f"answered {purge['t_answered'] - t0:.2f}s, complete {purge['complete']}, "
            f"unconfirmed {purge['unconfirmed']}); request {a0 - t0:.2f}-{a1 - t0:.2f}s; "
            f"Cache-Status: {cache_status}; {cluster.names[i]} before: "
            f"{history(cluster, cluster.names[i], a0)}; shield before: "
            f"{history(cluster, 'shield', a0)}")


def origin_counts(cluster):
    try:
        with urllib.request.urlopen(cluster.origin_url("/_stats"), timeout=5) as r:
            return json.load(r)
    except (OSError, ValueError):
        return {}


def summary(args, cluster, stats, chaos, elapsed, breaches, checked, close, key_lines):
    s = stats
    oks = sum(s.served.values())
    sent = [p for p in s.purge_log if p["t_start"] >= s.started]
    answered = [p for p in sent if "t_answered" in p]
    complete = sum(1 for p in answered if p["complete"])
    lat = sorted(p["t_answered"] - p["t_start"] for p in answered)
    out = [f"## Purge soak: 2 regions x {PER_REGION} nodes + 1 shield, replicas = 2, persist, "
           f"{args.clients} clients, {args.objects} objects, {elapsed:.0f} s", ""]
    out += key_lines + [""]
    out.append("chaos events: " + ", ".join(f"{v} x {k}" for k, v in sorted(chaos.done.items())))
    out.append(f"requests: {s.requests} ({s.requests / elapsed:.0f}/s), 200: {oks} ("
               + ", ".join(f"{k} {v}" for k, v in s.served.most_common()) + ")")
    out.append("200s by node: " + ", ".join(f"{name} {s.by_node[name]}"
                                            for name in cluster.edge_names))
    out.append(f"stale keep-alive connections reopened: {s.reconnects}")
    counts = origin_counts(cluster)
    out.append(f"origin: {counts.get('200', 0)} x 200, {counts.get('304', 0)} x 304, "
               f"{counts.get('bump', 0)} bumps (warm-up and key check included)")
    out += ["", "attempts that failed over to the next node (cause | while):"]
    out += [f"  {v:6d}  {cause} | {ctx}" for (cause, ctx), v in
            sorted(s.attempt_failures.items(), key=lambda kv: -kv[1])] or ["  none"]
    out += ["", "requests that failed after failover (cause | while):"]
    out += [f"  {v:6d}  {cause} | {ctx}" for (cause, ctx), v in
            sorted(s.final_failures.items(), key=lambda kv: -kv[1])] or ["  none"]
    out += ["", f"purges sent: {len(sent)}, answered: {len(answered)} (complete {complete}, "
            f"incomplete {len(answered) - complete}), unanswered: {len(sent) - len(answered)}",
            f"purge latency (answer - start): p50 {percentile(lat, 50) * 1000:.0f} ms, p99 "
            f"{percentile(lat, 99) * 1000:.0f} ms, max {lat[-1] * 1000 if lat else 0:.0f} ms"]
    for p in answered:
        if not p["complete"] or p["tries"]:
            out.append(f"  {p['t_start'] - s.started:.1f}s /p/{p['n']} v{p['version']} via "
                       f"{p['node']}: {(p['t_answered'] - p['t_start']) * 1000:.0f} ms, "
                       f"complete {p['complete']}, unconfirmed {p['unconfirmed']}"
                       + (f", timed out {p['timed_out']}" if p["timed_out"] else "")
                       + (f", after {p['tries']}" if p["tries"] else ""))
    for p in sent:
        if "t_answered" not in p:
            out.append(f"  {p['t_start'] - s.started:.1f}s /p/{p['n']} v{p['version']}: "
                       f"unanswered {p['tries']}")
    out.append(f"200s the purge invariant applied to (started after an answered purge of their "
               f"object): {checked} (of them within 1 s of the answer: {close})")
    out += [""]
    verdicts = [
        (not s.body_breaches, "every 200 whole and true to its checksum and version",
         s.body_breaches),
        (not breaches, "no 200 older than a purge answered before its request started",
         [describe(cluster, s, b) for b in breaches]),
    ]
    for ok, claim, detail in verdicts:
        out.append(f"{'PASS' if ok else 'FAIL'}: {claim}"
                   + ("" if ok else f" ({len(detail)} breaches)"))
        out += [f"    {d}" for d in detail[:args.show]]
        if len(detail) > args.show:
            out.append(f"    ... {len(detail) - args.show} more")
    return "\n".join(out), all(v[0] for v in verdicts)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-origin":
        return serve_origin(int(sys.argv[2]))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "outpost"))
    p.add_argument("--seconds", type=int, default=120)
    p.add_argument("--memory", default="64MiB", help="cache.memory of each node")
    p.add_argument("--clients", type=int, default=6, help="client threads")
    p.add_argument("--client-timeout", type=float, default=5.0)
    p.add_argument("--purge-timeout", type=float, default=30.0,
                   help="how long the purger waits for an answer before it asks another node")
    p.add_argument("--objects", type=int, default=200, help="objects /p/0 .. /p/N-1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-level", default="info", help="the nodes' [log] level")
    p.add_argument("--show", type=int, default=30, help="breaches listed at most")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep configs, snapshots and logs")
    args = p.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.path.isfile(args.binary):
        sys.exit(f"error: {args.binary} not found (cargo build --release)")

    work = tempfile.mkdtemp(prefix="outpost-purge-chaos-")
    cluster = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = False
    try:
        cluster = PurgeCluster(args, work)
        cluster.start()
        stats = PurgeStats()
        rng = random.Random(args.seed)
        warm_up(cluster, args.objects)
        key_lines = key_check(cluster, stats, rng)
        t_start = time.monotonic()
        stats.started = cluster.timeline_t0 = t_start
        stop_at = t_start + args.seconds
        chaos = PurgeChaos(cluster, stop_at, args.seed)
        purger = Purger(cluster, stats, stop_at, args)
        clients = [PurgeClient(i, cluster, stats, stop_at, args) for i in range(args.clients)]
        for t in [chaos, purger, *clients]:
            t.start()
        for t in [*clients, purger, chaos]:
            t.join()
        for t in (chaos, purger):
            if t.error:
                raise t.error
        elapsed = time.monotonic() - t_start
        breaches, checked, close = find_breaches(cluster, stats)
        text, ok = summary(args, cluster, stats, chaos, elapsed, breaches, checked, close,
                           key_lines)
        print(text)
        print("\nevents: " + "; ".join(f"{t - t_start:.1f}s {n} {h}"
                                        for t, n, h in cluster.timeline.events))
        if args.json:
            t0 = t_start
            with open(args.json, "w") as f:
                json.dump({
                    "seconds": elapsed, "requests": stats.requests,
                    "ok": dict(stats.served), "by_node": dict(stats.by_node),
                    "attempt_failures": {f"{c} | {x}": v
                                         for (c, x), v in stats.attempt_failures.items()},
                    "final_failures": {f"{c} | {x}": v
                                       for (c, x), v in stats.final_failures.items()},
                    "purges": [{**p, "t_start": p["t_start"] - t0,
                                **({"t_answered": p["t_answered"] - t0}
                                   if "t_answered" in p else {})}
                               for p in stats.purge_log],
                    "checked": checked, "checked_within_1s": close,
                    "body_breaches": stats.body_breaches,
                    "breaches": [describe(cluster, stats, b) for b in breaches],
                    "events": [(t - t0, n, h) for t, n, h in cluster.timeline.events],
                }, f, indent=2)
    finally:
        if cluster is not None:
            cluster.stop()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"(configs, snapshots and logs in {work})", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
