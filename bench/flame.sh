#!/usr/bin/env bash
# A flame graph of gatehouse's HTTP hot path: the bench/run.sh "gatehouse" row (keep-alive
# requests with one cached RS256 token, 32 wrk connections, gatehouse on core 0 with one
# worker, wrk and nginx on core 1), sampled by perf with DWARF call stacks and drawn by
# inferno. Run it once per build to compare two builds side by side.
#
# Usage: bash bench/run.sh first (it writes bench/out/: config, nginx.conf, token), then
#        bash bench/flame.sh BIN OUT.svg [TITLE]
# Needs perf (linux-perf) and inferno (cargo install inferno). DURATION (default 10) is the
# sampled window; FREQ (default 499) the sampling rate in Hz.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 svg=$2 title=${3:-"gatehouse HTTP hot path: $(basename "$bin")"}
DURATION=${DURATION:-10} FREQ=${FREQ:-499}
out=bench/out
for tool in perf wrk nginx inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "flame.sh: $tool is required" >&2; exit 1; }
done
token=$(cat "$out/token.txt")
listen=$(sed -n 's/^addr = "\(.*\)"/\1/p' "$out/gatehouse.toml" | sed -n 1p)
admin=$(sed -n 's/^addr = "\(.*\)"/\1/p' "$out/gatehouse.toml" | sed -n 2p)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
taskset -c 1 nginx -c "$PWD/$out/nginx.conf" &
pids+=($!)
GATEHOUSE_RUNTIME__WORKER_THREADS=1 taskset -c 0 "$bin" run --config "$out/gatehouse.toml" >/dev/null 2>"$out/flame.stderr.log" &
gh=$!
pids+=("$gh")
for _ in $(seq 1 150); do curl -sf -o /dev/null "http://$admin/readyz" && break; sleep 0.2; done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://$listen/")
[[ $code == 200 ]] || { echo "flame.sh: gatehouse answered $code to the bench token" >&2; exit 1; }

# Load for the whole window plus a second on each side, so every sample sees steady load.
taskset -c 1 wrk -t1 -c32 -d"$((DURATION + 2))s" -H "Authorization: Bearer $token" "http://$listen/" \
  >"$out/flame.wrk.txt" &
load=$!
sleep 1
perf record -q -F "$FREQ" --call-graph dwarf,16384 -p "$gh" -o "$out/flame.perf.data" -- sleep "$DURATION" 2>/dev/null
wait "$load"
perf script -i "$out/flame.perf.data" 2>/dev/null | inferno-collapse-perf --all >"$out/flame.folded"
inferno-flamegraph --title "$title" --width 1600 --minwidth 1 <"$out/flame.folded" >"$svg"
echo "flame.sh: $svg ($(wc -l <"$out/flame.folded") stacks; wrk: $(sed -n 's/^Requests\/sec: *//p' "$out/flame.wrk.txt") req/s)"
