#!/usr/bin/env python3
"""Outpost under cache misses: how hard it drives its origin, and what it adds to a miss.

    python3 bench/origin_load.py [--binary target/release/outpost] [--scenarios load,overhead]
        [--seconds 10] [--max-connections N] [--clients 500] [--delay-ms 50]
        [--overhead-connections 1] [--json FILE]

On 127.0.0.1: an nginx origin (port 19500, echo module) and one Outpost node in front of it
(19510); wrk is the client, and every request uses a URL never sent before
(bench/unique_paths.lua), so every request through Outpost is a cache miss.

load      Claim: with a 50 ms origin, 500 concurrent clients of distinct cold URLs complete at
          the rate the connection limit allows, with no error. With `[site.origin]
          max_connections = N` at most N fetches are in flight: the ceiling is N / delay
          req/s. Reports achieved/ceiling, wrk's errors and latencies, and the origin's
          request count (stub_status), which must equal the completed requests plus those in
          flight when wrk stopped. Without a limit the rate is bound by the CPU, not a pool.
overhead  Claim: Outpost's own added latency on a miss stays under 200 us at the median.
          One wrk connection against a no-delay origin, direct and through Outpost, twice
          alternating; added = outpost p50 - direct p50 per pair, and their median. Closed
          loop: service times plus loopback round trips, no queueing.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
NGINX, WRK = "/usr/sbin/nginx", "/usr/bin/wrk"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
ORIGIN_PORT, OUTPOST_PORT = 19500, 19510

NGINX_CONF = """load_module {echo};
daemon off; master_process off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    default_type application/octet-stream;
    keepalive_timeout 300s; keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        add_header Cache-Control "public, max-age=3600";
        location /f/ {{ }}
        # /slow/<anything>: the 1 KiB object after the delay (non-blocking echo timer).
        location /slow/ {{ echo_sleep {delay}; echo_exec /f/1k; }}
        # /fast/<anything>: the 1 KiB object at once.
        location /fast/ {{ rewrite ^ /f/1k break; }}
        location = /_origin_stats {{ stub_status; }}
    }}
}}
"""

OUTPOST_CONF = """[node]
name = "origin-load"
[listen]
http = ["127.0.0.1:{port}"]
[log]
level = "warn"
[cache]
memory = "512MiB"
[[site]]
name = "load"
hosts = ["127.0.0.1", "localhost"]
[site.origin]
servers = ["http://127.0.0.1:{origin}"]
"""


class BenchError(Exception):
    pass


class Processes:
    """The processes this script started; stop() ends them by their own pid only."""

    def __init__(self, work):
        self.work, self.running = work, []

    def start(self, name, cmd, hint="", more_logs=()):
        log = os.path.join(self.work, f"{name}.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.running.append((name, proc, [log, *more_logs], hint))

    def check(self):
        for name, proc, logs, hint in self.running:
            if proc.poll() is not None:
                output = "\n".join(Path(log).read_text(errors="replace")[-2000:].rstrip()
                                   for log in logs if os.path.exists(log)).strip()
                raise BenchError(f"{name} exited with code {proc.returncode}{hint}:\n"
                                 f"{output or '(no output)'}")

    def stop(self):
        for _, proc, _, _ in reversed(self.running):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def ensure_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            sys.exit(f"error: port 127.0.0.1:{port} is busy ({e.strerror}); stop what uses it")


def http_get(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status, r.read()


def wait_ready(procs, url, deadline_s=15):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        procs.check()
        try:
            if http_get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"no 200 from {url} within {deadline_s} s")


def origin_requests():
    """nginx's request counter (this stub_status request included)."""
    text = http_get(f"http://127.0.0.1:{ORIGIN_PORT}/_origin_stats")[1].decode()
    return int(text.splitlines()[2].split()[2])


