#!/usr/bin/env bash
# gatehouse WebSocket benchmark.
#
# Three measurements, each against the same echo upstream (ws-load serve):
#   connect  new authenticated WebSocket connections: connect, upgrade, one 64-byte text
#            message and its echo, close. Connections/s and proxy CPU-µs per connection.
#              direct            ws-load -> echo server (CPU column = the echo server)
#              nginx             ws-load -> nginx (plain proxy, no authentication) -> echo
#              haproxy_jwt       ws-load -> HAProxy (jwt_verify on ?access_token=) -> echo
#              gatehouse         ws-load -> gatehouse (?access_token=, same token every time)
#              gatehouse_ticket  POST /.gatehouse/ticket, then upgrade with ?ticket=
#              gatehouse_fresh   a token gatehouse has never seen on every upgrade (only when
#                                bench/run.sh has minted bench/out/fresh-tokens.txt)
#              gatehouse_base    the gatehouse row with BASELINE_BIN (before/after in one run)
#   echo     64-byte round trips over 100 open connections, one message in flight each:
#            messages/s and proxy CPU-µs per relayed message (each direction counts one)
#   hold     RSS (VmRSS) of the proxy before and after opening ~10 000 idle connections
#
# The proxy runs on core 0, the load generator and the echo server on core 1. Everything
# listens on 127.0.0.1 only. Generated files go to bench/out/ (gitignored).
# See bench/README.md ("WebSocket benchmark") for how to read the figures.
set -euo pipefail

# ---------------------------------------------------------------- settings
DURATION=${DURATION:-10}                # seconds per measured connect / echo run
WARMUP=${WARMUP:-1}                     # unmeasured seconds of load before each run
ROUNDS=${ROUNDS:-3}                     # every run once per round; tables show medians
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-32}  # connect: units in flight at once
ECHO_CONNECTIONS=${ECHO_CONNECTIONS:-100}       # echo: open connections
MSG_BYTES=${MSG_BYTES:-64}              # text message size
HOLD_CONNECTIONS=${HOLD_CONNECTIONS:-10000}     # hold: wanted; capped to what fits ulimit -n
HOLD_CONCURRENCY=${HOLD_CONCURRENCY:-100}       # hold: connections being opened at once
HOLD_TIMEOUT=${HOLD_TIMEOUT:-120}       # hold: seconds allowed to open them all
HOLD_SETTLE=${HOLD_SETTLE:-2}           # hold: seconds between READY and the RSS reading
TESTS=${TESTS:-connect echo hold}
CONNECT_TARGETS=${CONNECT_TARGETS:-direct nginx haproxy_jwt gatehouse gatehouse_ticket}
ECHO_TARGETS=${ECHO_TARGETS:-direct nginx haproxy_jwt gatehouse}
HOLD_TARGETS=${HOLD_TARGETS:-nginx haproxy_jwt gatehouse}
FRESH=${FRESH:-auto}                    # gatehouse_fresh row: auto (if tokens exist) / 1 / 0
TOKEN_TTL=${TOKEN_TTL:-3600}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$LOAD_CPU} # the echo server; kept off the proxy's core
ACCESS_LOG=${ACCESS_LOG:-/dev/null}
READY_TIMEOUT=${READY_TIMEOUT:-30}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
BUILD=${BUILD:-auto}                    # auto: cargo build gatehouse when stale; 0: never
BASELINE_BIN=${BASELINE_BIN:-}          # another gatehouse binary, measured as gatehouse_base

ISSUER="https://bench.example/"
AUDIENCE="bench"

