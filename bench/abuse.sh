#!/usr/bin/env bash
# Hostile clients against gatehouse, nginx and HAProxy 2.6 in front of one counting upstream.
#
# Each attack (bench/abuse.py) runs against each proxy for HOLD seconds; the table shows
# the proxy's RSS (peak and at the end), how many attacking connections the proxy still
# held at the end, and what the upstream saw (connections opened during the attack, and
# still open at its end). All three proxies get 5 s client timeouts (gatehouse:
# idle_timeout, write_timeout, header_read_timeout 5 s, close_grace 2 s).
#
#   h2_ping_idle    N h2c connections, one request each, then never ACK a PING
#   h2_reset        one h2c connection, N streams each reset 30 ms after its HEADERS
#   h1_slow         N HTTP/1.1 clients that never read a 32 MiB response
#   h2_zero_window  N h2c streams (20 per connection) with a zero initial window
#   ws_fragments    N WebSocket upgrades to /chat, each sending an unfinished ~1 MB first
#                   fragment (gatehouse: a first-message route; the others just tunnel)
#
# RSS and connection counts, not timings: the machine may be shared. Everything listens on
# 127.0.0.1; generated files go to bench/out/.
set -euo pipefail

HOLD=${HOLD:-12}                  # seconds each attack is held (> 5 s timeouts + grace)
READY_TIMEOUT=${READY_TIMEOUT:-30}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
TARGETS=${TARGETS:-gatehouse nginx haproxy}
ATTACKS=${ATTACKS:-"h2_ping_idle:50 h2_reset:1000 h1_slow:50 h2_zero_window:100 ws_fragments:100"}

export PATH="$PATH:/usr/sbin:/sbin"
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT="$BENCH/out"
TPL="$BENCH/templates"
cd "$ROOT"
[[ $GATEHOUSE_BIN == /* ]] || GATEHOUSE_BIN="$ROOT/$GATEHOUSE_BIN"

log() { printf '[abuse %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

stop_all_on_exit

for t in python3 curl ss; do command -v "$t" >/dev/null || die "'$t' is required"; done
for t in nginx haproxy; do
  if [[ " $TARGETS " == *" $t "* ]] && ! command -v "$t" >/dev/null; then
    die "$t is missing: apt-get install -y nginx haproxy"
  fi
done
[[ -x $GATEHOUSE_BIN ]] || die "$GATEHOUSE_BIN missing: cargo build --release"
mkdir -p "$OUT/nginx-tmp"

free_port UP_PORT
python3 "$BENCH/abuse.py" upstream "$UP_PORT" &
UP_PID=$!
PIDS+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/_count" "$UP_PID" upstream || die "upstream did not start"

# upstream_counts: "accepted open" as the upstream counts them.
upstream_counts() { curl -s --max-time 5 "http://127.0.0.1:$UP_PORT/_count"; }

# start_target NAME: sets TARGET_PID (the process whose RSS counts, comma-separated for
# nginx master + worker), H1_PORT and H2_PORT.
start_target() {
  free_port H1_PORT
  H2_PORT=$H1_PORT
  case $1 in
    gatehouse)
      free_port admin
      render "$TPL/gatehouse-abuse.toml.tmpl" "$OUT/gatehouse-abuse.toml" PORT="$H1_PORT" \
        ADMIN_PORT="$admin" UPSTREAM_PORT="$UP_PORT"
      GATEHOUSE_BENCH_HS=$(head -c 32 /dev/urandom | base64 -w0) \
        "$GATEHOUSE_BIN" run --config "$OUT/gatehouse-abuse.toml" >/dev/null 2>"$OUT/gatehouse-abuse.log" &
      TARGET_PID=$!
      ;;
    nginx)
      free_port H2_PORT
      render "$TPL/nginx-abuse.conf.tmpl" "$OUT/nginx-abuse.conf" PORT="$H1_PORT" \
        H2_PORT="$H2_PORT" UPSTREAM_PORT="$UP_PORT" OUT="$OUT"
      nginx -c "$OUT/nginx-abuse.conf" -p "$OUT" -e "$OUT/nginx-abuse-error.log" &
      TARGET_PID=$!
      ;;
    haproxy)
      free_port H2_PORT
      render "$TPL/haproxy-abuse.cfg.tmpl" "$OUT/haproxy-abuse.cfg" PORT="$H1_PORT" \
        H2_PORT="$H2_PORT" UPSTREAM_PORT="$UP_PORT"
      haproxy -db -f "$OUT/haproxy-abuse.cfg" 2>"$OUT/haproxy-abuse.log" &
      TARGET_PID=$!
      ;;
  esac
  PIDS+=("$TARGET_PID")
  wait_http "http://127.0.0.1:$H1_PORT/" "$TARGET_PID" "$1" 200 || die "$1 did not start"
  RSS_PIDS=$TARGET_PID
  if [[ $1 == nginx ]]; then
    RSS_PIDS+=",$(pgrep -P "$TARGET_PID" | paste -sd,)"
  fi
}

ROWS=()
for target in $TARGETS; do
  start_target "$target"
  for spec in $ATTACKS; do
    attack=${spec%%:*} n=${spec##*:}
    port=$H2_PORT
    [[ $attack == h1_slow || $attack == ws_fragments ]] && port=$H1_PORT
    read -r acc_before _ <<<"$(upstream_counts)"
    log "$target: $attack x$n for ${HOLD}s"
    result=$(python3 "$BENCH/abuse.py" "$attack" 127.0.0.1 "$port" "$n" "$HOLD" "$RSS_PIDS")
    read -r acc_after open_after <<<"$(upstream_counts)"
    ROWS+=("$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
extra = ""
if "streams_reset" in r:
    extra = " (%d reset, GOAWAY %s)" % (r["streams_reset"], "yes" if r["goaway"] else "no")
print("| %s | %s | %d | %.0f | %.0f | %d / %d | %d | %d |%s" % (sys.argv[2], sys.argv[3], int(sys.argv[4]),
      r["peak_rss_kb"] / 1024, r["end_rss_kb"] / 1024, r["client_open_at_end"], r["client_open_at_start"],
      int(sys.argv[5]), int(sys.argv[6]), extra))
' "$result" "$attack" "$target" "$n" "$((acc_after - acc_before))" "$open_after")")
    # Let the proxy settle before the next attack: connections it held still close.
    sleep 3
  done
  stop_pid "$TARGET_PID"
done

printf '\n| attack | proxy | N | peak RSS MB | end RSS MB | client conns the proxy holds at end / opened | upstream conns opened | upstream conns open at end |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
printf '%s\n' "${ROWS[@]}"
