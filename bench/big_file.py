#!/usr/bin/env python3
"""A large object in chunks over a cluster, against the same bytes streamed uncached and
against nginx serving the file itself: time, first byte, origin requests and memory.

    python3 bench/big_file.py [--binary target/release/outpost] [--size 1GiB] [--nodes 10]
        [--chunk-size 4MiB] [--replicas 1] [--trials 3] [--memory SIZE] [--slow-seconds 10]
        [--no-purge] [--quiet-wait 300] [--keep] [--json FILE] [--perf DIR]
        [--perf-call-graph fp|dwarf] [--nginx /usr/sbin/nginx]

On 127.0.0.1, on free ports: an nginx origin (a child process with its own config, never the
system service; `sendfile on`) serving --size random bytes from a temporary directory as

  /f/<name>        Cache-Control: public, max-age=3600, nginx's ETag, ranges
  /nostore/<name>  the same file with Cache-Control: no-store

and --nodes Outpost nodes in one cluster in front of it (`cache.memory` --memory, by default
max(256MiB, 3 x size / nodes): two copies of the object fit over the nodes with slack;
`max_object` above the size, `chunk_size` --chunk-size, `replicas` --replicas,
`replicate = "none"`, `probe_interval = "200ms"`). The object is above `cache.chunk_above`
(a quarter of memory by default), so it is stored in chunks spread over the nodes. Before
each cold GET but the first, the previous trial's object is purged (admin API, every node):
the cluster holds at most two objects, the new one stored into recycled memory. With
--no-purge the third trial's object is stored into a full cache, whose admission policy may
turn some of its chunks away (a warm GET then reaches the origin).

Each trial, curl (to /dev/null, as fast as it reads) times:

  direct         nginx itself, /f/<name>
  uncached       node 0, /nostore/<name>?u=<i>: streamed through the node, nothing stored;
                 a key another node owns, so node 0 forwards the miss there and the bytes
                 cross two nodes, as nine cold chunks in ten do on ten nodes
  uncached (node 0 owns)  the same through a key node 0 owns: it fetches the file itself
  cold           node 0, /f/<name>?t=<trial>: a key never asked before, stored in chunks
  warm           the same URL again through node 0: every chunk in the cluster's memory
  warm (node 1)  the same URL through another node

One warm body is checked by sha256 against the file's, and every GET's origin requests are
counted from nginx's access log (a warm GET must make none). The table gives medians over
--trials, throughput, first byte, the ratio of the uncached (and the direct) time to the
mode's (> 1: faster), CPU busy (both cores, from /proc/stat), foreign CPU (busy, but not
in the nodes, nginx, curl, this script or interrupts: another load on the machine, plus a
few % of kernel threads such as ksoftirqd carrying this run's own traffic) and the goals:
cold >= 0.9x uncached with first byte <= uncached's + 5 ms, warm >= 1.0x uncached and
>= 0.8x direct; and the cold goals against the stream through node 0 alone, which cold
chunks cannot match while each is fetched by its owner (most are another node's). The
two uncached keys are found before the trials by asking node 0 for the first byte of
/nostore/<name>?u=0, 1, ... and reading which node fetched it (its Cache-Status). A second
table splits the CPU by process, in cores over each GET (medians): nginx, node 0, the other
nodes together, curl.

Each trial (and each perf recording) starts once other processes took under 5 % of the CPUs
for a second (waiting at most --quiet-wait s); a GET whose foreign CPU went above 10 % is
warned about.

Memory, node 0's VmRSS: sampled every 0.1 s during each warm GET (one fast client), then
every 0.5 s during one slow client (curl --limit-rate 2M, 5 s), then 50 of them together
(10 s), each against the RSS just before. The code's bounds: a response reads ahead at most
max(chunk_size, min(8 chunks, 16MiB)), all responses of a node together an eighth of
cache.memory (at least 16MiB). RSS never shrinks back to what the allocator keeps, so a
peak above the RSS before is a lower bound of what the phase held.

--perf DIR: after the trials, `perf record -a -g -F 999 -e cpu-clock` over one uncached GET,
one more cold and one warm GET (a new key, the last trial's purged first), into
DIR/uncached.data, cold.data and warm.data; it prints the GET's window for `perf report
--no-children --sort comm,dso,symbol --time START,END -i ...` (the recording starts 1 s
before the GET).
--perf-call-graph dwarf unwinds through Rust frames (no frame pointers), at more cost.

Exit status 1 if a body differs, a GET fails or a warm GET reached the origin.
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (processes, ports, waiting, sizes, RSS)

MIB = 1 << 20
NAME = "big.bin"
READ_AHEAD = 8               # src/proxy/chunked.rs: chunks read ahead per response
READ_AHEAD_BYTES = 16 << 20  # and bytes, per response (one chunk at least)
SLOW_RATE = "2M"
SLOW_CLIENTS = 50
TOKEN = "big-file-bench-token"
# Every node is asked for the same host: the cache key holds the Host header, port and all.
HOST = ["-H", "Host: localhost"]

NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
{user}
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$msec $request_uri $status $body_bytes_sent $request_time "$http_range"';
    access_log {work}/access.log bench;
    client_body_temp_path {work}/nginx-temp/body;
    proxy_temp_path {work}/nginx-temp/proxy;
    fastcgi_temp_path {work}/nginx-temp/fastcgi;
    uwsgi_temp_path {work}/nginx-temp/uwsgi;
    scgi_temp_path {work}/nginx-temp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /f/ {{
            add_header Cache-Control "public, max-age=3600" always;
        }}
        location /nostore/ {{
            alias {root}/f/;
            expires off;
            add_header Cache-Control "no-store" always;
        }}
        location = /health {{
            access_log off;
            return 200 "ok\\n";
        }}
    }}
}}
"""

