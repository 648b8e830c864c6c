"""Benchmark targets: the caching proxies under test.

A target is started with `start(origin, port, tls_port)`: `origin` is the
origin's "host:port", `port` the plain HTTP/1.1 listen port on 127.0.0.1 and
`tls_port` the HTTPS (HTTP/2) port for targets that support TLS. Everything a
target writes lives under its own directory in the run's /tmp/bench-* dir.

To add a built-in target, subclass `Target`, implement start/describe (and
optionally extra_memory/cached_bytes), and register it in KINDS. Any other
binary can be benchmarked without code via the "custom" kind, as Outpost is:

    --target "outpost=custom:$PWD/bench/outpost-target.sh $PWD/target/release/outpost {port} {tls_port} {cert} {key} {origin} {cache_bytes} {workdir}"
"""
import json
import os
import re
import shlex
import shutil
import subprocess

from . import procs
from .origin import NginxStatic, TEMPLATES, render


class Env:
    """Settings shared by all targets of a run."""

    def __init__(self, root, cpus, nice, cache_mib, cert, key, mounts, www):
        self.root, self.cpus, self.nice, self.cache_mib = root, cpus, nice, cache_mib
        self.cert, self.key, self.mounts, self.www = cert, key, mounts, www


class Target:
    kind = "?"
    is_cache = True     # False for the no-cache reference (scenarios d/e/f skipped)
    tls = False         # serves HTTPS + HTTP/2 on tls_port

    def __init__(self, name, env):
        self.name, self.env = name, env
        self.dir = os.path.join(env.root, name)
        self.proc = None
        self.origin = self.port = self.tls_port = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, origin, port, tls_port=None):
        raise NotImplementedError

    def _launch(self, cmd, env=None, ready_timeout=60):
        self.proc = procs.Proc(self.name, cmd, self.env.cpus,
                               os.path.join(self.dir, "stdout.log"), nice=self.env.nice, env=env)
        procs.wait_http("127.0.0.1", self.port, "/f/1k", timeout=ready_timeout, proc=self.proc)

    def _prepare(self, origin, port, tls_port):
        self.origin, self.port, self.tls_port = origin, port, tls_port
        if os.path.isdir(self.dir):
            self._clear_dir()
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)

    def _clear_dir(self):
        """Empty our dir for a fresh start (keeps tmpfs mount points, empties them)."""
        for entry in os.listdir(self.dir):
            p = os.path.join(self.dir, entry)
            if os.path.ismount(p):
                for sub in os.listdir(p):
                    sp = os.path.join(p, sub)
                    shutil.rmtree(sp) if os.path.isdir(sp) and not os.path.islink(sp) else os.remove(sp)
            elif os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.remove(p)

    def _tmpfs(self, sub, size_mib):
        path = os.path.join(self.dir, sub)
        if os.path.ismount(path):
            return True
        return self.env.mounts.tmpfs(path, size_mib)

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None

    def pids(self):
        return self.proc.pids() if self.proc else []

    # -- reporting -----------------------------------------------------------------
    def extra_memory(self):
        """Bytes the target keeps in RAM outside its processes (tmpfs cache files)."""
        return 0

    def cached_bytes(self):
        """Bytes of cached objects as reported by the target, or None if unknown."""
        return None

    def describe(self):
        return self.kind


