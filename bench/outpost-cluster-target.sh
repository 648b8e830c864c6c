#!/usr/bin/env bash
# Run an Outpost cluster as one `custom:` target of the bench/compare/ harness: NODES nodes
# on 127.0.0.1:PORT+5.. with CACHE_BYTES × FACTOR / NODES of memory each, behind an nginx
# round-robin balancer on PORT (no cache in nginx). With NODES=1 the single node listens on
# PORT itself, so "1 node with 3× the memory" and "3 nodes" compare on the same workload:
#
#   --target 'cluster3=custom:bench/outpost-cluster-target.sh target/release/outpost {port} {origin} {cache_bytes} {workdir} 3 3'
#   --target 'single3x=custom:bench/outpost-cluster-target.sh target/release/outpost {port} {origin} {cache_bytes} {workdir} 1 3'
#
# An eighth argument sets `replicate` (default "hot").
#
# Foreground until SIGTERM, which stops every process it started.
set -euo pipefail
if [ $# -ne 7 ] && [ $# -ne 8 ]; then
    echo "usage: $0 BINARY PORT ORIGIN CACHE_BYTES WORKDIR NODES FACTOR [REPLICATE]" >&2
    exit 2
fi
binary=$1 port=$2 origin=$3 cache_bytes=$4 workdir=$5 nodes=$6 factor=$7 replicate=${8:-hot}
memory=$((cache_bytes * factor / nodes))
node_port() { echo $((port + 5 + $1)); }

peers=""
for i in $(seq 0 $((nodes - 1))); do
    peers="$peers\"127.0.0.1:$(node_port "$i")\", "
done

pids=()
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait
}
trap stop TERM INT

for i in $(seq 0 $((nodes - 1))); do
    listen="127.0.0.1:$(node_port "$i")"
    [ "$nodes" -eq 1 ] && listen="127.0.0.1:$port"
    config="$workdir/node-$i.toml"
    {
        printf '[node]\nname = "bench-%s"\n[listen]\nhttp = ["%s"]\n' "$i" "$listen"
        printf '[cache]\nmemory = %s\nmax_object = "100MiB"\n' "$memory"
        if [ "$nodes" -gt 1 ]; then
            printf '[cluster]\nadvertise = "%s"\npeers = [%s]\nsecret = "bench-cluster-secret-0123456789"\nreplicate = "%s"\n' \
                "$listen" "${peers%, }" "$replicate"
        fi
        printf '[[site]]\nname = "bench"\nhosts = ["127.0.0.1", "localhost"]\norigin = ["http://%s"]\n' "$origin"
    } >"$config"
    "$binary" --config "$config" &
    pids+=($!)
done

if [ "$nodes" -gt 1 ]; then
    upstreams=""
    for i in $(seq 0 $((nodes - 1))); do
        upstreams="$upstreams        server 127.0.0.1:$(node_port "$i");
"
    done
    cat >"$workdir/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $workdir/nginx.pid;
error_log $workdir/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream cluster {
$upstreams        keepalive 256;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://cluster;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_buffering off;
        }
    }
}
NGINX
    nginx -c "$workdir/nginx.conf" -p "$workdir" &
    pids+=($!)
fi
wait
