#!/usr/bin/env bash
# Checks the deployment files. Run from anywhere; CI runs it from the repository root:
#
#   deploy/validate.sh
#
# Needs promtool (Debian: prometheus) and python3. Uses, when present: systemd-analyze,
# python3's yaml module, kubectl (offline `kubectl kustomize`), and an outpost binary
# ($OUTPOST_BIN, target/debug/outpost, target/release/outpost or outpost on PATH) to check
# the Kubernetes configuration template with the real parser. What is missing is skipped
# with a message. Exits non-zero if any check fails.
set -uo pipefail
cd "$(dirname "$0")/.."

failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass() { printf 'ok    %s\n' "$1"; }
skip() { printf 'skip  %s: %s\n' "$1" "$2"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    failures=$((failures + 1))
}
# run NAME CMD...: the command's output is shown only when it fails.
run() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}
# run_silent NAME CMD...: as run, and any output at all is a failure too (systemd-analyze
# verify warns about unknown keys and bad values but exits 0).
run_silent() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1) && [ -z "$out" ]; then
        pass "$name"
    else
        fail "$name"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

# --- Prometheus -----------------------------------------------------------------------
if command -v promtool >/dev/null; then
    run "promtool check rules deploy/prometheus/alerts.yml" \
        promtool check rules deploy/prometheus/alerts.yml
    run "promtool test rules deploy/prometheus/alerts_test.yml" \
        promtool test rules deploy/prometheus/alerts_test.yml

    # Debian's promtool is built without Kubernetes service discovery: there the file is
    # checked without the Kubernetes job (the last one, by convention of the file).
    cat >"$tmp/k8s-probe.yml" <<'EOF'
scrape_configs:
  - job_name: probe
    kubernetes_sd_configs:
      - role: pod
EOF
    if promtool check config "$tmp/k8s-probe.yml" >/dev/null 2>&1; then
        run "promtool check config deploy/prometheus/prometheus.yml" \
            promtool check config deploy/prometheus/prometheus.yml
    else
        mkdir "$tmp/prom"
        cp deploy/prometheus/alerts.yml "$tmp/prom/"
        sed '/^  - job_name: outpost-kubernetes/,$d' deploy/prometheus/prometheus.yml >"$tmp/prom/prometheus.yml"
        run "promtool check config deploy/prometheus/prometheus.yml (without the Kubernetes job)" \
            promtool check config "$tmp/prom/prometheus.yml"
        skip "kubernetes_sd_configs" "this promtool has no Kubernetes discovery"
    fi
else
    fail "promtool not found (Debian: apt-get install prometheus)"
fi

# --- Grafana --------------------------------------------------------------------------
dashboard=deploy/grafana/outpost-dashboard.json
run "json $dashboard" python3 -m json.tool "$dashboard"
# Every panel query must be valid PromQL: wrap them as recording rules for promtool, with
# the dashboard's variables replaced by plain values.
if command -v promtool >/dev/null && python3 - "$dashboard" >"$tmp/dashboard-rules.yml" 2>"$tmp/dashboard-rules.err" <<'EOF'
import json, sys

dash = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            exprs.append((p.get("title", ""), t["expr"]))
        walk(p.get("panels", []))
walk(dash["panels"])
if not exprs:
    sys.exit("no queries found")
print("groups:\n  - name: dashboard\n    rules:")
for i, (title, expr) in enumerate(exprs):
    for var, value in (("$__rate_interval", "5m"), ("$job", ".*"), ("$instance", ".*"), ("$site", ".*")):
        expr = expr.replace(var, value)
    print(f"      - record: dashboard_query_{i}\n        expr: {json.dumps(expr)}")
EOF
then
    run "promql of every dashboard query" promtool check rules "$tmp/dashboard-rules.yml"
elif command -v promtool >/dev/null; then
    fail "promql of every dashboard query"
    sed 's/^/      /' "$tmp/dashboard-rules.err"
fi