NODE_CONF = """[node]
name = "node-{i}"
[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
token = "{token}"
[log]
level = "warn"
[cache]
memory = "{memory}"
max_object = "{max_object}"
chunk_size = "{chunk_size}"
[cluster]
advertise = "127.0.0.1:{port}"
peers = [{peers}]
secret = "big-file-bench-secret"
replicate = "none"
replicas = {replicas}
probe_interval = "200ms"
[[site]]
name = "bench"
hosts = ["127.0.0.1", "localhost"]
origin = ["http://127.0.0.1:{origin}"]
"""

MODES = ["direct", "uncached", "uncached (node 0 owns)", "cold", "warm", "warm (node 1)"]


def mib(n):
    return f"{n / MIB:.0f}MiB"


def make_file(path, size):
    """--size random bytes at path; their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MIB))
            h.update(block)
            f.write(block)
            left -= len(block)
    os.chmod(path, 0o644)
    return h.hexdigest()


def cpu_times():
    """(busy, total, irq) jiffies over all CPUs; irq: hard and soft interrupts, which the
    kernel (with IRQ time accounting) counts apart from any process."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total, fields[5] + fields[6]


def proc_ticks(pid):
    """utime + stime of a process (all its threads), clock ticks; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


class CpuWatch:
    """CPU use over a block, from /proc/stat: busy (both cores) and foreign, what was busy
    but not this benchmark's processes (nodes, nginx, its clients, this script) nor
    interrupts: another load on the machine. Ticks of /proc/stat and /proc/PID/stat are
    both USER_HZ."""

    def __init__(self, pids):
        self.pids = pids

    def ours(self):
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # curl, once waited for
        return sum(proc_ticks(p) for p in self.pids) + \
            (kids.ru_utime + kids.ru_stime) * os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self.b0, self.t0, self.i0 = cpu_times()
        self.o0 = self.ours()
        self.p0 = [proc_ticks(p) for p in self.pids]
        self.k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc):
        b1, t1, i1 = cpu_times()
        total = max(1, t1 - self.t0)
        # Each process's share of one core over the block (ticks and jiffies: USER_HZ,
        # summed over the CPUs, so total / cpus is the wall time), and the clients'.
        wall = total / max(1, os.cpu_count() or 1)
        self.each = [(proc_ticks(p) - t0) / wall for p, t0 in zip(self.pids, self.p0)]
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.clients = (k1.ru_utime + k1.ru_stime - self.k0.ru_utime - self.k0.ru_stime) * \
            os.sysconf("SC_CLK_TCK") / wall
        self.busy = (b1 - self.b0) / total
        # Interrupts count as ours: the loopback traffic is this run's.
        ours = self.ours() - self.o0 + (i1 - self.i0)
        self.foreign = max(0.0, (b1 - self.b0) - ours) / total


def wait_quiet(ours, within):
    """Wait (up to `within` s) until other processes than `ours` took under 5 % of the CPUs
    for a second: on a shared machine, each trial starts when nothing else runs (something
    may start meanwhile: see foreign CPU)."""
    end = time.monotonic() + within
    while True:
        with CpuWatch(ours) as cpu:
            time.sleep(1.0)
        if cpu.foreign < 0.05:
            return True
        if time.monotonic() > end:
            print(f"(the CPUs were still busy after {within:g} s; going on)", file=sys.stderr)
            return False


def curl(url, *extra):
    """(first byte s, total s, bytes, status, Cache-Status) of one GET to /dev/null."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w",
         "%{time_starttransfer} %{time_total} %{size_download} %{http_code}\n"
         "%header{cache-status}", *HOST, *extra, url],
        capture_output=True, text=True, timeout=1800).stdout
    head, _, cache_status = out.partition("\n")
    fields = head.split()
    if len(fields) != 4:
        raise SystemExit(f"GET {url}: curl printed {out!r}")
    return float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3]), cache_status