export PATH="$PATH:/usr/sbin:/sbin"

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT="$BENCH/out"
TPL="$BENCH/templates"
WSLOAD_DIR="$BENCH/ws-load"
WSLOAD="$WSLOAD_DIR/target/release/ws-load"
cd "$ROOT"
DEFAULT_BIN=0
[[ $GATEHOUSE_BIN == target/release/gatehouse ]] && DEFAULT_BIN=1
[[ $GATEHOUSE_BIN == /* ]] || GATEHOUSE_BIN="$ROOT/$GATEHOUSE_BIN"
[[ -z $BASELINE_BIN || $BASELINE_BIN == /* ]] || BASELINE_BIN="$ROOT/$BASELINE_BIN"

log() { printf '[ws-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# die, process bookkeeping, ports, templates, readiness, CPU accounting: shared.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

for v in DURATION WARMUP ROUNDS CONNECT_CONCURRENCY ECHO_CONNECTIONS MSG_BYTES HOLD_CONNECTIONS \
  HOLD_CONCURRENCY HOLD_TIMEOUT HOLD_SETTLE TOKEN_TTL READY_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && CONNECT_CONCURRENCY > 0 && ECHO_CONNECTIONS > 0 && HOLD_CONNECTIONS > 0)) \
  || die "DURATION, ROUNDS, CONNECT_CONCURRENCY, ECHO_CONNECTIONS and HOLD_CONNECTIONS must be > 0"

# ---------------------------------------------------------------- processes and teardown
# Stops every process in PIDS (lib.sh), newest first, whatever ends the script.
stop_all_on_exit

# ---------------------------------------------------------------- tools and builds
ensure_tools() {
  if ! command -v haproxy >/dev/null; then
    log "missing: haproxy; installing it with apt-get"
    [[ $(id -u) == 0 ]] || die "need root to apt-get install haproxy"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy
  fi
  local t
  for t in cargo openssl curl taskset ss base64 getconf sha256sum; do
    command -v "$t" >/dev/null || die "'$t' is required but not installed"
  done
}

# The load generator is built every time (a no-op when nothing changed).
build_wsload() {
  log "building ws-load (cargo build --release --manifest-path bench/ws-load/Cargo.toml)"
  cargo build --release --manifest-path "$WSLOAD_DIR/Cargo.toml" >"$OUT/ws-load.build.log" 2>&1 \
    || { tail -n 30 "$OUT/ws-load.build.log" >&2; die "building ws-load failed"; }
}


# ---------------------------------------------------------------- helpers

# wait_line FILE REGEX PID TIMEOUT: until FILE has a line matching REGEX (0), the process
# exits (1) or TIMEOUT seconds pass (1).
wait_line() {
  local file=$1 re=$2 pid=$3 deadline=$((SECONDS + $4))
  while ((SECONDS < deadline)); do
    grep -qE "$re" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { grep -qE "$re" "$file" 2>/dev/null; return; }
    sleep 0.1
  done
  return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# kv KEY LINE: the value of KEY=value in a ws-load output line.
kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' <<<"$2"; }

# ---------------------------------------------------------------- keys and tokens
# Same key, token format and claims as bench/run.sh (the key in bench/out is shared, so
# the fresh tokens run.sh mints are valid here too).
KEY="$OUT/key.pem"
PUB="$OUT/pub.pem"
JWT_HEADER='{"alg":"RS256","typ":"JWT","kid":"bench"}'
CLAIMS_FMT='{"iss":"%s","aud":"%s","sub":"bench-user","scope":"api","iat":%d,"exp":%d,"jti":"%s"}'

make_keys() {
  if [[ ! -s $KEY ]]; then
    log "generating RSA 2048 key pair in $OUT"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY" 2>/dev/null
    rm -f "$OUT/fresh-tokens.txt" "$OUT/fresh-tokens.meta"
  fi
  openssl pkey -in "$KEY" -pubout -out "$PUB"
}

mint_token() {
  local aud=${1:-$AUDIENCE} age=${2:-0} now exp jti h p s claims
  now=$(($(date +%s) - age))
  exp=$((now + TOKEN_TTL))
  new_jti jti
  printf -v claims "$CLAIMS_FMT" "$ISSUER" "$aud" "$now" "$exp" "$jti"
  h=$(printf '%s' "$JWT_HEADER" | b64url)
  p=$(printf '%s' "$claims" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$KEY" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}

# fresh_tokens_ok: bench/run.sh's first-seen tokens exist, match our key and outlive the run.
fresh_tokens_ok() {
  local file="$OUT/fresh-tokens.txt" meta="$OUT/fresh-tokens.meta" m_count m_exp m_key
  [[ -s $file && -s $meta ]] || return 1
  read -r m_count m_exp m_key <"$meta"
  [[ $m_key == "$(sha256sum "$PUB" | cut -c1-16)" ]] && ((m_exp > $(date +%s) + 3600))
}

# ---------------------------------------------------------------- servers
ECHO_PID="" ECHO_PORT=""

start_echo() {
  free_port ECHO_PORT
  taskset -c "$UPSTREAM_CPU" "$WSLOAD" serve --port "$ECHO_PORT" >"$OUT/ws-echo.log" 2>&1 &
  ECHO_PID=$!
  PIDS+=("$ECHO_PID")
  wait_line "$OUT/ws-echo.log" '^READY ' "$ECHO_PID" "$READY_TIMEOUT" \
    || { cat "$OUT/ws-echo.log" >&2; die "the echo server did not start"; }
  measured_pid_ok "$ECHO_PID" echo || die "wrong echo server PID"
  log "echo server on 127.0.0.1:$ECHO_PORT (pid $ECHO_PID, cpu $UPSTREAM_CPU)"
}

# start_haproxy NAME MAXCONN: sets HAPROXY_PORT and HAPROXY_PID, or returns 1.
start_haproxy() {
  local name=$1 maxconn=$2 cfg="$OUT/$1.cfg"
  free_port HAPROXY_PORT
  render "$TPL/haproxy-ws.cfg.tmpl" "$cfg" PORT="$HAPROXY_PORT" ECHO_PORT="$ECHO_PORT" \
    PUB_PEM="$PUB" ISSUER="$ISSUER" AUDIENCE="$AUDIENCE" MAXCONN="$maxconn"
  if ! haproxy -c -q -f "$cfg" >"$OUT/$name.check.log" 2>&1; then
    cat "$OUT/$name.check.log" >&2
    log "$name: HAProxy rejected $cfg"
    return 1
  fi
  # -db: foreground, one process, so $! is the PID whose CPU and memory we read.
  taskset -c "$PROXY_CPU" haproxy -db -f "$cfg" >"$OUT/$name.log" 2>&1 &
  HAPROXY_PID=$!
  PIDS+=("$HAPROXY_PID")
  wait_http "http://127.0.0.1:$HAPROXY_PORT/ws" "$HAPROXY_PID" "$name" \
    || { tail -n 20 "$OUT/$name.log" >&2; return 1; }
  measured_pid_ok "$HAPROXY_PID" "$name" || return 1
  log "$name on 127.0.0.1:$HAPROXY_PORT (pid $HAPROXY_PID, cpu $PROXY_CPU, maxconn $maxconn)"
}

# start_nginx NAME CONNS: a plain nginx WebSocket proxy; sets NGINX_PORT and NGINX_PID.
start_nginx() {
  local name=$1 conns=$2 cfg="$OUT/$1.conf" nofile
  nofile=$(ulimit -n)
  [[ $nofile == unlimited ]] && nofile=1048576
  free_port NGINX_PORT
  mkdir -p "$OUT/nginx-tmp"
  render "$TPL/nginx-ws.conf.tmpl" "$cfg" PORT="$NGINX_PORT" ECHO_PORT="$ECHO_PORT" \
    OUT="$OUT" NAME="$name" CONNS="$conns" NOFILE="$nofile"
  taskset -c "$PROXY_CPU" nginx -c "$cfg" -p "$OUT" -e "$OUT/$name-error.log" >"$OUT/$name.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_http "http://127.0.0.1:$NGINX_PORT/ws" "$NGINX_PID" "$name" \
    || { tail -n 20 "$OUT/$name-error.log" >&2; return 1; }
  measured_pid_ok "$NGINX_PID" "$name" || return 1
  log "$name on 127.0.0.1:$NGINX_PORT (pid $NGINX_PID, cpu $PROXY_CPU, worker_connections $conns)"
}

GH_PID="" GH_PORT="" GH_ADMIN_PORT=""
GH_ENV=(env -u GATEHOUSE_BIN GATEHOUSE_RUNTIME__WORKER_THREADS=1)

gatehouse_config() {
  free_port GH_PORT
  free_port GH_ADMIN_PORT
  render "$TPL/gatehouse-ws.toml.tmpl" "$OUT/gatehouse-ws.toml" PORT="$GH_PORT" \
    ADMIN_PORT="$GH_ADMIN_PORT" ECHO_PORT="$ECHO_PORT" PUB_PEM="$PUB" \
    ISSUER="$ISSUER" AUDIENCE="$AUDIENCE"
}

# A fresh gatehouse for every run (empty token cache, ticket store and rate limiter).
# start_gatehouse [BIN]: the binary under test, or another one (gatehouse_base).
start_gatehouse() {
  local bin=${1:-$GATEHOUSE_BIN}
  if [[ -z ${GH_CMD_LOGGED:-} ]]; then
    log "gatehouse command: $(printf '%q ' "${GH_ENV[@]}" taskset -c "$PROXY_CPU" "$bin" run --config "$OUT/gatehouse-ws.toml")>$ACCESS_LOG"
    GH_CMD_LOGGED=1
  fi
  "${GH_ENV[@]}" taskset -c "$PROXY_CPU" "$bin" run --config "$OUT/gatehouse-ws.toml" \
    >"$ACCESS_LOG" 2>>"$OUT/gatehouse-ws.stderr.log" &
  GH_PID=$!
  PIDS+=("$GH_PID")
  if ! wait_http "http://127.0.0.1:$GH_ADMIN_PORT/readyz" "$GH_PID" gatehouse 200; then
    tail -n 20 "$OUT/gatehouse-ws.stderr.log" >&2
    stop_gatehouse
    return 1
  fi
  measured_pid_ok "$GH_PID" gatehouse || { stop_gatehouse; return 1; }
}

# ---------------------------------------------------------------- preflight
probe() {
  timeout 30 taskset -c "$LOAD_CPU" "$WSLOAD" probe --msg-bytes "$MSG_BYTES" "$@" 2>>"$OUT/ws-probe.err" || true
}

# ws_preflight NAME URL AUTH [TICKET_URL]: a valid token upgrades and echoes; when the
# target checks tokens, none / tampered / expired / wrong-audience are refused; with a
# ticket endpoint, a ticket upgrades once and only once, and a bad token gets no ticket.
ws_preflight() {
  local name=$1 url=$2 auth=$3 turl=${4:-} ok none bad expired aud t tb
  ok=$(probe --url "$url" --auth query --token-file "$OUT/token.txt")
  if [[ $auth == no ]]; then
    log "$name preflight: $ok"
    [[ $(kv status "$ok") == 101 && $(kv echo "$ok") == ok && $(kv close "$ok") == ok ]]
    return
  fi
  none=$(kv status "$(probe --url "$url" --auth none)")
  bad=$(kv status "$(probe --url "$url" --auth query --token "$TAMPERED")")
  expired=$(kv status "$(probe --url "$url" --auth query --token "$EXPIRED")")
  aud=$(kv status "$(probe --url "$url" --auth query --token "$WRONG_AUD")")
  log "$name preflight: valid: $ok | none=$none tampered=$bad expired=$expired wrong-aud=$aud"
  [[ $(kv status "$ok") == 101 && $(kv echo "$ok") == ok && $(kv close "$ok") == ok && $none == 401 ]] \
    && denied "$bad" && denied "$expired" && denied "$aud" || return 1
  if [[ -n $turl ]]; then
    t=$(probe --url "$url" --auth ticket --ticket-url "$turl" --token-file "$OUT/token.txt" --reuse-ticket)
    tb=$(kv ticket_status "$(probe --url "$url" --auth ticket --ticket-url "$turl" --token "$TAMPERED")")
    log "$name preflight: ticket: $t | ticket for a tampered token: $tb"
    [[ $(kv ticket_status "$t") == 201 && $(kv status "$t") == 101 && $(kv echo "$t") == ok ]] \
      && denied "$(kv reuse_status "$t")" && denied "$tb"
  fi
}

# ---------------------------------------------------------------- runs
declare -A SKIP
FLAGGED=0
CONNECT_CSV="$OUT/ws-connect.csv"
ECHO_CSV="$OUT/ws-echo.csv"
HOLD_CSV="$OUT/ws-hold.csv"
HAPROXY_PORT="" HAPROXY_PID=""
HA_PORT="" HA_PID=""   # the long-running HAProxy for the connect and echo runs
NG_PORT="" NG_PID=""   # the long-running nginx for the connect and echo runs
NGINX_PORT="" NGINX_PID=""

# gh_up ROUND TEST TARGET: start gatehouse and check it; 1 when the run is skipped.
gh_up() {
  local bin=$GATEHOUSE_BIN
  [[ $3 == gatehouse_base ]] && bin=$BASELINE_BIN
  if ! start_gatehouse "$bin"; then
    log "FLAG $2/$3 round $1: gatehouse did not become ready"
    SKIP[$2/$3]="did not start"
    FLAGGED=1
    return 1
  fi
  if ! ws_preflight "gatehouse" "ws://127.0.0.1:$GH_PORT/ws" yes "http://127.0.0.1:$GH_PORT/.gatehouse/ticket"; then
    log "FLAG $2/$3 round $1: preflight failed"
    SKIP[$2/$3]="preflight failed"
    FLAGGED=1
    stop_gatehouse
    return 1
  fi
}

# target_args TARGET: sets URL, PID and AUTH_ARGS for a connect or echo run.
target_args() {
  AUTH_ARGS=(--auth query --token-file "$OUT/token.txt")
  case $1 in
    direct) URL="ws://127.0.0.1:$ECHO_PORT/ws" PID=$ECHO_PID ;;
    nginx) URL="ws://127.0.0.1:$NG_PORT/ws" PID=$NG_PID ;;
    haproxy_jwt) URL="ws://127.0.0.1:$HA_PORT/ws" PID=$HA_PID ;;
    gatehouse*)
      URL="ws://127.0.0.1:$GH_PORT/ws" PID=$GH_PID
      case $1 in
        gatehouse_ticket)
          AUTH_ARGS=(--auth ticket --token-file "$OUT/token.txt"
            --ticket-url "http://127.0.0.1:$GH_PORT/.gatehouse/ticket") ;;
        gatehouse_fresh) AUTH_ARGS+=(--fresh-tokens "$OUT/fresh-tokens.txt") ;;
      esac
      ;;
  esac
}

# run_load ROUND TEST TARGET: one connect or echo run, one line in its CSV.
run_load() {
  local round=$1 test=$2 t=$3 raw out line ok=1 units rate p99 errors secs ticks pt ut lt st
  local cpu_us cpu_pct up_us other note="" exhausted f
  if [[ $t == gatehouse* ]]; then gh_up "$round" "$test" "$t" || return 0; fi
  target_args "$t"
  raw="$OUT/ws/r${round}-$test-$t.txt"
  local cmd=("$WSLOAD" "$test" --url "$URL" "${AUTH_ARGS[@]}" --msg-bytes "$MSG_BYTES"
    -d "$DURATION" --warmup "$WARMUP" --cpu-pid "$PID" --cpu-pid "$ECHO_PID")
  if [[ $test == connect ]]; then
    cmd+=(-c "$CONNECT_CONCURRENCY")
  else
    cmd+=(-c "$ECHO_CONNECTIONS")
  fi
  # timeout: the tool stops itself; the margin only catches a hang.
  out=$(timeout $((WARMUP + DURATION + 120)) taskset -c "$LOAD_CPU" "${cmd[@]}" 2>&1) || ok=0
  [[ $t == gatehouse* ]] && stop_gatehouse
  printf '%s\n' "$out" >"$raw"
  line=$(grep '^result ' <<<"$out" || true)
  secs=$(kv elapsed_s "$line")
  rate=$(kv rate "$line")
  p99=$(kv p99_ms "$line")
  errors=$(kv errors "$line")
  # cpu_ticks=proxy,echo,ws-load,whole machine (see ws-load's all_ticks).
  ticks=$(kv cpu_ticks "$line")
  IFS=, read -r pt ut lt st <<<"${ticks:--,-,-,-}"
  if [[ $test == connect ]]; then units=$(kv units "$line"); else units=$(kv relayed_messages "$line"); fi
  if ((ok == 0)) || [[ -z $line || -z $units || $pt == - || -z $pt ]] || ((units == 0)); then
    log "FLAG $test/$t round $round: the load generator or the proxy failed, see $raw"
    FLAGGED=1
    return 0
  fi
  cpu_us=$(awk -v t="$pt" -v hz="$CLK_TCK" -v n="$units" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
  cpu_pct=$(awk -v t="$pt" -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", t / hz / s * 100 }')
  up_us=$(awk -v t="$ut" -v hz="$CLK_TCK" -v n="$units" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
  # Everything else that ran on the machine in the window, in % of one core.
  [[ $t == direct ]] && f=0 || f=$pt
  other=$(awk -v s="$st" -v a="$f" -v b="$ut" -v c="$lt" -v hz="$CLK_TCK" -v secs="$secs" \
    'BEGIN { o = (s - a - b - c) / hz / secs * 100; printf "%.0f", o < 0 ? 0 : o }')
  exhausted=$(kv exhausted "$line")
  [[ $exhausted == 1 ]] && note="fresh tokens ran out after ${secs}s"
  if ((errors > 0)); then
    log "FLAG $test/$t round $round: $errors errors (see $raw)"
    FLAGGED=1
  fi
  if [[ $test == connect ]]; then
    echo "$round,$t,$rate,$p99,$units,$cpu_us,$cpu_pct,$errors,$up_us,$other,$note" >>"$CONNECT_CSV"
    log "$(printf 'connect %-16s r%s %9s conn/s  p99 %7s ms  %7s CPU-us/conn  CPU %3s%%  other %3s%%  errors %s %s' \
      "$t" "$round" "$rate" "$p99" "$cpu_us" "$cpu_pct" "$other" "$errors" "$note")"
  else
    echo "$round,$t,$rate,$p99,$units,$cpu_us,$cpu_pct,$errors,$up_us,$other,$(kv connections "$line")" >>"$ECHO_CSV"
    log "$(printf 'echo    %-16s r%s %9s rt/s    p99 %7s ms  %7s CPU-us/msg   CPU %3s%%  other %3s%%  errors %s' \
      "$t" "$round" "$rate" "$p99" "$cpu_us" "$cpu_pct" "$other" "$errors")"
  fi
}

# run_hold ROUND TARGET: RSS of a fresh proxy before and after HOLD_N idle connections.
run_hold() {
  local round=$1 t=$2 pid url raw loader rss0 rss1 rss2 fd0 fd1 fd2 ready opened failed open_s
  local closed_line closed="" ws_open="-" i per
  case $t in
    nginx)
      start_nginx nginx-ws-hold $((2 * HOLD_N + 2048)) || { SKIP[hold/$t]="did not start"; FLAGGED=1; return 0; }
      pid=$NGINX_PID
      url="ws://127.0.0.1:$NGINX_PORT/ws"
      if ! ws_preflight "nginx-ws-hold" "$url" no; then
        log "FLAG hold/$t round $round: preflight failed"
        SKIP[hold/$t]="preflight failed"; FLAGGED=1; stop_pid "$pid"; return 0
      fi
      ;;
    haproxy_jwt)
      start_haproxy haproxy-ws-hold "$HOLD_MAXCONN" || { SKIP[hold/$t]="did not start"; FLAGGED=1; return 0; }
      pid=$HAPROXY_PID
      url="ws://127.0.0.1:$HAPROXY_PORT/ws"
      if ! ws_preflight "haproxy-ws-hold" "$url" yes; then
        log "FLAG hold/$t round $round: preflight failed"
        SKIP[hold/$t]="preflight failed"; FLAGGED=1; stop_pid "$pid"; return 0
      fi
      ;;
    gatehouse | gatehouse_base)
      gh_up "$round" hold "$t" || return 0
      pid=$GH_PID
      url="ws://127.0.0.1:$GH_PORT/ws"
      ;;
  esac
  sleep 0.5
  rss0=$(rss_kib "$pid")
  fd0=$(fd_count "$pid")
  raw="$OUT/ws/r${round}-hold-$t.txt"
  taskset -c "$LOAD_CPU" "$WSLOAD" hold --url "$url" --auth query --token-file "$OUT/token.txt" \
    -n "$HOLD_N" -c "$HOLD_CONCURRENCY" --open-timeout "$HOLD_TIMEOUT" >"$raw" 2>&1 &
  loader=$!
  PIDS+=("$loader")
  if ! wait_line "$raw" '^READY ' "$loader" $((HOLD_TIMEOUT + 30)); then
    log "FLAG hold/$t round $round: the connections did not open (see $raw)"
    FLAGGED=1
    stop_pid "$loader" 60
    if [[ $t == gatehouse* ]]; then stop_gatehouse; else stop_pid "$pid"; fi
    return 0
  fi
  ready=$(grep -m1 '^READY ' "$raw")
  opened=$(kv opened "$ready")
  failed=$(kv failed "$ready")
  open_s=$(kv elapsed_s "$ready")
  sleep "$HOLD_SETTLE"
  rss1=$(rss_kib "$pid")
  fd1=$(fd_count "$pid")
  if [[ $t == gatehouse* ]]; then
    ws_open=$(curl -s --max-time 5 "http://127.0.0.1:$GH_ADMIN_PORT/metrics" \
      | awk '/^gatehouse_websockets_open/ { s += $NF } END { print s + 0 }')
  fi
  # The loader closes every connection cleanly on SIGTERM; give it time to.
  stop_pid "$loader" 60
  closed_line=$(grep -m1 '^CLOSED ' "$raw" || true)
  closed=$(kv closed "$closed_line")
  # Wait (bounded) until the proxy has let go of the connections, then read RSS again.
  for ((i = 0; i < 300; i++)); do
    fd2=$(fd_count "$pid")
    ((fd2 <= fd0 + 4)) && break
    sleep 0.1
  done
  sleep 0.5
  rss2=$(rss_kib "$pid")
  if [[ $t == gatehouse* ]]; then stop_gatehouse; else stop_pid "$pid"; fi
  per=$(awk -v a="$rss0" -v b="$rss1" -v n="$opened" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n; else print "" }')
  if ((failed > 0 || opened < HOLD_N)); then
    log "FLAG hold/$t round $round: $opened of $HOLD_N opened, $failed failed (see $raw)"
    FLAGGED=1
  fi
  if ((fd1 - fd0 < 2 * opened * 99 / 100)); then
    log "FLAG hold/$t round $round: the proxy holds $((fd1 - fd0)) new fds for $opened connections (expected ~2 per connection)"
    FLAGGED=1
  fi
  echo "$round,$t,$opened,$failed,$open_s,$rss0,$rss1,$rss2,$per,$fd0,$fd1,$fd2,$ws_open,${closed:-}" >>"$HOLD_CSV"
  log "$(printf 'hold    %-16s r%s %6s conns  RSS %7s -> %7s KiB (%s KiB/conn), after close %7s KiB  fds %s -> %s  ws_open %s  opened in %ss' \
    "$t" "$round" "$opened" "$rss0" "$rss1" "$per" "$rss2" "$fd0" "$fd1" "$ws_open" "$open_s")"
}

# ---------------------------------------------------------------- report
median() {
  sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) print "";
    else if (NR % 2) print a[(NR + 1) / 2];
    else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
col_median() { awk -F, -v t="$2" -v c="$3" 'NR > 1 && $2 == t { print $c }' "$1" | median; }
col_sum() { awk -F, -v t="$2" -v c="$3" 'NR > 1 && $2 == t { s += $c } END { print s + 0 }' "$1"; }
runs_of() { awk -F, -v t="$2" 'NR > 1 && $2 == t' "$1" | wc -l; }
ratio() {
  if [[ -n $1 && -n $2 ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'
  else
    echo "n/a"
  fi
}
# verdict VALUE LIMIT: "met" when VALUE <= LIMIT.
verdict() {
  [[ -n $1 && -n $2 ]] || { echo "not measured"; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "**met**" : "**not met**") }'
}

report() {
  local md="$OUT/ws-results.md" t runs label base a b
  {
    echo "# gatehouse WebSocket benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r)."
    echo "Proxy on core ${PROXY_CPU} (HAProxy nbthread 1, gatehouse 1 worker thread); ws-load (tokio-tungstenite, one thread) on core ${LOAD_CPU}; echo server (ws-load serve) on core ${UPSTREAM_CPU}. $(haproxy -v | head -n1 | cut -d' ' -f1-3)."
    echo "gatehouse $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$( [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo " (working tree with uncommitted changes)"), binary built $(date -r "$GATEHOUSE_BIN" '+%F %H:%M' 2>/dev/null || echo '?'); restarted before every run; access log to ${ACCESS_LOG}.${GH_NOTE:+ **Note: $GH_NOTE.**}"
    echo "${ROUNDS} rounds, interleaved; medians shown. ${DURATION}s measured + ${WARMUP}s warm-up per connect/echo run. Messages: ${MSG_BYTES}-byte text frames."
    if [[ " $TESTS " == *" connect "* ]]; then
      base=$(col_median "$CONNECT_CSV" haproxy_jwt 6)
      nbase=$(col_median "$CONNECT_CSV" nginx 6)
      echo
      echo "## New authenticated connections"
      echo
      echo "One unit = TCP connect, upgrade, one ${MSG_BYTES}-byte message and its echo, close handshake; ${CONNECT_CONCURRENCY} units in flight."
      echo
      echo "| target | credential | conn/s | p99 ms | CPU-µs/conn | proxy CPU % | CPU vs HAProxy jwt_verify | CPU vs nginx plain | other load % | errors | runs |"
      echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      for t in $CONNECT_TARGETS; do
        runs=$(runs_of "$CONNECT_CSV" "$t")
        case $t in
          direct) label="direct (CPU = echo server)"; cred="?access_token= (not checked)" ;;
          nginx) label="nginx"; cred="?access_token= (not checked)" ;;
          gatehouse_base) label="gatehouse_base"; cred="as gatehouse, BASELINE_BIN" ;;
          haproxy_jwt) label="haproxy_jwt"; cred="?access_token=, jwt_verify every time" ;;
          gatehouse) label="gatehouse"; cred="?access_token=, same token (cache hits)" ;;
          gatehouse_ticket) label="gatehouse_ticket"; cred="POST ticket (keep-alive), then ?ticket=" ;;
          gatehouse_fresh) label="gatehouse_fresh"; cred="?access_token=, a new token every time" ;;
          *) label=$t; cred="" ;;
        esac
        if ((runs == 0)); then
          echo "| $label | $cred | – | – | – | – | – | – | – | – | 0 (${SKIP[connect/$t]:-no run}) |"
          continue
        fi
        a=$(col_median "$CONNECT_CSV" "$t" 6)
        local errs flag=""
        errs=$(col_sum "$CONNECT_CSV" "$t" 8)
        ((errs == 0)) || flag=" ⚠"
        printf '| %s | %s | %.0f | %.2f | %.1f | %.0f | %s | %s | %.0f | %s%s | %s |\n' "$label" "$cred" \
          "$(col_median "$CONNECT_CSV" "$t" 3)" "$(col_median "$CONNECT_CSV" "$t" 4)" "$a" \
          "$(col_median "$CONNECT_CSV" "$t" 7)" "$( [[ $t == direct ]] && echo "–" || ratio "$a" "$base")" \
          "$( [[ $t == direct ]] && echo "–" || ratio "$a" "$nbase")" \
          "$(col_median "$CONNECT_CSV" "$t" 10)" "$errs" "$flag" "$runs"
      done
    fi
    if [[ " $TESTS " == *" echo "* ]]; then
      base=$(col_median "$ECHO_CSV" haproxy_jwt 6)
      nbase=$(col_median "$ECHO_CSV" nginx 6)
      echo
      echo "## Echo round trips over ${ECHO_CONNECTIONS} open connections"
      echo
      echo "One message in flight per connection. A round trip is two relayed messages (client → upstream and upstream → client); **CPU-µs/msg divides by both**, i.e. by 2 × round trips."
      echo
      echo "| target | round trips/s | relayed msgs/s | p99 ms (round trip) | CPU-µs/msg | proxy CPU % | CPU vs HAProxy | CPU vs nginx | other load % | errors | runs |"
      echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      for t in $ECHO_TARGETS; do
        runs=$(runs_of "$ECHO_CSV" "$t")
        label=$t
        [[ $t == direct ]] && label="direct (CPU = echo server)"
        if ((runs == 0)); then
          echo "| $label | – | – | – | – | – | – | – | – | – | 0 (${SKIP[echo/$t]:-no run}) |"
          continue
        fi
        a=$(col_median "$ECHO_CSV" "$t" 6)
        local errs flag="" rt
        errs=$(col_sum "$ECHO_CSV" "$t" 8)
        ((errs == 0)) || flag=" ⚠"
        rt=$(col_median "$ECHO_CSV" "$t" 3)
        printf '| %s | %.0f | %.0f | %.2f | %.2f | %.0f | %s | %s | %.0f | %s%s | %s |\n' "$label" "$rt" \
          "$(awk -v r="$rt" 'BEGIN { print 2 * r }')" "$(col_median "$ECHO_CSV" "$t" 4)" "$a" \
          "$(col_median "$ECHO_CSV" "$t" 7)" "$( [[ $t == direct ]] && echo "–" || ratio "$a" "$base")" \
          "$( [[ $t == direct ]] && echo "–" || ratio "$a" "$nbase")" \
          "$(col_median "$ECHO_CSV" "$t" 10)" "$errs" "$flag" "$runs"
      done
    fi
    if [[ " $TESTS " == *" hold "* ]]; then
      echo
      echo "## Memory per idle connection"
      echo
      echo "A fresh proxy; VmRSS before and ${HOLD_SETTLE}s after ${HOLD_N} idle WebSockets are open through it (${HOLD_NOTE}). KiB/conn = (after − before) ÷ connections."
      echo
      echo "| target | connections | RSS before MiB | RSS with connections MiB | **KiB/conn** | RSS after they closed MiB | runs |"
      echo "|---|---:|---:|---:|---:|---:|---:|"
      for t in $HOLD_TARGETS; do
        runs=$(runs_of "$HOLD_CSV" "$t")
        if ((runs == 0)); then
          echo "| $t | – | – | – | – | – | 0 (${SKIP[hold/$t]:-no run}) |"
          continue
        fi
        printf '| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %s |\n' "$t" \
          "$(col_median "$HOLD_CSV" "$t" 3)" \
          "$(awk -v k="$(col_median "$HOLD_CSV" "$t" 6)" 'BEGIN { print k / 1024 }')" \
          "$(awk -v k="$(col_median "$HOLD_CSV" "$t" 7)" 'BEGIN { print k / 1024 }')" \
          "$(col_median "$HOLD_CSV" "$t" 9)" \
          "$(awk -v k="$(col_median "$HOLD_CSV" "$t" 8)" 'BEGIN { print k / 1024 }')" "$runs"
      done
    fi
    echo
    echo "## Targets"
    echo
    if [[ " $TESTS " == *" connect "* ]]; then
      a=$(col_median "$CONNECT_CSV" gatehouse 6)
      b=$(col_median "$CONNECT_CSV" haproxy_jwt 6)
      echo "- CPU per authenticated upgrade ≤ HAProxy's: gatehouse (token in query) $(ratio "$a" "$b") → $(verdict "$a" "$b")"
      a=$(col_median "$CONNECT_CSV" gatehouse_ticket 6)
      [[ -n $a ]] && echo "  - ticket flow (two requests per connection) $(ratio "$a" "$b") → $(verdict "$a" "$b")"
      a=$(col_median "$CONNECT_CSV" gatehouse_fresh 6)
      [[ -n $a ]] && echo "  - a new token on every upgrade $(ratio "$a" "$b") → $(verdict "$a" "$b")"
      a=$(col_median "$CONNECT_CSV" gatehouse 6)
      b=$(col_median "$CONNECT_CSV" nginx 6)
      [[ -n $b ]] && echo "- CPU per authenticated upgrade ≤ 1.0× nginx plain: $(ratio "$a" "$b") → $(verdict "$a" "$b")"
    fi
    if [[ " $TESTS " == *" echo "* ]]; then
      a=$(col_median "$ECHO_CSV" gatehouse 6)
      b=$(col_median "$ECHO_CSV" haproxy_jwt 6)
      echo "- CPU per relayed message ≤ 1.25× HAProxy's: $(ratio "$a" "$b") → $(verdict "$a" "$(awk -v b="${b:-0}" 'BEGIN { print b * 1.25 }')")"
      b=$(col_median "$ECHO_CSV" nginx 6)
      [[ -n $b ]] && echo "- CPU per relayed message ≤ 1.0× nginx plain: $(ratio "$a" "$b") → $(verdict "$a" "$b")"
    fi
    if [[ " $TESTS " == *" hold "* ]]; then
      a=$(col_median "$HOLD_CSV" gatehouse 9)
      echo "- < 32 KiB RSS per idle connection through gatehouse: ${a:-–} KiB → $(verdict "$a" 31.999)"
      echo "- ≤ 8 KiB RSS per idle connection through gatehouse: ${a:-–} KiB → $(verdict "$a" 8)"
    fi
    echo
    if ((FLAGGED)); then
      echo "**⚠ Some runs were flagged (errors, failed preflights or failed runs): their figures are not trustworthy. See the log and bench/out/ws/.**"
    else
      echo "No errors in any measured run; every target passed its preflight."
    fi
    echo
    echo "Per-run figures: bench/out/ws-connect.csv, ws-echo.csv (column up_cpu_us: the echo server's CPU per unit), ws-hold.csv; raw output: bench/out/ws/."
  } >"$md"
  echo
  cat "$md"
}

# ---------------------------------------------------------------- main
main() {
  mkdir -p "$OUT/ws"
  ensure_tools
  build_wsload
  build_gatehouse || log "no gatehouse binary: the gatehouse rows are skipped"
  rm -f "$OUT"/ws/*.txt "$OUT/gatehouse-ws.stderr.log" "$OUT/ws-probe.err"
  echo "round,target,rate,p99_ms,units,cpu_us_per_conn,cpu_pct,errors,up_cpu_us,other_pct,note" >"$CONNECT_CSV"
  echo "round,target,round_trips_per_s,p99_ms,relayed_messages,cpu_us_per_msg,cpu_pct,errors,up_cpu_us,other_pct,connections" >"$ECHO_CSV"
  echo "round,target,opened,failed,open_s,rss_before_kib,rss_held_kib,rss_after_close_kib,kib_per_conn,fds_before,fds_held,fds_after,ws_open,closed_cleanly" >"$HOLD_CSV"

  # File descriptors: RLIMIT_NOFILE is per process. Raise the soft limit to the hard one;
  # a proxy holds 2 per connection (client side + upstream side).
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local fd_limit
  fd_limit=$(ulimit -n)
  [[ $fd_limit == unlimited ]] && fd_limit=1048576
  HOLD_N=$HOLD_CONNECTIONS
  HOLD_NOTE="ulimit -n ${fd_limit}"
  if ((2 * HOLD_N + 64 > fd_limit)); then
    HOLD_N=$(((fd_limit - 64) / 2))
    HOLD_NOTE="${HOLD_CONNECTIONS} would need $((2 * HOLD_CONNECTIONS)) fds in the proxy, plus its own; ulimit -n is ${fd_limit} (hard limit), so ${HOLD_N} = (${fd_limit} − 64) ÷ 2"
    log "hold: ${HOLD_CONNECTIONS} connections need more fds than ulimit -n ${fd_limit} allows the proxy; holding ${HOLD_N}"
  fi
  # HAProxy refuses to start when 2 × maxconn plus its own fds (14 in 2.6) exceed the
  # limit it cannot raise, so its maxconn is N plus a margin, within that bound.
  HOLD_MAXCONN=$((HOLD_N + 256))
  ((2 * HOLD_MAXCONN + 32 <= fd_limit)) || HOLD_MAXCONN=$(((fd_limit - 32) / 2))

  local t
  for t in $CONNECT_TARGETS $ECHO_TARGETS $HOLD_TARGETS; do
    case $t in
      direct | nginx | haproxy_jwt | gatehouse | gatehouse_ticket | gatehouse_fresh) ;;
      gatehouse_base) [[ -x $BASELINE_BIN ]] || die "gatehouse_base needs BASELINE_BIN=/path/to/gatehouse" ;;
      *) die "unknown target '$t'" ;;
    esac
  done
  for t in $TESTS; do
    case $t in connect | echo | hold) ;; *) die "unknown test '$t' (known: connect echo hold)" ;; esac
  done

  make_keys
  TOKEN=$(mint_token)
  printf '%s\n' "$TOKEN" >"$OUT/token.txt"
  local sig=${TOKEN##*.} c
  c=${sig:100:1}
  [[ $c == A ]] && c=B || c=A
  TAMPERED="${TOKEN%.*}.${sig:0:100}${c}${sig:101}"
  EXPIRED=$(mint_token "$AUDIENCE" $((TOKEN_TTL + 3600)))
  WRONG_AUD=$(mint_token "not-$AUDIENCE")

  case $FRESH in
    0) ;;
    auto | 1)
      if fresh_tokens_ok; then
        [[ " $CONNECT_TARGETS " == *" gatehouse_fresh "* ]] || CONNECT_TARGETS+=" gatehouse_fresh"
        log "gatehouse_fresh: using $(wc -l <"$OUT/fresh-tokens.txt") first-seen tokens from bench/out/fresh-tokens.txt"
      else
        [[ $FRESH == 1 ]] && die "FRESH=1 needs bench/out/fresh-tokens.txt: run 'TARGETS=gatehouse_fresh DURATION=1 ROUNDS=1 bash bench/run.sh' once"
        CONNECT_TARGETS=${CONNECT_TARGETS//gatehouse_fresh/}
        log "no first-seen tokens in bench/out (bench/run.sh mints them): no gatehouse_fresh row"
      fi
      ;;
    *) die "FRESH must be auto, 1 or 0" ;;
  esac

  start_echo
  ws_preflight direct "ws://127.0.0.1:$ECHO_PORT/ws" no || die "the echo server fails its preflight"

  local gh_ok=1
  if [[ ! -x $GATEHOUSE_BIN ]]; then
    log "gatehouse binary not found at $GATEHOUSE_BIN: skipping the gatehouse rows"
    gh_ok=0
  else
    gatehouse_config
    if ! "${GH_ENV[@]}" "$GATEHOUSE_BIN" check --config "$OUT/gatehouse-ws.toml" >"$OUT/gatehouse-ws.check.log" 2>&1; then
      cat "$OUT/gatehouse-ws.check.log" >&2
      log "gatehouse check rejected $OUT/gatehouse-ws.toml: skipping the gatehouse rows"
      gh_ok=0
    fi
  fi

  local ha_ok=1
  if [[ " $TESTS " == *" connect "* || " $TESTS " == *" echo "* ]] && [[ " $CONNECT_TARGETS $ECHO_TARGETS " == *" haproxy_jwt "* ]]; then
    if start_haproxy haproxy-ws 4096 && ws_preflight haproxy-ws "ws://127.0.0.1:$HAPROXY_PORT/ws" yes; then
      HA_PORT=$HAPROXY_PORT
      HA_PID=$HAPROXY_PID
    else
      log "FLAG haproxy_jwt: did not start or failed its preflight; not measured"
      FLAGGED=1
      ha_ok=0
    fi
  fi

  local ng_ok=1
  if [[ " $TESTS " == *" connect "* || " $TESTS " == *" echo "* ]] && [[ " $CONNECT_TARGETS $ECHO_TARGETS " == *" nginx "* ]]; then
    if start_nginx nginx-ws 4096 && ws_preflight nginx-ws "ws://127.0.0.1:$NGINX_PORT/ws" no; then
      NG_PORT=$NGINX_PORT
      NG_PID=$NGINX_PID
    else
      log "FLAG nginx: did not start or failed its preflight; not measured"
      FLAGGED=1
      ng_ok=0
    fi
  fi

  # The run list; each round runs all of it, starting one entry later than the last.
  local runs=() test list
  for test in $TESTS; do
    case $test in
      connect) list=$CONNECT_TARGETS ;;
      echo) list=$ECHO_TARGETS ;;
      hold) list=$HOLD_TARGETS ;;
    esac
    for t in $list; do
      if [[ $t == gatehouse* ]] && ((gh_ok == 0)); then SKIP[$test/$t]="no usable binary"; continue; fi
      if [[ $t == haproxy_jwt && $test != hold ]] && ((ha_ok == 0)); then SKIP[$test/$t]="preflight failed"; continue; fi
      if [[ $t == nginx && $test != hold ]] && ((ng_ok == 0)); then SKIP[$test/$t]="preflight failed"; continue; fi
      runs+=("$test/$t")
    done
  done
  ((${#runs[@]})) || die "nothing to measure"

  local r i n=${#runs[@]} run
  for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS"
    for ((i = 0; i < n; i++)); do
      run=${runs[(i + r - 1) % n]}
      case ${run%%/*} in
        hold) run_hold "$r" "${run#*/}" ;;
        *) run_load "$r" "${run%%/*}" "${run#*/}" ;;
      esac
    done
  done

  report
  if ((FLAGGED)); then
    log "some runs were flagged; see above"
    exit 2
  fi
}

main "$@"
