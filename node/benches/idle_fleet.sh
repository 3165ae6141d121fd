#!/usr/bin/env bash
# Idle memory and CPU of real `osmoda run` processes on loopback: one node
# alone, then the same node as one of N (it invites the others, which join
# and start). Each phase waits SETTLE seconds, then reads VmRSS and
# utime+stime from /proc over a WINDOW-second window.
#
#   node/benches/idle_fleet.sh target/dist/osmoda [N=10] [WINDOW=60] [SETTLE=60]
set -euo pipefail
bin=$(realpath "${1:?usage: $0 PATH_TO_OSMODA [N] [WINDOW] [SETTLE]}")
n=${2:-10}
window=${3:-60}
settle=${4:-60}
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
export RUST_LOG=info OSMODA_NO_MDNS=1
unset OSMODA_DATA

start() { # name
    "$bin" --data "$dir/$1" run --listen /ip4/127.0.0.1/tcp/0 \
        --listen /ip4/127.0.0.1/udp/0/quic-v1 >"$dir/$1.log" 2>&1 &
    pids+=($!)
    "$bin" --data "$dir/$1" status --wait >/dev/null
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Prints "pid rss_kib cpu_percent" per process over the window.
measure() {
    local -a before=()
    for pid in "$@"; do before+=("$(ticks "$pid")"); done
    sleep "$window"
    local i=0
    for pid in "$@"; do
        local after
        after=$(ticks "$pid")
        awk -v p="$pid" -v r="$(rss "$pid")" -v d=$((after - before[i])) -v t="$tck" -v w="$window" \
            'BEGIN { printf "%s %d %.2f\n", p, r, 100 * d / t / w }'
        i=$((i + 1))
    done
}

"$bin" --data "$dir/n0" fleet create --name bench --node-name n0 >/dev/null
start n0
sleep "$settle"
echo "alone: pid rss_kib cpu_percent"
measure "${pids[0]}"

for i in $(seq 1 $((n - 1))); do
    token=$("$bin" --data "$dir/n0" fleet invite --name "n$i" 2>/dev/null)
    "$bin" --data "$dir/n$i" join "$token" >/dev/null
done
for i in $(seq 1 $((n - 1))); do start "n$i"; done
peers=$("$bin" --data "$dir/n0" --json peers --wait $((n - 1)) | grep -c '"node_id"' || true)
echo "fleet of $n: n0 has $peers peers"
sleep "$settle"
echo "one of $n (n0 first): pid rss_kib cpu_percent"
measure "${pids[@]}" | tee "$dir/fleet.txt"
awk '{ r += $2; c += $3; if ($2 > mr) mr = $2; if ($3 > mc) mc = $3 }
     END { printf "mean rss %.0f KiB (max %d), mean cpu %.2f%% (max %.2f%%)\n", r / NR, mr, c / NR, mc }' "$dir/fleet.txt"