def fetched_by(cache_status):
    """The node that fetched a response from the origin: the first member of its Cache-Status
    (RFC 9211: the one nearest the origin)."""
    return cache_status.split(",")[0].split(";")[0].strip() or "-"


def uncached_keys(nodes, path, tries=200):
    """Two query strings for the no-store file through node 0: one whose key another node owns
    (node 0 forwards the miss there, so the bytes cross two nodes, as a cold chunk's mostly
    do), one whose key node 0 owns (it fetches the file itself); each found by asking for
    its first byte."""
    other = mine = None
    for i in range(tries):
        uri = f"{path}?u={i}"
        owner = fetched_by(curl(nodes.url(0, uri), "-r", "0-0")[4])
        if owner == "node-0":
            mine = mine or uri
        elif owner.startswith("node-"):
            other = other or uri
        if other and mine:
            return other, mine
    raise SystemExit(f"no key owned by node 0 and one by another among {tries} of {path}")


def stored_on(cache_status):
    """The node that answered from memory (the key's owner), from a Cache-Status."""
    for member in cache_status.split(","):
        parts = [p.strip() for p in member.split(";")]
        if "hit" in parts[1:]:
            return parts[0]
    return "-"


class Origin:
    def __init__(self, work, root, nginx):
        (self.port,) = chaos.free_ports(1)
        self.work, self.log = work, os.path.join(work, "access.log")
        os.makedirs(os.path.join(work, "nginx-temp"), exist_ok=True)
        conf = os.path.join(work, "nginx.conf")
        user = "user root root;" if os.geteuid() == 0 else ""  # the file's owner, no drop
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(user=user, work=work, port=self.port, root=root))
        self.proc = chaos.Proc("nginx", [nginx, "-p", work, "-e",
                                         os.path.join(work, "nginx-error.log"), "-c", conf],
                               os.path.join(work, "nginx.out"))

    def start(self):
        self.proc.start()
        chaos.wait_for("nginx", lambda: chaos.http_ok(f"http://127.0.0.1:{self.port}/health"))
        self.pids = [self.proc.pid(), *children_of(self.proc.pid())]  # master and worker

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, uri):
        """Requests for uri in the access log so far (logged as each one ends)."""
        try:
            with open(self.log) as f:
                return sum(1 for line in f if line.split(" ", 2)[1:2] == [uri])
        except OSError:
            return 0

    def stop(self):
        self.proc.stop()