def wrk(port, clients, threads, seconds, prefix):
    """One wrk run of unique URLs <prefix><thread>-<n>; the figures of unique_paths.lua's done()."""
    cmd = [WRK, f"-c{clients}", f"-t{threads}", f"-d{seconds}s", "--timeout", "10s",
           "-s", os.path.join(HERE, "unique_paths.lua"), f"http://127.0.0.1:{port}", "--", prefix]
    run = subprocess.run(cmd, capture_output=True, text=True)
    for line in run.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            r = json.loads(line[len("BENCHJSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["errors"] = sum(v for k, v in r.items() if k.startswith("err_"))
            return r
    raise BenchError(f"wrk failed (code {run.returncode}):\n{run.stdout}{run.stderr}")


def scenario_load(args, procs):
    before = origin_requests()
    r = wrk(OUTPOST_PORT, args.clients, 2, args.seconds, "/slow/load/")
    time.sleep(args.delay_ms / 1000 + 0.5)  # let the fetches in flight at the cut-off finish
    procs.check()
    r["origin_requests"] = origin_requests() - before - 1
    if args.max_connections:
        r["ceiling_rps"] = args.max_connections / (args.delay_ms / 1000)
        r["ratio"] = r["rps"] / r["ceiling_rps"]
    return r


def scenario_overhead(args, procs):
    runs = []
    for i, (name, port) in enumerate([("direct", ORIGIN_PORT), ("outpost", OUTPOST_PORT)] * 2):
        # A fresh prefix per run: no URL is reused.
        r = wrk(port, args.overhead_connections, 1, args.seconds, f"/fast/run{i}/")
        runs.append(dict(r, name=name, pair=i // 2 + 1))
        procs.check()
    added = [b["p50_us"] - a["p50_us"] for a, b in zip(runs[::2], runs[1::2])]
    return {"runs": runs, "added_p50_us": added, "added_p50_median_us": statistics.median(added)}


def report(args, results):
    out = [f"## Outpost origin load ({args.binary}, {time.strftime('%F %T')})"]
    verdict = lambda ok, claim: f"{'PASS' if ok else 'FAIL'}: {claim}"
    if "load" in results:
        r, ms = results["load"], lambda us: f"{us / 1000:.1f} ms"
        limit = args.max_connections or "none"
        out += ["", f"### load: {args.clients} clients, distinct cold URLs, {args.delay_ms} ms "
                f"origin, max_connections = {limit}, {args.seconds} s", "",
                "| figure | value |", "|---|---|",
                f"| requests completed | {r['requests']} |",
                f"| req/s | {r['rps']:.0f} |",
                f"| non-2xx/3xx responses | {r['err_status']} |",
                f"| socket errors connect/read/write/timeout | "
                f"{r['err_connect']}/{r['err_read']}/{r['err_write']}/{r['err_timeout']} |",
                f"| latency p50 / p99 | {ms(r['p50_us'])} / {ms(r['p99_us'])} |",
                f"| origin requests (stub_status) | {r['origin_requests']} "
                f"({r['origin_requests'] - r['requests']:+d} vs completed) |"]
        if "ceiling_rps" in r:
            out += [f"| ceiling = max_connections / delay | {r['ceiling_rps']:.0f} req/s |",
                    f"| achieved / ceiling | {r['ratio']:.2f} |"]
        extra = r["origin_requests"] - r["requests"]  # fetches cut off when wrk stopped
        out += ["", f"Errors: {r['errors']} ({verdict(r['errors'] == 0, 'no error')}); origin "
                f"fetches {verdict(0 <= extra <= args.clients, 'one per client request')}."]
    if "overhead" in results:
        o, med = results["overhead"], results["overhead"]["added_p50_median_us"]
        conns = args.overhead_connections
        out += ["", f"### overhead: {conns} connection{'s' if conns > 1 else ''}, every request "
                f"a miss, no-delay origin, "
                f"{args.seconds} s per run", "",
                "| run | p50 us | p90 us | p99 us | req/s | errors |", "|---|---|---|---|---|---|"]
        out += [f"| {r['name']} {r['pair']} | {r['p50_us']} | {r['p90_us']} | {r['p99_us']} | "
                f"{r['rps']:.0f} | {r['errors']} |" for r in o["runs"]]
        pairs = ", ".join(f"{a:.0f} us" for a in o["added_p50_us"])
        out += ["", f"Added median latency (outpost p50 - direct p50) per pair: {pairs}; "
                f"median {med:.0f} us ({verdict(med < 200, '< 200 us')})."]
    return "\n".join(out)


def start_servers(args, work, procs):
    os.makedirs(os.path.join(work, "www", "f"))
    os.makedirs(os.path.join(work, "tmp"))
    Path(work, "www/f/1k").write_bytes(os.urandom(1024))
    Path(work, "nginx.conf").write_text(NGINX_CONF.format(
        echo=ECHO_MODULE, dir=work, port=ORIGIN_PORT, delay=args.delay_ms / 1000))
    conf, hint = OUTPOST_CONF.format(port=OUTPOST_PORT, origin=ORIGIN_PORT), ""
    if args.max_connections:
        conf += f"max_connections = {args.max_connections}\n"
        hint = " (does this binary know [site.origin] max_connections?)"
    Path(work, "outpost.toml").write_text(conf)
    error_log = os.path.join(work, "nginx-error.log")
    procs.start("nginx", [NGINX, "-p", work, "-e", error_log, "-c", f"{work}/nginx.conf"],
                more_logs=[error_log])
    wait_ready(procs, f"http://127.0.0.1:{ORIGIN_PORT}/f/1k")
    procs.start("outpost", [args.binary, "--config", os.path.join(work, "outpost.toml")], hint)
    wait_ready(procs, f"http://127.0.0.1:{OUTPOST_PORT}/f/1k")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "outpost"))
    p.add_argument("--scenarios", default="load,overhead", help="comma-separated: load, overhead")
    p.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    p.add_argument("--max-connections", type=int, help="write [site.origin] max_connections = N")
    p.add_argument("--clients", type=int, default=500, help="wrk connections in `load`")
    p.add_argument("--delay-ms", type=int, default=50, help="origin delay in `load`")
    p.add_argument("--overhead-connections", type=int, default=1,
                   help="wrk connections in `overhead` (closed loop; more adds queueing)")
    p.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    p.add_argument("--nice", type=int, help="niceness increment for this script and its children")
    args = p.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or set(scenarios) - {"load", "overhead"}:
        p.error("--scenarios takes a comma-separated list of: load, overhead")
    if min(args.seconds, args.delay_ms, args.clients - 1, args.max_connections or 1,
           args.overhead_connections) < 1:
        p.error("--seconds, --delay-ms and --max-connections must be >= 1, --clients >= 2")
    args.binary = os.path.abspath(args.binary)
    for path in (args.binary, NGINX, WRK, ECHO_MODULE):
        if not os.path.isfile(path):
            sys.exit(f"error: {path} not found")
    for port in (ORIGIN_PORT, OUTPOST_PORT):
        ensure_free(port)
    try:
        os.nice(args.nice or 0)
    except OSError as e:
        sys.exit(f"error: --nice {args.nice}: {e.strerror}")

    work = tempfile.mkdtemp(prefix="origin-load-")
    procs, failed = Processes(work), False  # logs are kept only when something failed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through `finally`
    try:
        start_servers(args, work, procs)
        run = {"load": scenario_load, "overhead": scenario_overhead}
        results = {name: run[name](args, procs) for name in scenarios}
    except (BenchError, OSError) as e:  # OSError: e.g. the origin stopped answering
        failed = True
        print(f"error: {e}\n(logs and configs kept in {work})", file=sys.stderr)
    finally:
        procs.stop()
        if not failed:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(1)
    print(report(args, results))
    if args.json:
        Path(args.json).write_text(json.dumps({"config": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