# --- systemd --------------------------------------------------------------------------
unit=deploy/systemd/outpost.service
if command -v systemd-analyze >/dev/null; then
    # verify insists that ExecStart's binary exists: check a copy pointing at /bin/true.
    mkdir "$tmp/unit"
    sed 's#/usr/local/bin/outpost#/bin/true#g' "$unit" >"$tmp/unit/outpost.service"
    run_silent "systemd-analyze verify $unit" systemd-analyze verify "$tmp/unit/outpost.service"
    # Keep the sandboxing: exposure at most 3.0 of 10 (currently 1.6).
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
        run "systemd-analyze security $unit (exposure <= 3.0)" \
            systemd-analyze security --offline=true --threshold=30 --no-pager "$tmp/unit/outpost.service"
    else
        skip "systemd-analyze security" "no --offline in this systemd"
    fi
else
    skip "systemd-analyze verify $unit" "systemd-analyze not found"
fi

# --- Docker ---------------------------------------------------------------------------
entrypoint=deploy/docker/entrypoint.sh
run "sh -n $entrypoint" sh -n "$entrypoint"
if command -v shellcheck >/dev/null; then
    run "shellcheck $entrypoint" shellcheck -s sh "$entrypoint"
fi
[ -x "$entrypoint" ] && pass "$entrypoint is executable" || fail "$entrypoint is not executable"
# The files the Dockerfile copies from the build context exist.
missing=$(awk '$1 == "COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) print $i }' deploy/docker/Dockerfile |
    while read -r path; do [ -e "$path" ] || echo "$path"; done)
[ -z "$missing" ] && pass "deploy/docker/Dockerfile COPY sources exist" ||
    fail "deploy/docker/Dockerfile COPY sources missing: $missing"

# --- Kubernetes -----------------------------------------------------------------------
if python3 -c 'import yaml' 2>/dev/null; then
    run "yaml deploy/kubernetes/*.yaml" python3 - deploy/kubernetes/*.yaml <<'EOF'
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if not docs:
        sys.exit(f"{path}: empty")
    for d in docs:
        if not isinstance(d, dict) or ("kind" not in d and not path.endswith("kustomization.yaml")):
            sys.exit(f"{path}: a document without kind")
EOF
else
    skip "yaml deploy/kubernetes/*.yaml" "python3 has no yaml module"
fi
if command -v kubectl >/dev/null; then
    run "kubectl kustomize deploy/kubernetes" kubectl kustomize deploy/kubernetes
else
    skip "kubectl kustomize deploy/kubernetes" "kubectl not found"
fi

# The ConfigMap's template, rendered by the entrypoint with sample values, must pass
# `outpost check`.
outpost=${OUTPOST_BIN:-}
for candidate in target/debug/outpost target/release/outpost "$(command -v outpost 2>/dev/null)"; do
    [ -n "$outpost" ] && break
    [ -n "$candidate" ] && [ -x "$candidate" ] && outpost=$candidate
done
if [ -n "$outpost" ]; then
    mkdir -p "$tmp/bin"
    ln -s "$(cd "$(dirname "$outpost")" && pwd)/$(basename "$outpost")" "$tmp/bin/outpost"
    awk '/^  outpost.toml.tmpl: \|/ { on = 1; next } on && /^[^ ]/ { on = 0 } on { sub(/^    /, ""); print }' \
        deploy/kubernetes/configmap.yaml >"$tmp/outpost.toml.tmpl"
    run "configmap.yaml template: entrypoint.sh check" \
        env PATH="$tmp/bin:$PATH" OUTPOST_TEMPLATE="$tmp/outpost.toml.tmpl" \
        OUTPOST_CONFIG="$tmp/run/outpost.toml" POD_IP=10.0.0.5 POD_NAME=outpost-0 \
        POD_NAMESPACE=edge OUTPOST_SECRET=0123456789abcdef0123456789abcdef \
        OUTPOST_ADMIN_TOKEN=token sh "$entrypoint" check
else
    skip "configmap.yaml template: outpost check" "no outpost binary (set OUTPOST_BIN)"
fi

echo
if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