class Nodes:
    def __init__(self, args, work, origin_port, memory):
        ports = chaos.free_ports(2 * args.nodes)
        self.ports, self.admins = ports[:args.nodes], ports[args.nodes:]
        peers = ", ".join(f'"127.0.0.1:{p}"' for p in self.ports)
        self.procs = []
        for i, (port, admin) in enumerate(zip(self.ports, self.admins)):
            conf = os.path.join(work, f"node-{i}.toml")
            with open(conf, "w") as f:
                f.write(NODE_CONF.format(i=i, port=port, admin=admin, memory=memory,
                                         max_object=mib(2 * args.size_bytes + 64 * MIB),
                                         chunk_size=args.chunk_size, replicas=args.replicas,
                                         token=TOKEN,
                                         peers=peers, origin=origin_port))
            self.procs.append(chaos.Proc(f"node-{i}", [args.binary, "--config", conf],
                                         os.path.join(work, f"node-{i}.log")))

    def start(self):
        for p in self.procs:
            p.start()
        for admin in self.admins:
            chaos.wait_for("node", lambda: chaos.http_ok(f"http://127.0.0.1:{admin}/readyz"))

        def all_alive():
            for admin in self.admins:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/cluster",
                                                timeout=1) as r:
                        members = json.load(r).get("members", [])
                except (OSError, ValueError):
                    return False
                if len(members) != len(self.procs) or not all(m.get("alive") for m in members):
                    return False
            return True
        chaos.wait_for("cluster membership", all_alive, within=30.0)

    def url(self, i, path):
        return f"http://127.0.0.1:{self.ports[i]}{path}"

    def purge(self, path):
        """Purge path (its manifest and chunks) on every node, through node 0's admin API."""
        body = json.dumps({"urls": [f"http://localhost{path}"]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admins[0]}/purge", data=body,
                                     method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.load(r)
        if not answer.get("purged"):
            raise SystemExit(f"purge of {path}: {answer}")
        time.sleep(1.0)  # the chunks go as the store's maintenance runs

    def stop(self):
        for p in self.procs:
            p.stop()


class RssWatch:
    """Peak VmRSS of some processes while the block runs, against their RSS at its start."""

    def __init__(self, procs, every):
        self.procs, self.every = procs, every
        self.before = {p.name: chaos.rss_bytes(p.pid()) or 0 for p in procs}
        self.peak = dict(self.before)
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self):
        for p in self.procs:
            rss = chaos.rss_bytes(p.pid())
            if rss:
                self.peak[p.name] = max(self.peak[p.name], rss)

    def run(self):
        while not self.halt.wait(self.every):
            self.sample()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.thread.join()
        self.sample()

    def growth(self, name):
        return self.peak[name] - self.before[name]

    def figures(self):
        return {name: {"before": self.before[name], "peak": self.peak[name]}
                for name in self.before}


