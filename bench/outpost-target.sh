#!/usr/bin/env bash
# Run Outpost as a `custom:` target of the side-by-side benchmark harness in bench/compare/.
#
#   --target 'outpost=custom:bench/outpost-target.sh target/release/outpost {port} {tls_port} {cert} {key} {origin} {cache_bytes} {workdir}'
#
# Writes a config for the harness's ports, origin and cache size into the target's work
# directory and replaces itself with the node (foreground; SIGTERM drains and exits).
set -euo pipefail
if [ $# -ne 8 ]; then
    echo "usage: $0 BINARY PORT TLS_PORT CERT KEY ORIGIN CACHE_BYTES WORKDIR" >&2
    exit 2
fi
binary=$1 port=$2 tls_port=$3 cert=$4 key=$5 origin=$6 cache_bytes=$7 workdir=$8
config="$workdir/outpost.toml"
cat >"$config" <<TOML
[node]
name = "outpost-bench"

[listen]
http = ["127.0.0.1:$port"]
https = ["127.0.0.1:$tls_port"]

[[tls.certificates]]
cert = "$cert"
key = "$key"

[cache]
memory = $cache_bytes
# The harness's largest object (64 MiB) is cached, as the other proxies cache it.
max_object = "100MiB"

[[site]]
name = "bench"
hosts = ["127.0.0.1", "localhost"]
origin = ["http://$origin"]
TOML
exec "$binary" --config "$config"