class Varnish(Target):
    kind = "varnish"

    def start(self, origin, port, tls_port=None):
        self._prepare(origin, port, tls_port)
        # varnishd's working dir holds the shared-memory log (VSM, ~90 MB mapped);
        # keep it on tmpfs so log writes never hit the disk. It is counted in PSS.
        self.tmpfs_ok = self._tmpfs("n", 512)
        host, oport = origin.rsplit(":", 1)
        vcl = os.path.join(self.dir, "bench.vcl")
        render(os.path.join(TEMPLATES, "varnish.vcl"), vcl,
               {"ORIGIN_HOST": host, "ORIGIN_PORT": oport})
        self._launch(["varnishd", "-F", "-n", os.path.join(self.dir, "n"),
                      "-a", f"127.0.0.1:{port}", "-T", "none", "-f", vcl,
                      "-s", f"malloc,{self.env.cache_mib}m"])

    def cached_bytes(self):
        try:
            out = subprocess.run(["varnishstat", "-n", os.path.join(self.dir, "n"), "-1", "-j",
                                  "-f", "SMA.s0.g_bytes"], capture_output=True, text=True,
                                 timeout=10).stdout
            d = json.loads(out)
            c = d.get("counters", d)
            return int(c["SMA.s0.g_bytes"]["value"])
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
            return None

    def describe(self):
        return (f"varnishd -s malloc,{self.env.cache_mib}m, default params and VCL "
                f"(backend only), no TLS")


