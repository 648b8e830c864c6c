#!/bin/sh
# Container entrypoint of Outpost.
#
# The configuration file cannot read environment variables, so when a template exists
# (OUTPOST_TEMPLATE, default /etc/outpost/outpost.toml.tmpl, e.g. from a Kubernetes
# ConfigMap), this script renders it into OUTPOST_CONFIG (default /run/outpost/outpost.toml)
# replacing these placeholders, and only these:
#
#   ${POD_IP}               this pod's address, ready to be followed by :PORT
#                           (an IPv6 address is written in brackets)
#   ${POD_NAME}             defaults to the host name (in Kubernetes: the pod name)
#   ${POD_NAMESPACE}
#   ${OUTPOST_SECRET}       cluster secret
#   ${OUTPOST_ADMIN_TOKEN}  admin bearer token
#
# A placeholder used in the template whose variable is unset or empty is an error, and so
# is a value containing a double quote, a backslash or a newline (it would end a TOML string).
# Without a template, OUTPOST_CONFIG (default then /etc/outpost/outpost.toml) is used as is.
#
#   entrypoint.sh                  render, then exec outpost --config OUTPOST_CONFIG
#   entrypoint.sh render           render only (then send SIGHUP to PID 1 to reload)
#   entrypoint.sh check            render, then validate the result
#   entrypoint.sh CMD [ARG...]     render, then exec CMD (e.g. "outpost demo", "sh")
set -eu

template=${OUTPOST_TEMPLATE:-/etc/outpost/outpost.toml.tmpl}

die() {
    echo "entrypoint: $*" >&2
    exit 1
}

# Escape a value for the replacement side of a sed s|||: backslash, ampersand, separator.
sed_escape() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

render() {
    out=$1
    : "${POD_NAME:=$(uname -n)}"
    pod_ip=${POD_IP:-}
    case $pod_ip in
        *:*) case $pod_ip in \[*) ;; *) pod_ip="[$pod_ip]" ;; esac ;;
    esac
    script=
    for name in POD_IP POD_NAME POD_NAMESPACE OUTPOST_SECRET OUTPOST_ADMIN_TOKEN; do
        if [ "$name" = POD_IP ]; then
            value=$pod_ip
        else
            eval "value=\${$name:-}"
        fi
        grep -qF "\${$name}" "$template" || continue
        [ -n "$value" ] || die "$template uses \${$name} but $name is not set"
        case $value in
            *'"'* | *'\'* | *'
'*) die "$name contains a double quote, a backslash or a newline" ;;
        esac
        script="${script}s|[$]{$name}|$(sed_escape "$value")|g
"
    done
    dir=$(dirname "$out")
    mkdir -p "$dir"
    tmp="$dir/.outpost.toml.$$"
    (umask 077 && sed -e "$script" "$template" > "$tmp") || { rm -f "$tmp"; die "cannot write $tmp"; }
    # Rename, so a reload never reads a half-written file.
    mv -f "$tmp" "$out"
}

if [ -f "$template" ]; then
    config=${OUTPOST_CONFIG:-/run/outpost/outpost.toml}
    render "$config"
else
    config=${OUTPOST_CONFIG:-/etc/outpost/outpost.toml}
    [ "${1:-}" != render ] || die "no template at $template"
fi

case ${1:-} in
    render) exit 0 ;;
    check) exec outpost check "$config" ;;
    "") ;;
    *) exec "$@" ;;
esac

[ -f "$config" ] || die "no configuration: mount one at $config, or a template at $template"
exec outpost --config "$config"
