#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers (fuzz/, cargo-fuzz + libFuzzer), one target after
# another on one core at the lowest priority, so the machine stays usable.
#
#   bench/fuzz.sh [MINUTES [TARGET...]]    default: 10 minutes for each of every target
#
# Prints per target the executions, the coverage (libFuzzer's `cov` edges and `ft` features),
# the corpus size and the crashes; exits 1 if any target crashed (the input is kept under
# fuzz/artifacts/TARGET/). The corpus grows in fuzz/corpus/TARGET/ from the committed seeds in
# fuzz/seeds/TARGET/, with the dictionary fuzz/dict/TARGET.dict. Logs: fuzz/logs/TARGET.log.
#
# Runs on stable Rust: cargo-fuzz needs nightly flags, which RUSTC_BOOTSTRAP=1 allows.
# CARGO may name another cargo (a wrapper that serialises builds, say).
set -euo pipefail

minutes=${1:-10}
shift || true
cd "$(dirname "$0")/../fuzz"
cargo=${CARGO:-cargo}
export RUSTC_BOOTSTRAP=1

if ! "$cargo" fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    "$cargo" install cargo-fuzz --locked
fi

# Release with debug assertions (overflow checks included), AddressSanitizer (the default).
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    "$cargo" fuzz build -O -a
    mapfile -t targets < <("$cargo" fuzz list)
else
    for t in "${targets[@]}"; do "$cargo" fuzz build -O -a "$t"; done
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=target/$triple/release

mkdir -p logs
status=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    stamp=$(mktemp)
    log=logs/$t.log
    echo "== $t: ${minutes} min" >&2
    start=$(date +%s)
    rc=0
    nice -n 19 "$bin_dir/$t" \
        -max_total_time=$((minutes * 60)) \
        -dict="dict/$t.dict" \
        -artifact_prefix="artifacts/$t/" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "corpus/$t" "seeds/$t" >"$log" 2>&1 || rc=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=$(find "artifacts/$t" -type f -newer "$stamp" | wc -l)
    rm -f "$stamp"
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        status=1
        echo "   $t: exit $rc; inputs in fuzz/artifacts/$t/; minimise with:" \
            "cargo fuzz tmin $t fuzz/artifacts/$t/<file>" >&2
        grep -m1 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" >&2 || true
    fi
    rows+=("$(printf '%-14s %6s %12s %10s %6s %7s %6s %7s' \
        "$t" "$secs" "${execs:-?}" "$((${execs:-0} / (secs > 0 ? secs : 1)))" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")")
done

printf '%-14s %6s %12s %10s %6s %7s %6s %7s\n' \
    target secs execs execs/s cov ft corpus crashes
printf '%s\n' "${rows[@]}"
exit $status