def slow_clients(url, n, seconds):
    """n curl --limit-rate clients of url for `seconds`, then killed (by pid)."""
    procs = []
    try:
        stop = {signal.SIGINT, signal.SIGTERM}
        for _ in range(n):
            # No Ctrl-C between a child's start and its pid on the list (it is killed with
            # SIGKILL, so that it starts with these blocked does not matter).
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            try:
                procs.append(subprocess.Popen(
                    ["curl", "-s", "-o", "/dev/null", *HOST, "--limit-rate", SLOW_RATE, url],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)
        time.sleep(seconds)
        early = sum(1 for p in procs if p.poll() is not None)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return early


def perf_record(out, call_graph, ours, run):
    """perf record over every CPU while run() runs, on CLOCK_MONOTONIC: (CpuWatch of the
    run, (start, end) of run() for `perf report --time`, result of run)."""
    perf = subprocess.Popen(["perf", "record", "-a", "--call-graph", call_graph, "-F", "999",
                             "-e", "cpu-clock", "-k", "CLOCK_MONOTONIC", "-o", out],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(out + ".log", "w"))
    try:
        time.sleep(1.0)  # perf is attached to every CPU
        with CpuWatch(ours + [perf.pid]) as cpu:
            m0 = time.clock_gettime(time.CLOCK_MONOTONIC)
            result = run()
            m1 = time.clock_gettime(time.CLOCK_MONOTONIC)
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(300)
    return cpu, (m0, m1), result


def verdict(ok, claim, got, miss):
    """One goal's line: met, or missed and by how much."""
    return f"- {claim}: met ({got})" if ok else f"- {claim}: MISSED ({got}; {miss})"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(chaos.HERE, "..", "target", "release",
                                                    "outpost"))
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--size", default="1GiB")
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--chunk-size", default="4MiB")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--memory", help="cache.memory of each node "
                                    "(default max(256MiB, 3 x size / nodes))")
    p.add_argument("--slow-seconds", type=float, default=10.0,
                   help=f"how long the {SLOW_CLIENTS} slow clients read")
    p.add_argument("--no-purge", action="store_true",
                   help="keep every trial's object (by default the previous one is purged "
                        "before a cold GET: the cluster holds at most two)")
    p.add_argument("--quiet-wait", type=float, default=300.0, metavar="SECONDS",
                   help="before each trial, wait up to this long for idle CPUs")
    p.add_argument("--keep", action="store_true", help="keep the file, configs and logs")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    p.add_argument("--perf", metavar="DIR", help="perf record one uncached, one more cold and one warm GET here")
    p.add_argument("--perf-call-graph", default="fp", metavar="HOW",
                   help="perf record --call-graph: fp (as -g) or dwarf (deeper, heavier)")
    args = p.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.path.isfile(args.binary):
        sys.exit(f"error: {args.binary} not found (cargo build --release)")
    if not os.path.isfile(args.nginx):
        sys.exit("error: nginx not found (apt-get install nginx)")
    size = args.size_bytes = chaos.parse_size(args.size)
    chunk = chaos.parse_size(args.chunk_size)
    memory = chaos.parse_size(args.memory) if args.memory else \
        max(256 * MIB, 3 * size // args.nodes)
    memory = (memory + MIB - 1) // MIB * MIB
    per_response = max(chunk, min(READ_AHEAD * chunk, READ_AHEAD_BYTES))
    budget = max(memory // 8, READ_AHEAD_BYTES)
    if size <= max(memory // 4, chunk):
        print(f"warning: {args.size} is not above chunk_above ({mib(memory // 4)}): "
              "it is stored whole", file=sys.stderr)

    work = tempfile.mkdtemp(prefix="outpost-big-file-")
    os.chmod(work, 0o755)
    root = os.path.join(work, "www")
    os.makedirs(os.path.join(root, "f"))
    os.chmod(root, 0o755)
    os.chmod(os.path.join(root, "f"), 0o755)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    origin = nodes = None
    failures = []
    try:
        t = time.monotonic()
        want = make_file(os.path.join(root, "f", NAME), size)
        print(f"(wrote {args.size} of random bytes in {time.monotonic() - t:.1f} s)",
              file=sys.stderr)
        origin = Origin(work, root, args.nginx)
        origin.start()
        nodes = Nodes(args, work, origin.port, mib(memory))
        nodes.start()
        node0 = nodes.procs[0]

        samples = {m: [] for m in MODES}   # (first byte, total, cpu busy, foreign cpu)
        ours = [os.getpid(), *origin.pids, *(n.pid() for n in nodes.procs)]
        origin_reqs = {m: [] for m in MODES}
        split = {m: [] for m in MODES}     # (nginx, node 0, other nodes, curl): cores
        owners = []                        # the node holding each trial's manifest
        rss_fast = []                      # node 0's growth during each warm GET

        def timed(mode, url, uri):
            before = origin.requests(uri)
            with CpuWatch(ours) as cpu:
                first, total, got, status, cache_status = curl(url)
            if status != 200 or got != size:
                raise SystemExit(f"{mode} GET {url}: status {status}, {got} of {size} bytes")
            samples[mode].append((first, total, cpu.busy, cpu.foreign))
            n_origin = len(origin.pids)
            each = cpu.each[1:]
            split[mode].append((sum(each[:n_origin]), each[n_origin],
                                sum(each[n_origin + 1:]), cpu.clients))
            time.sleep(0.3)  # nginx logs a request as it ends (a cut one too)
            origin_reqs[mode].append(origin.requests(uri) - before)
            return cache_status

        # Every GET below is the client's only one: nothing else runs meanwhile.
        direct_uri = f"/f/{NAME}"
        nostore_uri, own_uri = uncached_keys(nodes, f"/nostore/{NAME}")
        for n in range(args.trials):
            wait_quiet(ours, args.quiet_wait)
            timed("direct", origin.url(direct_uri), direct_uri)
            timed("uncached", nodes.url(0, nostore_uri), nostore_uri)
            timed("uncached (node 0 owns)", nodes.url(0, own_uri), own_uri)
            uri = f"/f/{NAME}?t={n}"
            if n and not args.no_purge:
                nodes.purge(f"/f/{NAME}?t={n - 1}")
            timed("cold", nodes.url(0, uri), uri)
            with RssWatch([node0], 0.1) as w:
                owners.append(stored_on(timed("warm", nodes.url(0, uri), uri)))
            rss_fast.append(w.growth(node0.name))
            timed("warm (node 1)", nodes.url(1, uri), uri)
            print(f"(trial {n + 1}: " + ", ".join(
                f"{m} {samples[m][-1][1]:.2f} s" for m in MODES) + f"; owner {owners[-1]})",
                file=sys.stderr)

        # One more warm GET, its body hashed and its head kept.
        warm_uri = f"/f/{NAME}?t={args.trials - 1}"
        before = origin.requests(warm_uri)
        head = os.path.join(work, "warm-head.txt")
        pipe = subprocess.Popen(["curl", "-s", *HOST, "-D", head, nodes.url(0, warm_uri)],
                                stdout=subprocess.PIPE)
        got_sha = subprocess.run(["sha256sum"], stdin=pipe.stdout, capture_output=True,
                                 text=True).stdout.split()[0]
        pipe.wait()
        time.sleep(0.3)
        verify_reqs = origin.requests(warm_uri) - before
        with open(head) as f:
            cache_status = next((line.strip() for line in f
                                 if line.lower().startswith("cache-status:")), "none")
        if got_sha != want:
            failures.append(f"the warm body's sha256 {got_sha} is not the file's {want}")
        warm_origin = sum(origin_reqs["warm"]) + sum(origin_reqs["warm (node 1)"]) + verify_reqs
        if warm_origin:
            failures.append(f"warm GETs reached the origin {warm_origin} times")

        # Memory: slow clients of the warm object through node 0.
        warm_url = nodes.url(0, warm_uri)
        with RssWatch(nodes.procs, 0.5) as one_slow:
            slow_clients(warm_url, 1, 5.0)
        with RssWatch(nodes.procs, 0.5) as many_slow:
            early = slow_clients(warm_url, SLOW_CLIENTS, args.slow_seconds)
        if early:
            failures.append(f"{early} of the {SLOW_CLIENTS} slow clients ended early")

        perf = {}
        if args.perf:
            os.makedirs(args.perf, exist_ok=True)
            uri = f"/f/{NAME}?t=perf"
            if not args.no_purge:
                nodes.purge(warm_uri)
            for mode in ("uncached", "cold", "warm"):
                wait_quiet(ours, args.quiet_wait)
                out = os.path.join(os.path.abspath(args.perf), f"{mode}.data")
                path = nostore_uri if mode == "uncached" else uri
                cpu, window, r = perf_record(out, args.perf_call_graph, ours,
                                             lambda: curl(nodes.url(0, path)))
                perf[mode] = {"file": out, "cpu_busy": cpu.busy, "cpu_foreign": cpu.foreign,
                              "first_byte": r[0], "time": r[1], "window": window}

        # Report.
        med = {m: tuple(statistics.median(s[k] for s in samples[m]) for k in range(4))
               for m in MODES}
        t_unc, t_dir = med["uncached"][1], med["direct"][1]
        t_own = med["uncached (node 0 owns)"][1]
        print(f"## {args.size} object, {args.nodes} nodes of cache.memory {mib(memory)}, "
              f"chunk_size {args.chunk_size}, replicas {args.replicas}, "
              f"median of {args.trials}")
        print()
        print("| mode | time | GB/s | first byte | vs uncached | vs uncached (node 0 owns) "
              "| vs direct | CPU busy | foreign CPU | origin requests per GET |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for m in MODES:
            first, total, busy, foreign = med[m]
            reqs = statistics.median(origin_reqs[m])
            print(f"| {m} | {total:.2f} s | {size / total / 1e9:.2f} | {first * 1000:.1f} ms "
                  f"| {t_unc / total:.2f}x | {t_own / total:.2f}x | {t_dir / total:.2f}x "
                  f"| {busy * 100:.0f} % | {foreign * 100:.0f} % | {reqs:g} |")
        print()
        print("CPU by process, in cores (median; 2 cores in all):")
        print()
        print("| mode | nginx | node 0 | other nodes | curl |")
        print("|---|---|---|---|---|")
        for m in MODES:
            cols = [statistics.median(s[k] for s in split[m]) for k in range(4)]
            print(f"| {m} | " + " | ".join(f"{c:.2f}" for c in cols) + " |")
        print()
        print("The key's owner (its manifest; a node that does not own it forwards the request "
              "there), by trial: " + ", ".join(owners))
        print()
        loud = max(max(s[3] for s in samples[m]) for m in MODES)
        if loud > 0.10:  # a few % are kernel threads (ksoftirqd) doing this run's network
            print(f"(warning: up to {loud * 100:.0f} % of the CPUs went to other processes "
                  "during a GET: the machine was not quiet)")
            print()
        r_cold, r_warm = t_unc / med["cold"][1], t_unc / med["warm"][1]
        r_warm_dir = t_dir / med["warm"][1]
        ttfb_gap = (med["cold"][0] - med["uncached"][0]) * 1000
        print("Goals:")
        print(verdict(r_cold >= 0.9, "cold >= 0.9x uncached", f"{r_cold:.2f}x",
                      f"{(0.9 - r_cold) / 0.9 * 100:.0f} % short"))
        print(verdict(ttfb_gap <= 5, "cold first byte <= uncached's + 5 ms",
                      f"{ttfb_gap:+.1f} ms", f"{ttfb_gap - 5:.1f} ms over"))
        r_own = t_own / med["cold"][1]
        own_gap = (med["cold"][0] - med["uncached (node 0 owns)"][0]) * 1000
        print(verdict(r_own >= 0.9, "cold >= 0.9x uncached through node 0 alone",
                      f"{r_own:.2f}x", f"{(0.9 - r_own) / 0.9 * 100:.0f} % short"))
        print(verdict(own_gap <= 5, "cold first byte <= that stream's + 5 ms",
                      f"{own_gap:+.1f} ms", f"{own_gap - 5:.1f} ms over"))
        print(verdict(r_warm >= 1.0, "warm >= 1.0x uncached", f"{r_warm:.2f}x",
                      f"{(1.0 - r_warm) * 100:.0f} % short"))
        print(verdict(r_warm_dir >= 0.8, "warm >= 0.8x direct", f"{r_warm_dir:.2f}x",
                      f"{(0.8 - r_warm_dir) / 0.8 * 100:.0f} % short"))
        fast = max(rss_fast)
        one = one_slow.growth(node0.name)
        many = many_slow.growth(node0.name)
        held = max(fast, one)
        print(verdict(held <= per_response, "a download holds at most its read-ahead "
                      f"({mib(per_response)})",
                      f"node 0 RSS +{mib(max(fast, 0))} fast, +{mib(max(one, 0))} one slow",
                      f"{mib(held - per_response)} over"))
        print(verdict(many <= budget, f"{SLOW_CLIENTS} slow clients within the node's "
                      f"read-ahead budget ({mib(budget)})", f"node 0 RSS +{mib(max(many, 0))}",
                      f"{mib(many - budget)} over"))
        # A node that does not own the object forwards the request to the owner, which reads
        # the chunks (and holds the read-ahead): the budget is every node's.
        top = max((n.name for n in nodes.procs), key=many_slow.growth)
        most = many_slow.growth(top)
        print(verdict(most <= budget, f"{SLOW_CLIENTS} slow clients within every node's "
                      f"read-ahead budget", f"{top} RSS +{mib(max(most, 0))}",
                      f"{mib(most - budget)} over"))
        print()
        print(f"Memory (VmRSS of node 0; cache.memory {mib(memory)}, read-ahead budget "
              f"{mib(budget)} per node, {mib(per_response)} per response):")
        others = [n.name for n in nodes.procs[1:]]

        def line(what, w):
            o = max(others, key=w.growth) if others else None
            return (f"- {what}: before {mib(w.before[node0.name])}, peak "
                    f"{mib(w.peak[node0.name])}, peak - before {mib(w.growth(node0.name))}"
                    + (f"; other nodes' largest growth {mib(w.growth(o))} ({o})" if o else ""))
        print(f"- one fast client (each warm GET, sampled every 0.1 s): peak - before "
              + ", ".join(mib(g) for g in rss_fast))
        print(line(f"one slow client ({SLOW_RATE}/s, 5 s)", one_slow))
        print(line(f"{SLOW_CLIENTS} slow clients ({SLOW_RATE}/s each, "
                   f"{args.slow_seconds:g} s)", many_slow))
        print()
        print(f"warm GET's {cache_status}; sha256 "
              + ("matches the file's" if got_sha == want else "DIFFERS"))
        for mode, f in perf.items():
            print(f"perf {mode}: {f['time']:.2f} s, first byte {f['first_byte'] * 1000:.1f} ms, "
                  f"CPU busy {f['cpu_busy'] * 100:.0f} % (foreign "
                  f"{f['cpu_foreign'] * 100:.0f} %): perf report -i {f['file']} "
                  f"--time {f['window'][0]:.6f},{f['window'][1]:.6f}")
        for f in failures:
            print(f"FAIL: {f}")
        print("PASS" if not failures else "FAIL")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({
                    "size": size, "nodes": args.nodes, "memory": memory, "chunk_size": chunk,
                    "replicas": args.replicas, "trials": args.trials,
                    "samples": {m: [{"first_byte": a, "time": b, "cpu_busy": c,
                                     "cpu_foreign": d}
                                    for a, b, c, d in samples[m]] for m in MODES},
                    "median": {m: {"first_byte": med[m][0], "time": med[m][1],
                                   "cpu_busy": med[m][2], "cpu_foreign": med[m][3]}
                               for m in MODES},
                    "origin_requests": origin_reqs, "verify_origin_requests": verify_reqs,
                    "owners": owners,
                    "ratios": {"cold_vs_uncached": r_cold, "warm_vs_uncached": r_warm,
                               "warm_vs_direct": r_warm_dir, "cold_first_byte_gap_ms": ttfb_gap},
                    "read_ahead": {"per_response": per_response, "node_budget": budget},
                    "rss": {"fast_growth": rss_fast, "one_slow": one_slow.figures(),
                            "many_slow": many_slow.figures()},
                    "pids": {n.name: n.pid() for n in [origin.proc, *nodes.procs]},
                    "sha256_ok": got_sha == want, "cache_status": cache_status, "perf": perf,
                    "failures": failures,
                }, f, indent=2)
        return 1 if failures else 0
    finally:
        for part in (nodes, origin):
            if part:
                part.stop()
        if args.keep:
            print(f"(file, configs and logs in {work})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted")
