#!/usr/bin/env bash
# Instructions per request, counted by callgrind (repeatable on a noisy machine, unlike CPU
# time): gatehouse serves N1 and then N2 keep-alive requests with one cached RS256 token to
# the nginx upstream of the last bench/run.sh, and (I(N2) - I(N1)) / (N2 - N1) is printed,
# so start-up and shutdown cancel out. Compare two builds by running it once for each.
#
# Usage: bash bench/run.sh first (it writes bench/out/), then
#        bash bench/callgrind.sh BIN [N1 N2]      e.g. bash bench/callgrind.sh target/release/gatehouse
# BENCH_PATH picks the route: /api/hello (default, one endpoint), /balanced/hello (two
# endpoints, balanced) or /affinity/hub, which first negotiates and then sends the sealed
# SignalR id on every request (the negotiate is in both runs, so it cancels out), or
# /single/hub, which sends the same sealed id to a route with one endpoint and no affinity
# (bench/run.sh's gatehouse_hub row: the base for /affinity/hub).
# BENCH_QUERY is put in front of the query of the other paths.
# BIN `nginx` counts bench/run.sh's nginx_proxy instead (its config, one process, no
# master), serving the same requests on the same path: the floor a plain hop sets.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 n1=${2:-500} n2=${3:-2500}
out=bench/out
token=$(cat "$out/token.txt")
listen=$(sed -n 's/^addr = "\(.*\)"/\1/p' "$out/gatehouse.toml" | sed -n 1p)
admin=$(sed -n 's/^addr = "\(.*\)"/\1/p' "$out/gatehouse.toml" | sed -n 2p)
nginx -c "$PWD/$out/nginx.conf" &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT
if [[ $bin == nginx ]]; then
  # One process, so callgrind follows the worker; its own pid file, so run.sh's is left alone.
  sed -e 's/^master_process on;/master_process off;/' -e "s#^pid .*#pid $PWD/$out/nginx-proxy-cg.pid;#" \
    "$out/nginx-proxy.conf" >"$out/nginx-proxy-cg.conf"
  listen=$(sed -n 's/^ *listen \([0-9.:]*\);/\1/p' "$out/nginx-proxy-cg.conf" | head -n 1)
fi
count() { # count N: instructions of one run serving N requests
  if [[ $bin == nginx ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$1" \
      nginx -c "$PWD/$out/nginx-proxy-cg.conf" >/dev/null 2>&1 &
  else
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$1" "$bin" run --config "$out/gatehouse.toml" >/dev/null 2>&1 &
  fi
  local vp=$!
  local ready=http://$admin/readyz
  [[ $bin == nginx ]] && ready=http://$listen/
  for _ in $(seq 1 300); do curl -s -o /dev/null "$ready" && break; sleep 0.2; done
  local path=${BENCH_PATH:-/api/hello} query="${BENCH_QUERY:+$BENCH_QUERY&}x=[1-$1]" sealed
  if [[ $path == /affinity/* || $path == /single/* ]]; then
    sealed=$(curl -s -X POST -H "Authorization: Bearer $token" \
      "http://$listen/affinity/hub/negotiate?negotiateVersion=1" |
      sed -n 's/.*"connectionToken":"\([^"]*\)".*/\1/p')
    query="id=$sealed&$query"
  fi
  # Every answer must be a 2xx: an expired token.txt would otherwise price its rejection.
  local refused
  refused=$(curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $token" \
    "http://$listen$path?$query" | grep -cv '^2' || true)
  if ((refused > 0)); then
    kill -TERM "$vp"
    wait "$vp" || true
    echo "$refused of $1 answers were not 2xx (has $out/token.txt expired? bench/run.sh mints a new one)" >&2
    exit 1
  fi
  # QUIT is nginx's graceful stop; TERM would end it before callgrind writes its counts.
  kill "-$([[ $bin == nginx ]] && echo QUIT || echo TERM)" "$vp"
  wait "$vp" || true
  sed -n 's/^summary: //p' "$out/callgrind.$1"
}
i1=$(count "$n1")
i2=$(count "$n2")
echo "$bin: $(( (i2 - i1) / (n2 - n1) )) instructions per request"