class Nginx(Target):
    kind = "nginx"
    tls = True

    def start(self, origin, port, tls_port=None):
        self._prepare(origin, port, tls_port)
        cache_mib = self.env.cache_mib
        # nginx enforces max_size from its cache manager, which looks at the size
        # only every 10 s when nothing expires: under a high miss rate the cache
        # overshoots max_size by up to 10 s of inserts. Size the tmpfs for that.
        self.tmpfs_ok = self._tmpfs("cache", cache_mib * 2 + 1024)
        for sub in ("tmp",):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
            os.chmod(os.path.join(self.dir, sub), 0o777)
        os.chmod(os.path.join(self.dir, "cache"), 0o777)
        conf = os.path.join(self.dir, "nginx.conf")
        render(os.path.join(TEMPLATES, "nginx-proxy.conf"), conf, {
            "DIR": self.dir, "CACHE_DIR": os.path.join(self.dir, "cache"),
            "KEYS_ZONE_MIB": 32, "CACHE_MIB": cache_mib, "ORIGIN": origin,
            "PORT": port, "TLS_PORT": tls_port, "CERT": self.env.cert, "KEY": self.env.key})
        self._launch(["nginx", "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "error.log")])

    def extra_memory(self):
        return procs.fs_used_bytes(os.path.join(self.dir, "cache")) if self.tmpfs_ok else 0

    def cached_bytes(self):
        return procs.fs_used_bytes(os.path.join(self.dir, "cache")) if self.tmpfs_ok else None

    def describe(self):
        where = "tmpfs" if getattr(self, "tmpfs_ok", True) else "DISK (no root: not tmpfs)"
        return (f"nginx proxy_cache, 1 worker, max_size={self.env.cache_mib}m on {where}, "
                f"keys_zone 32m, proxy_cache_lock on, upstream keepalive")


class TrafficServer(Target):
    kind = "ats"
    tls = True
    RAM_CACHE_MIB = 64

    def start(self, origin, port, tls_port=None):
        self._prepare(origin, port, tls_port)
        cache_mib = self.env.cache_mib
        self.tmpfs_ok = self._tmpfs("cache", cache_mib + 64)
        etc = os.path.join(self.dir, "etc")
        # start from the packaged defaults (body_factory, ip_allow, ...), then ours
        shutil.copytree("/etc/trafficserver", etc)
        for sub in ("state", "run", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        for f in ("volume.config", "plugin.config", "parent.config", "cache.config",
                  "hosting.config"):
            open(os.path.join(etc, f), "w").close()
        shutil.copy(self.env.cert, os.path.join(self.dir, "cert.pem"))
        shutil.copy(self.env.key, os.path.join(self.dir, "key.pem"))
        values = {"DIR": self.dir, "CACHE_DIR": os.path.join(self.dir, "cache"),
                  "CACHE_MIB": cache_mib, "PORT": port, "TLS_PORT": tls_port,
                  "ORIGIN": origin, "RAM_CACHE_BYTES": self.RAM_CACHE_MIB << 20}
        tdir = os.path.join(TEMPLATES, "ats")
        for f in ("records.config", "remap.config", "storage.config", "ssl_multicert.config"):
            render(os.path.join(tdir, f), os.path.join(etc, f), values)
        runroot = os.path.join(self.dir, "runroot.yaml")
        render(os.path.join(tdir, "runroot.yaml"), runroot, values)
        self._launch(["traffic_server", f"--run-root={runroot}"])

    def extra_memory(self):
        return procs.fs_used_bytes(os.path.join(self.dir, "cache")) if self.tmpfs_ok else 0

    def describe(self):
        return (f"traffic_server 1 ET_NET thread, {self.env.cache_mib} MiB cache file on tmpfs "
                f"+ {self.RAM_CACHE_MIB} MiB RAM cache, read-while-writer on")


class Direct(Target):
    """Reference, not a proxy: nginx serving the origin's files itself, pinned like a
    proxy. Bounds what any proxy in front of the origin can reach on this machine."""
    kind = "direct"
    is_cache = False
    tls = True

    def start(self, origin, port, tls_port=None):
        self._prepare(origin, port, tls_port)
        self.server = NginxStatic(self.name, self.dir, self.env.www, port, self.env.cpus,
                                  nice=self.env.nice, tls_port=tls_port,
                                  cert=self.env.cert, key=self.env.key)
        self.server.start()
        self.proc = self.server.proc
        procs.wait_http("127.0.0.1", port, "/f/1k", timeout=20, proc=self.proc)

    def describe(self):
        return "reference: nginx serving the files directly (no proxy), 1 worker, sendfile"


class Custom(Target):
    """Any binary. The command template may use the placeholders
    {port} {tls_port} {origin} {origin_host} {origin_port} {cache_mib} {cache_bytes}
    {workdir} {cert} {key}; literal braces are written {{ }}. The target is
    considered to serve HTTPS/HTTP2 iff the template mentions {tls_port}.
    The process must stay in the foreground and stop on SIGTERM."""
    kind = "custom"

    def __init__(self, name, env, template):
        super().__init__(name, env)
        self.template = template
        self.tls = "{tls_port}" in template

    def start(self, origin, port, tls_port=None):
        self._prepare(origin, port, tls_port)
        host, oport = origin.rsplit(":", 1)
        cmd = self.template.format(
            port=port, tls_port=tls_port, origin=origin, origin_host=host, origin_port=oport,
            cache_mib=self.env.cache_mib, cache_bytes=self.env.cache_mib << 20,
            workdir=self.dir, cert=self.env.cert, key=self.env.key)
        self.cmd = cmd
        self._launch(shlex.split(cmd), ready_timeout=120)

    def describe(self):
        return f"custom: {self.template}"


KINDS = {"varnish": Varnish, "nginx": Nginx, "ats": TrafficServer, "trafficserver": TrafficServer,
         "direct": Direct}


def parse_target(spec, env):
    """'kind', 'name=kind', 'custom:CMD' or 'name=custom:CMD' -> Target."""
    name = None
    m = re.match(r"^([A-Za-z0-9_.-]+)=(.*)$", spec, re.S)
    if m and not spec.startswith("custom:"):
        name, spec = m.group(1), m.group(2)
    if spec.startswith("custom:"):
        return Custom(name or "custom", env, spec[len("custom:"):].strip())
    if spec not in KINDS:
        raise ValueError(f"unknown target {spec!r} (known: {', '.join(KINDS)}, custom:CMD)")
    cls = KINDS[spec]
    return cls(name or cls.kind, env)


def tool_versions():
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    v = {"nginx": first_line(["nginx", "-v"]), "varnishd": first_line(["varnishd", "-V"]),
         "wrk": first_line(["wrk", "--version"]), "h2load": first_line(["h2load", "--version"])}
    if shutil.which("traffic_server"):
        out = subprocess.run(["traffic_server", "-V"], capture_output=True, text=True).stdout
        v["traffic_server"] = next((l for l in out.splitlines() if "Traffic Server" in l), None)
    return v
