#!/usr/bin/env bash
# gatehouse soak test: DURATION seconds (default 30 minutes) of mixed load against one
# gatehouse with Redis stores, with the events a long-running replica meets:
#   load    HTTP with one cached token per segment (wrk + fixed-rate.lua), a burst of
#           never-seen tokens per segment (wrk + fresh-tokens.lua), ticket issue + redeem
#           (wrk + tickets.lua at a fixed rate), and WS_CONNECTIONS long-lived WebSockets
#           that each exchange a message every WS_MESSAGE_EVERY seconds (ws-load hold).
#   events  a config reload every RELOAD_EVERY seconds (the file watch), a JWKS key
#           rotation (publish a new key at ~35 %, sign with it from ~40 %, drop the old
#           one at 70 %), a Redis crash and restart on the same port at 60 %.
# Every SAMPLE_EVERY seconds it records gatehouse's RSS and open fds. Every non-2xx answer
# in the access log is counted by (status, reason) and must be explained by an event
# window; wrk's and ws-load's own failures must be accounted for too.
# FAIL (exit 2) when RSS grew by more than RSS_LIMIT_PCT % after warm-up, any answer or
# failure is unexplained, a reload failed or any component died; 1 on a setup error.
#
# Everything listens on 127.0.0.1 only. Generated files go to bench/out/soak/.
# See bench/README.md, "Soak (bench/soak.sh)".
set -euo pipefail

# ---------------------------------------------------------------- settings
DURATION=${DURATION:-1800}
if ((DURATION >= 600)); then _seg=60 _down=10; else _seg=$((DURATION / 4)) _down=5; fi
((_seg >= 10)) || _seg=10
RELOAD_EVERY=${RELOAD_EVERY:-$_seg}         # config reload period = load segment length
REDIS_DOWN=${REDIS_DOWN:-$_down}            # seconds Redis stays down
SAMPLE_EVERY=${SAMPLE_EVERY:-5}             # RSS / fd sampling period
WS_CONNECTIONS=${WS_CONNECTIONS:-2000}      # long-lived WebSockets
WS_MESSAGE_EVERY=${WS_MESSAGE_EVERY:-10}    # seconds between messages on each WebSocket
HTTP_RATE=${HTTP_RATE:-400}                 # cached-token requests/s
HTTP_CONNECTIONS=${HTTP_CONNECTIONS:-16}
TICKET_RATE=${TICKET_RATE:-100}             # ticket requests/s (issue and redeem alternate)
TICKET_CONNECTIONS=${TICKET_CONNECTIONS:-4}
FRESH_PER_SEGMENT=${FRESH_PER_SEGMENT:-200} # never-seen tokens per segment (minted up front)
JWKS_REFRESH=${JWKS_REFRESH:-2s}            # [[issuer]] refresh of the JWKS
RSS_LIMIT_PCT=${RSS_LIMIT_PCT:-10}          # allowed RSS growth after warm-up
READY_TIMEOUT=${READY_TIMEOUT:-30}
WSLOAD_PROFILE=${WSLOAD_PROFILE:-release}   # cargo profile of ws-load (CI: debug, quicker to build)
BUILD=${BUILD:-auto}                        # auto: cargo build --release gatehouse when stale; 0: never
DEFAULT_BIN=0
[[ -z ${GATEHOUSE_BIN:-} ]] && DEFAULT_BIN=1
GATEHOUSE_BIN=${GATEHOUSE_BIN:-target/release/gatehouse}

ISSUER="https://soak.example/"
AUDIENCE="soak"

export PATH="$PATH:/usr/sbin:/sbin"

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT="$BENCH/out/soak"
TPL="$BENCH/templates"
WSLOAD_DIR="$BENCH/ws-load"
WSLOAD="$WSLOAD_DIR/target/$WSLOAD_PROFILE/ws-load"
cd "$ROOT"
[[ $GATEHOUSE_BIN == /* ]] || GATEHOUSE_BIN="$ROOT/$GATEHOUSE_BIN"

log() { printf '[soak %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# die, process bookkeeping, ports, templates, readiness: shared.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

for v in DURATION RELOAD_EVERY REDIS_DOWN SAMPLE_EVERY WS_CONNECTIONS WS_MESSAGE_EVERY HTTP_RATE \
  HTTP_CONNECTIONS TICKET_RATE TICKET_CONNECTIONS FRESH_PER_SEGMENT RSS_LIMIT_PCT READY_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION >= 30)) || die "DURATION must be at least 30 (seconds)"
((RELOAD_EVERY >= 5 && SAMPLE_EVERY > 0 && WS_MESSAGE_EVERY > 0 && HTTP_RATE > 0 && TICKET_RATE > 0)) \
  || die "RELOAD_EVERY must be >= 5; SAMPLE_EVERY, WS_MESSAGE_EVERY, HTTP_RATE, TICKET_RATE > 0"
((HTTP_CONNECTIONS > 0 && TICKET_CONNECTIONS > 0 && FRESH_PER_SEGMENT > 0)) \
  || die "HTTP_CONNECTIONS, TICKET_CONNECTIONS and FRESH_PER_SEGMENT must be > 0"
[[ $WSLOAD_PROFILE == release || $WSLOAD_PROFILE == debug ]] || die "WSLOAD_PROFILE: release or debug"
[[ $JWKS_REFRESH =~ ^[0-9]+s$ ]] || die "JWKS_REFRESH must look like 2s"

stop_all_on_exit

# ---------------------------------------------------------------- tools and builds
ensure_tools() {
  local missing=() t
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v wrk >/dev/null || missing+=(wrk)
  if ((${#missing[@]})); then
    log "missing: ${missing[*]}; installing with apt-get"
    [[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
  for t in cargo openssl curl python3 ss base64 timeout mkfifo; do
    command -v "$t" >/dev/null || die "'$t' is required but not installed"
  done
}

build_wsload() {
  local flag=()
  [[ $WSLOAD_PROFILE == release ]] && flag=(--release)
  log "building ws-load ($WSLOAD_PROFILE)"
  cargo build "${flag[@]}" --locked --manifest-path "$WSLOAD_DIR/Cargo.toml" \
    --target-dir "$WSLOAD_DIR/target" >"$OUT/ws-load.build.log" 2>&1 \
    || { tail -n 30 "$OUT/ws-load.build.log" >&2; die "building ws-load failed"; }
}


# ---------------------------------------------------------------- helpers
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' <<<"$2"; }
iso() { date -u -d "@$1" '+%Y-%m-%dT%H:%M:%S'; }  # the access log's time stamp, to the second
now() { printf '%(%s)T' -1; }

# wait_line FILE REGEX PID TIMEOUT (as in ws.sh)
wait_line() {
  local file=$1 re=$2 pid=$3 deadline=$((SECONDS + $4))
  while ((SECONDS < deadline)); do
    grep -qE "$re" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { grep -qE "$re" "$file" 2>/dev/null; return; }
    sleep 0.1
  done
  return 1
}

# metric NAME_WITH_LABELS: its value from /metrics (empty when absent).
METRICS=""
scrape() { METRICS=$(curl -s --max-time 5 "http://127.0.0.1:$GH_ADMIN_PORT/metrics" || true); }
metric() { awk -v m="$1" '$1 == m { print $2; exit }' <<<"$METRICS"; }

# ---------------------------------------------------------------- keys, JWKS and tokens
# Three RSA keys, made fresh for every run: "soak-1" signs from the start, "soak-2" is
# published next to it at T_PUBLISH, signs from T_SWITCH, and replaces it at T_DROP.
# "soak-ws" signs the long-lived WebSockets' token and stays published throughout: a key
# dropped from the set ends the sessions it verified (close 4401 "token key withdrawn"),
# which is what a compromise needs, not what a rotation does to sessions it meant to keep.
KEY1="$OUT/key-soak-1.pem" KEY2="$OUT/key-soak-2.pem" KEY_WS="$OUT/key-soak-ws.pem"
TOKEN_TTL=$((DURATION + 3600))   # every token outlives the run: no 4401 expiry closes

make_keys() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY1" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY2" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY_WS" 2>/dev/null
  mkdir -p "$OUT/jwks"
}

jwk() {  # KEYFILE KID: one JWK (kty RSA, n and e in base64url)
  local mod
  mod=$(openssl rsa -in "$1" -noout -modulus 2>/dev/null | cut -d= -f2)
  python3 -c 'import base64, sys
n = bytes.fromhex(sys.argv[1]).lstrip(b"\0")
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
print("{\"kty\":\"RSA\",\"use\":\"sig\",\"alg\":\"RS256\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"}" % (sys.argv[2], b(n), b((65537).to_bytes(3, "big"))))' "$mod" "$2"
}

publish_jwks() {  # KID...: the JWKS the server hands out from now on, with soak-ws (atomically)
  local parts=("${JWK[soak-ws]}") k
  for k in "$@"; do parts+=("${JWK[$k]}"); done
  local IFS=,
  printf '{"keys":[%s]}\n' "${parts[*]}" >"$OUT/jwks/jwks.json.tmp"
  mv "$OUT/jwks/jwks.json.tmp" "$OUT/jwks/jwks.json"
}

mint_token() {  # KEYFILE KID: one RS256 token with a random jti
  local key=$1 kid=$2 now jti h p s
  now=$(now)
  new_jti jti
  h=$(printf '{"alg":"RS256","typ":"JWT","kid":"%s"}' "$kid" | b64url)
  p=$(printf '{"iss":"%s","aud":"%s","sub":"soak-user","scope":"api","iat":%d,"exp":%d,"jti":"%s"}' \
    "$ISSUER" "$AUDIENCE" "$now" "$((now + TOKEN_TTL))" "$jti" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$key" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}

# mint_many KEYFILE KID N: N tokens like mint_token's, one a line. One openssl process
# per signature, as many at once as there are cores; the rest is done in one python3
# (bash pipelines would cost several processes per token: minutes for a full run).
mint_many() {
  python3 - "$@" "$ISSUER" "$AUDIENCE" "$TOKEN_TTL" <<'PY'
import base64, json, os, secrets, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
key, kid, n, iss, aud, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}, separators=(",", ":")).encode())
def one(_):
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "sub": "soak-user", "scope": "api", "iat": now,
              "exp": now + ttl, "jti": secrets.token_hex(16)}
    signing = head + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, "-binary"], input=signing.encode(),
                         capture_output=True, check=True).stdout
    return signing + "." + b64(sig)
with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    for t in pool.map(one, range(n)):
        print(t)
PY
}

# ---------------------------------------------------------------- servers
NGINX_PID="" NGINX_PORT="" ECHO_PID="" ECHO_PORT="" JWKS_PID="" JWKS_PORT=""
REDIS_PID="" REDIS_PORT="" GH_PID="" GH_PORT="" GH_ADMIN_PORT="" FILTER_PID="" HOLD_PID=""

start_nginx() {
  local port2
  free_port NGINX_PORT
  free_port port2
  mkdir -p "$OUT/nginx-tmp"
  render "$TPL/nginx.conf.tmpl" "$OUT/nginx.conf" OUT="$OUT" NGINX_PORT="$NGINX_PORT" NGINX_PORT2="$port2"
  : >"$OUT/nginx-error.log"
  nginx -p "$OUT" -e "$OUT/nginx-error.log" -c "$OUT/nginx.conf" >"$OUT/nginx.stdout.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" nginx 200 \
    || { tail -n 20 "$OUT/nginx-error.log" >&2; die "nginx did not start"; }
}

start_echo() {
  free_port ECHO_PORT
  "$WSLOAD" serve --port "$ECHO_PORT" >"$OUT/ws-echo.log" 2>&1 &
  ECHO_PID=$!
  PIDS+=("$ECHO_PID")
  wait_line "$OUT/ws-echo.log" '^READY ' "$ECHO_PID" "$READY_TIMEOUT" \
    || { cat "$OUT/ws-echo.log" >&2; die "the echo server did not start"; }
}

start_jwks() {
  free_port JWKS_PORT
  python3 -m http.server --bind 127.0.0.1 --directory "$OUT/jwks" "$JWKS_PORT" >"$OUT/jwks.log" 2>&1 &
  JWKS_PID=$!
  PIDS+=("$JWKS_PID")
  wait_http "http://127.0.0.1:$JWKS_PORT/jwks.json" "$JWKS_PID" "JWKS server" 200 \
    || { cat "$OUT/jwks.log" >&2; die "the JWKS server did not start"; }
}

rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
start_redis() {  # on REDIS_PORT when set (the restart), else on a free port
  [[ -n $REDIS_PORT ]] || free_port REDIS_PORT
  mkdir -p "$OUT/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --save '' \
    --appendonly no --daemonize no --dir "$OUT/redis" --logfile "$OUT/redis.log" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  local deadline=$((SECONDS + READY_TIMEOUT))
  until [[ $(rcli ping 2>/dev/null || true) == PONG ]]; do
    kill -0 "$REDIS_PID" 2>/dev/null || { tail -n 20 "$OUT/redis.log" >&2; die "redis-server exited"; }
    ((SECONDS < deadline)) || die "redis-server not ready after ${READY_TIMEOUT}s"
    sleep 0.1
  done
}

RELOADS=0
write_config() {  # the config, with the reload number in a comment and a harmless limit
  render "$TPL/gatehouse-soak.toml.tmpl" "$OUT/gatehouse.toml.tmp" PORT="$GH_PORT" \
    ADMIN_PORT="$GH_ADMIN_PORT" ISSUER="$ISSUER" AUDIENCE="$AUDIENCE" JWKS_PORT="$JWKS_PORT" \
    JWKS_REFRESH="$JWKS_REFRESH" REDIS_PORT="$REDIS_PORT" NGINX_PORT="$NGINX_PORT" \
    ECHO_PORT="$ECHO_PORT" RELOAD="$RELOADS" TICKET_RATE_LIMIT=$((10000000 + RELOADS))
  mv "$OUT/gatehouse.toml.tmp" "$OUT/gatehouse.toml"
}

# gatehouse's stdout (its JSON log) goes through a FIFO to an awk filter: 2xx and 101
# access lines are only counted (by route and status) into access-counts.txt at the end,
# every other line (non-2xx answers, WebSocket session ends, warnings) is kept in
# access-other.log. A 30-minute log would otherwise be gigabytes.
start_gatehouse() {
  free_port GH_PORT
  free_port GH_ADMIN_PORT
  write_config
  env -u GATEHOUSE_BIN "$GATEHOUSE_BIN" check --config "$OUT/gatehouse.toml" >"$OUT/gatehouse.check.log" 2>&1 \
    || { cat "$OUT/gatehouse.check.log" >&2; die "gatehouse check rejected $OUT/gatehouse.toml"; }
  rm -f "$OUT/access.fifo"
  mkfifo "$OUT/access.fifo"
  awk -v counts="$OUT/access-counts.txt" '
    /"status":(2[0-9][0-9]|101)[,}]/ {
      r = $0; sub(/.*"route":"/, "", r); sub(/".*/, "", r)
      s = $0; sub(/.*"status":/, "", s); sub(/[,}].*/, "", s)
      n[r " " s]++
      next
    }
    { print; fflush() }
    END { for (k in n) print k, n[k] > counts }' <"$OUT/access.fifo" >"$OUT/access-other.log" &
  FILTER_PID=$!
  PIDS+=("$FILTER_PID")
  env -u GATEHOUSE_BIN "$GATEHOUSE_BIN" run --config "$OUT/gatehouse.toml" \
    >"$OUT/access.fifo" 2>"$OUT/gatehouse.stderr.log" &
  GH_PID=$!
  PIDS+=("$GH_PID")
  wait_http "http://127.0.0.1:$GH_ADMIN_PORT/readyz" "$GH_PID" gatehouse 200 \
    || { tail -n 20 "$OUT/gatehouse.stderr.log" "$OUT/access-other.log" >&2; die "gatehouse did not become ready"; }
  measured_pid_ok "$GH_PID" gatehouse || die "wrong gatehouse PID"
}

# ---------------------------------------------------------------- load segments
# The run is cut into segments of RELOAD_EVERY seconds. Each starts three wrk runs with
# the token of the key that signs at that time: the cached token (one per segment),
# FRESH_PER_SEGMENT never-seen tokens, and the ticket load.
declare -A JWK
SEG_PIDS=()
SEG_FILES=()
start_segment() {  # K START_SECONDS LENGTH KEYFILE KID
  local k=$1 len=$3 key=$4 kid=$5 tok gap pid d
  d=$((len > 1 ? len - 1 : 1))
  tok=$(mint_token "$key" "$kid")
  SEG_PIDS=() SEG_FILES=()
  env CONNECTIONS="$HTTP_CONNECTIONS" RATE="$HTTP_RATE" timeout $((d + 30)) \
    wrk -t1 -c"$HTTP_CONNECTIONS" -d"${d}s" --timeout 10s -s "$BENCH/fixed-rate.lua" \
    -H "Authorization: Bearer $tok" "http://127.0.0.1:$GH_PORT/api/soak" >"$OUT/wrk/s$k-cached.txt" 2>&1 &
  pid=$!; PIDS+=("$pid"); SEG_PIDS+=("$pid"); SEG_FILES+=("$OUT/wrk/s$k-cached.txt")
  gap=$((TICKET_CONNECTIONS * 1000 / TICKET_RATE))
  env BENCH_TOKEN="$tok" TICKET_GAP_MS="$gap" timeout $((d + 30)) \
    wrk -t1 -c"$TICKET_CONNECTIONS" -d"${d}s" --timeout 10s -s "$BENCH/tickets.lua" \
    "http://127.0.0.1:$GH_PORT/.gatehouse/ticket" >"$OUT/wrk/s$k-tickets.txt" 2>&1 &
  pid=$!; PIDS+=("$pid"); SEG_PIDS+=("$pid"); SEG_FILES+=("$OUT/wrk/s$k-tickets.txt")
  env TOKENS_FILE="$OUT/tokens/fresh-$k.txt" WRK_THREADS=1 timeout $((d + 30)) \
    wrk -t1 -c2 -d"${d}s" --timeout 10s -s "$BENCH/fresh-tokens.lua" \
    "http://127.0.0.1:$GH_PORT/api/fresh" >"$OUT/wrk/s$k-fresh.txt" 2>&1 &
  pid=$!; PIDS+=("$pid"); SEG_PIDS+=("$pid"); SEG_FILES+=("$OUT/wrk/s$k-fresh.txt")
}

WRK_FAILED=0
end_segment() {
  local i rc
  for i in "${!SEG_PIDS[@]}"; do
    rc=0
    wait "${SEG_PIDS[i]}" || rc=$?
    forget_pid "${SEG_PIDS[i]}"
    if ((rc != 0)); then
      log "wrk exited with $rc: ${SEG_FILES[i]}"
      WRK_FAILED=$((WRK_FAILED + 1))
    fi
  done
  SEG_PIDS=()
}

# ---------------------------------------------------------------- main
main() {
  mkdir -p "$OUT/wrk" "$OUT/tokens"
  rm -f "$OUT"/wrk/*.txt "$OUT"/tokens/*.txt "$OUT"/access-*.{log,txt} "$OUT"/*.csv "$OUT/redis.log" \
    "$OUT/ws-hold.log"
  ensure_tools
  build_wsload
  build_gatehouse || die "no gatehouse binary at $GATEHOUSE_BIN"

  # 2 fds per relayed WebSocket in gatehouse, one in ws-load and in the echo server.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local fd_limit ws_n=$WS_CONNECTIONS fd_note=""
  fd_limit=$(ulimit -n)
  if ((2 * ws_n + 1024 > fd_limit)); then
    ws_n=$(((fd_limit - 1024) / 2))
    ((ws_n > 0)) || die "ulimit -n is $fd_limit: too low for any WebSocket"
    fd_note=" (capped from $WS_CONNECTIONS: ulimit -n $fd_limit)"
    log "WARNING: holding $ws_n WebSockets$fd_note"
  fi

  # ---- the timeline, in seconds from the start of the load
  local seg=$RELOAD_EVERY warm t_switch t_publish t_drop t_kill t_restart nseg
  warm=$((DURATION / 5)); ((warm <= 300)) || warm=300
  t_switch=$(((DURATION * 2 / 5 + seg - 1) / seg * seg))
  ((t_switch < DURATION)) || t_switch=$((DURATION * 2 / 5))
  t_publish=$((t_switch - seg / 2))
  t_drop=$((DURATION * 7 / 10))
  t_kill=$((DURATION * 3 / 5))
  t_restart=$((t_kill + REDIS_DOWN))
  nseg=$(((DURATION + seg - 1) / seg))

  make_keys
  JWK[soak-1]=$(jwk "$KEY1" soak-1)
  JWK[soak-2]=$(jwk "$KEY2" soak-2)
  JWK[soak-ws]=$(jwk "$KEY_WS" soak-ws)
  publish_jwks soak-1
  local k t0m i
  t0m=$SECONDS
  log "minting $((nseg * FRESH_PER_SEGMENT)) fresh tokens for $nseg segments"
  for ((k = 0; k < nseg; k++)); do
    local key=$KEY1 kid=soak-1
    ((k * seg >= t_switch)) && { key=$KEY2 kid=soak-2; }
    mint_many "$key" "$kid" "$FRESH_PER_SEGMENT" >"$OUT/tokens/fresh-$k.txt"
  done
  log "minted in $((SECONDS - t0m)) s"
  mint_token "$KEY_WS" soak-ws >"$OUT/tokens/ws.txt"

  start_nginx
  start_echo
  start_jwks
  start_redis
  start_gatehouse
  GH_BUILT=$(date -r "$GATEHOUSE_BIN" '+%F %H:%M')
  local gh_rel=${GATEHOUSE_BIN#"$ROOT"/}
  log "gatehouse $gh_rel (built $GH_BUILT, pid $GH_PID) on 127.0.0.1:$GH_PORT, admin $GH_ADMIN_PORT; redis $REDIS_PORT, nginx $NGINX_PORT, echo $ECHO_PORT, JWKS $JWKS_PORT"

  # ---- WebSockets first: opening them is set-up, not part of the timeline
  "$WSLOAD" hold --url "ws://127.0.0.1:$GH_PORT/ws" --auth query --token-file "$OUT/tokens/ws.txt" \
    -n "$ws_n" --concurrency 50 --open-timeout 120 --message-every "$WS_MESSAGE_EVERY" \
    --report-every "$SAMPLE_EVERY" >"$OUT/ws-hold.log" 2>"$OUT/ws-hold.err" &
  HOLD_PID=$!
  PIDS+=("$HOLD_PID")
  wait_line "$OUT/ws-hold.log" '^READY ' "$HOLD_PID" 150 || { cat "$OUT/ws-hold.err" >&2; die "ws-load hold did not get ready"; }
  local ready
  ready=$(grep '^READY ' "$OUT/ws-hold.log")
  log "WebSockets: $ready"

  # ---- the run
  local T0 t=0 next_sample=0 next_seg=0 next_reload=$((seg / 2)) kseg=0 ev="" died=""
  local redis_state=up recovered="" down_seen="" kill_at="" restart_at="" published="" switched="" dropped=""
  local cur_key=$KEY1 cur_kid=soak-1 rss fds base_rss="" reload_want=0
  T0=$(now)
  echo "unix,t,rss_kib,fds,ws_open,events" >"$OUT/samples.csv"
  echo "unix,t,event" >"$OUT/events.csv"
  event() { ev+="${ev:+ }$1"; echo "$(now),$t,$1" >>"$OUT/events.csv"; log "t=${t}s $1"; }
  log "load for ${DURATION}s: segments of ${seg}s (reload each, offset $((seg / 2))s), warm-up ${warm}s, new key published ${t_publish}s / signing ${t_switch}s / old key dropped ${t_drop}s, redis killed ${t_kill}s for ${REDIS_DOWN}s"
  while :; do
    t=$(($(now) - T0))
    # -- load segments
    if ((t >= next_seg && next_seg < DURATION)); then
      end_segment
      if [[ -z $switched ]] && ((next_seg >= t_switch)); then
        cur_key=$KEY2 cur_kid=soak-2 switched=$t
        event "sign:soak-2"
      fi
      local len=$((DURATION - next_seg)); ((len <= seg)) || len=$seg
      start_segment "$kseg" "$next_seg" "$len" "$cur_key" "$cur_kid"
      kseg=$((kseg + 1)); next_seg=$((next_seg + seg))
    fi
    # -- config reload
    if ((t >= next_reload && next_reload < DURATION)); then
      RELOADS=$((RELOADS + 1)); reload_want=$RELOADS
      write_config
      event "reload#$RELOADS"
      next_reload=$((next_reload + seg))
    fi
    # -- JWKS rotation
    if [[ -z $published ]] && ((t >= t_publish)); then published=$t; publish_jwks soak-1 soak-2; event "jwks:+soak-2"; fi
    if [[ -z $dropped ]] && ((t >= t_drop)); then dropped=$t; publish_jwks soak-2; event "jwks:-soak-1"; fi
    # -- Redis crash and restart
    if [[ $redis_state == up ]] && ((t >= t_kill)) && [[ -z $kill_at ]]; then
      kill_at=$(now); kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; forget_pid "$REDIS_PID"
      redis_state=down; event "redis:killed"
    elif [[ $redis_state == down && -z $down_seen ]] && ((t < t_restart)); then
      scrape
      if [[ $(metric 'gatehouse_store_up{store="tickets"}') == 0 ]]; then
        down_seen=$(now); event "redis:store_up=0+$((down_seen - kill_at))s"
      fi
    elif [[ $redis_state == down ]] && ((t >= t_restart)); then
      start_redis; restart_at=$(now); redis_state=restarted; event "redis:started"
    elif [[ $redis_state == restarted ]]; then
      scrape
      if [[ $(metric 'gatehouse_store_up{store="tickets"}') == 1 && $(metric 'gatehouse_store_up{store="revocation"}') == 1 ]]; then
        recovered=$(now); redis_state=up; event "redis:reconnected+$((recovered - restart_at))s"
      elif (($(now) - restart_at > 30)); then
        died+=" gatehouse-redis-reconnect"; redis_state=never; event "redis:NOT-reconnected"
      fi
    fi
    # -- sampling and liveness
    if ((t >= next_sample)); then
      local p name
      for p in "gatehouse:$GH_PID" "nginx:$NGINX_PID" "echo:$ECHO_PID" "ws-load:$HOLD_PID" "jwks:$JWKS_PID" "awk:$FILTER_PID"; do
        name=${p%%:*}
        kill -0 "${p#*:}" 2>/dev/null || { [[ $died == *" $name"* ]] || died+=" $name"; }
      done
      [[ $redis_state == down ]] || kill -0 "$REDIS_PID" 2>/dev/null || { [[ $died == *" redis"* ]] || died+=" redis"; }
      rss=$(rss_kib "$GH_PID"); fds=$(fd_count "$GH_PID")
      local prog wsopen
      prog=$(grep '^PROGRESS ' "$OUT/ws-hold.log" | tail -n1 || true)
      wsopen=$(kv open "$prog")
      echo "$(now),$t,$rss,$fds,${wsopen:--},$ev" >>"$OUT/samples.csv"
      ev=""
      [[ -z $base_rss ]] && ((t >= warm)) && base_rss=$rss
      next_sample=$((next_sample + SAMPLE_EVERY))
      [[ -z $died ]] || { log "died:$died; stopping the run"; break; }
    fi
    ((t >= DURATION)) && break
    sleep 0.5 & wait $! || true
  done
  end_segment

  # ---- teardown: WebSockets closed by the clients, then gatehouse (EOF ends the filter)
  scrape
  local reload_ok reload_err
  reload_ok=$(metric 'gatehouse_config_reloads_total{result="ok"}')
  reload_err=$(metric 'gatehouse_config_reloads_total{result="error"}')
  local jwks_ok
  jwks_ok=$(metric 'gatehouse_jwks_refresh_total{issuer="soak",result="ok"}')
  kill -TERM "$HOLD_PID" 2>/dev/null || true
  local i2
  for ((i2 = 0; i2 < 900 && $(kill -0 "$HOLD_PID" 2>/dev/null && echo 1 || echo 0); i2++)); do sleep 0.1; done
  stop_pid "$HOLD_PID"
  local end_rss end_fds
  end_rss=$(rss_kib "$GH_PID"); end_fds=$(fd_count "$GH_PID")
  kill -0 "$GH_PID" 2>/dev/null || [[ $died == *" gatehouse"* ]] || died+=" gatehouse"
  stop_pid "$GH_PID" 15
  for ((i2 = 0; i2 < 100 && $(kill -0 "$FILTER_PID" 2>/dev/null && echo 1 || echo 0); i2++)); do sleep 0.1; done
  stop_pid "$FILTER_PID"

  report "$T0" "$warm" "$base_rss" "$kill_at" "$recovered" "$ws_n" "$reload_ok" "$reload_err" \
    "$reload_want" "$died" "$end_rss" "$end_fds" "$jwks_ok" "$fd_note" "$restart_at"
}

# ---------------------------------------------------------------- report and verdict
report() {
  local T0=$1 warm=$2 base_rss=$3 kill_at=$4 recovered=$5 ws_n=$6 reload_ok=${7:-0} reload_err=${8:-0}
  local reload_want=$9 died=${10} end_rss=${11} end_fds=${12} jwks_ok=${13:-0} fd_note=${14} restart_at=${15}
  local fails=() md="$OUT/results.md"
  {
    echo "# gatehouse soak: ${DURATION}s"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, ${GATEHOUSE_BIN#"$ROOT"/} (built $GH_BUILT), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "Load: $HTTP_RATE req/s cached token ($HTTP_CONNECTIONS conns), $FRESH_PER_SEGMENT fresh tokens per ${RELOAD_EVERY}s segment, $TICKET_RATE ticket req/s, $ws_n WebSockets$fd_note with a message every ${WS_MESSAGE_EVERY}s each."
    echo
    echo "## RSS and open fds of gatehouse"
    echo
    echo '```'
    awk -F, 'NR > 1 { printf "%6ss  %9s KiB  %6s fds  %5s ws  %s\n", $2, $3, $4, $5, $6 }' "$OUT/samples.csv"
    echo '```'
  } >"$md"

  # -- RSS: the sample at the end of warm-up vs the highest of the last quarter
  local rss_max growth
  rss_max=$(awk -F, -v from=$((DURATION * 3 / 4)) 'NR > 1 && $2 >= from && $3 > m { m = $3 } END { print m + 0 }' "$OUT/samples.csv")
  if [[ -n $base_rss && $base_rss -gt 0 && $rss_max -gt 0 ]]; then
    growth=$(awk -v a="$base_rss" -v b="$rss_max" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
    awk -v g="$growth" -v l="$RSS_LIMIT_PCT" 'BEGIN { exit !(g > l) }' \
      && fails+=("RSS grew ${growth} % after warm-up (${base_rss} -> ${rss_max} KiB; limit ${RSS_LIMIT_PCT} %)")
  else
    growth="n/a"
    fails+=("no RSS samples after warm-up and in the last quarter")
  fi
  local fd_base
  fd_base=$(awk -F, -v w="$warm" 'NR > 1 && $2 >= w { print $4; exit }' "$OUT/samples.csv")

  # -- answers: every non-2xx access line, explained by the Redis window or not.
  # Window: from the kill to 5 s after gatehouse reported both stores up again.
  local w_from="9999" w_to="0000"
  if [[ -n $kill_at ]]; then
    w_from=$(iso $((kill_at - 1)))
    w_to=$(iso $((${recovered:-$((restart_at + 30))} + 5)))
  fi
  # The load generators are stopped and started again at every segment and at the end; a
  # request of theirs in flight then is cut by its own client (status 0, `unfinished`), at
  # most one per generator connection and stop.
  local cut_max=$(((DURATION / _seg + 1) * 32))
  awk -v from="$w_from" -v to="$w_to" '
    function field(k,   v) { v = $0; if (!sub(".*\"" k "\":", "", v)) return "?"; sub(/^"/, "", v); sub(/["},].*/, "", v); return v }
    /"status":/ {
      st = field("status"); rs = field("reason"); p = field("path"); sub(/\?.*/, "", p)
      ts = substr(field("timestamp"), 1, 19)
      ticket = (p == "/.gatehouse/ticket" || p == "/t")
      why = "UNEXPLAINED"
      if (ticket && ts >= from && ts <= to && st == 503 && rs == "store_unavailable") why = "redis-down"
      else if (p == "/t" && ts >= from && ts <= to && st == 401 && rs == "invalid_ticket") why = "ticket-lost-with-redis"
      else if (st == 0 && rs == "unfinished") why = "load-restart"
      n[why "\t" st "\t" rs "\t" p]++
      next
    }
    /"websocket_close"/ {
      rs = field("reason")
      n[(rs == "client_closed" ? "ws-end" : "UNEXPLAINED") "\tws-close\t" rs "\t/ws"]++
    }
    END { for (k in n) print n[k] "\t" k }' "$OUT/access-other.log" | sort -t$'\t' -k2,2 -k1,1nr >"$OUT/answers.txt"
  local unexplained non2xx_log ticket_explained
  unexplained=$(awk -F'\t' '$2 == "UNEXPLAINED" { n += $1 } END { print n + 0 }' "$OUT/answers.txt")
  non2xx_log=$(awk -F'\t' '$3 != "ws-close" { n += $1 } END { print n + 0 }' "$OUT/answers.txt")
  ticket_explained=$(awk -F'\t' '$2 != "UNEXPLAINED" && $3 != "ws-close" { n += $1 } END { print n + 0 }' "$OUT/answers.txt")
  ((unexplained == 0)) || fails+=("$unexplained answers unexplained (see below)")
  local cut
  cut=$(awk -F'\t' '$2 == "load-restart" { n += $1 } END { print n + 0 }' "$OUT/answers.txt")
  ((cut <= cut_max)) || fails+=("$cut requests cut by their clients, more than load restarts explain ($cut_max)")

  # -- wrk: requests, non-2xx, socket errors, ticket failures
  local f req=0 non=0 sock=0 tk_issued=0 tk_redeemed=0 tk_failed=0 line
  for f in "$OUT"/wrk/*.txt; do
    [[ -e $f ]] || continue
    req=$((req + $(awk '/ requests in / { print $1; exit }' "$f" || echo 0) + 0))
    non=$((non + $(awk '/Non-2xx or 3xx responses:/ { print $NF; exit }' "$f") + 0))
    sock=$((sock + $(awk -F'[ ,]+' '/Socket errors:/ { print $5 + $7 + $9 + $11; exit }' "$f") + 0))
    if line=$(grep '^bench_tickets ' "$f"); then
      tk_issued=$((tk_issued + $(kv issued "$line"))); tk_redeemed=$((tk_redeemed + $(kv redeemed "$line")))
      tk_failed=$((tk_failed + $(kv failed "$line")))
    fi
  done
  ((sock == 0)) || fails+=("wrk saw $sock socket errors")
  ((WRK_FAILED == 0)) || fails+=("$WRK_FAILED wrk runs failed")
  ((non <= non2xx_log)) || fails+=("wrk counted $non non-2xx answers, the access log only $non2xx_log")
  ((tk_failed <= ticket_explained)) || fails+=("$tk_failed ticket requests failed, only $ticket_explained explained")

  # -- WebSockets
  local res opened wf closed unacc echoes
  res=$(grep '^result ' "$OUT/ws-hold.log" || true)
  opened=$(kv opened "$res"); wf=$(kv failed_connections "$res"); closed=$(kv closed "$res")
  unacc=$(kv unaccounted "$res"); echoes=$(kv echoes "$res")
  if [[ -z $res ]]; then
    fails+=("ws-load printed no result line")
  else
    ((opened == ws_n && $(kv open_failures "$res") == 0)) || fails+=("WebSockets: $opened of $ws_n opened")
    ((wf == 0)) || fails+=("$wf WebSockets failed during the run (FAIL lines in $OUT/ws-hold.log)")
    ((closed == opened && unacc == 0)) || fails+=("WebSockets: $closed of $opened closed cleanly at the end, $unacc unaccounted")
  fi

  # -- reloads, components
  ((${reload_ok%.*} >= reload_want)) || fails+=("config reloads ok: ${reload_ok} of $reload_want")
  ((${reload_err%.*} == 0)) || fails+=("$reload_err config reloads failed")
  [[ -z $died ]] || fails+=("died or stuck:$died")

  {
    echo
    echo "Events (t in s): $(awk -F, 'NR > 1 { printf "%s%s@%s", (n++ ? ", " : ""), $3, $2 }' "$OUT/events.csv")."
    echo
    echo "## Answers that were not 2xx (access log), and WebSocket session ends"
    echo
    echo '```'
    if [[ -s $OUT/answers.txt ]]; then
      printf '%8s  %-22s %-9s %-20s %s\n' count explanation status reason path
      awk -F'\t' '{ printf "%8d  %-22s %-9s %-20s %s\n", $1, $2, $3, $4, $5 }' "$OUT/answers.txt"
    else
      echo "  none"
    fi
    echo '```'
    [[ -n $kill_at ]] && echo "Redis window for explained ticket answers: ${w_from}Z .. ${w_to}Z (kill − 1 s .. reconnect + 5 s)."
    echo
    echo "2xx/101 answers by route and status: $(sort "$OUT/access-counts.txt" 2>/dev/null | awk '{ printf "%s%s %s: %s", (n++ ? ", " : ""), $1, $2, $3 }')."
    echo "wrk: $req requests, $non non-2xx, $sock socket errors; tickets issued $tk_issued, redeemed $tk_redeemed, failed $tk_failed."
    echo "WebSockets: opened ${opened:-?}, echoes ${echoes:-?}, failed ${wf:-?}, closed cleanly ${closed:-?}."
    echo "Config reloads ok ${reload_ok} (wanted ≥ $reload_want), failed ${reload_err}; JWKS fetches ok ${jwks_ok}."
    echo "Warnings and errors in gatehouse's log (bench/out/soak/access-other.log), for information:"
    echo
    echo '```'
    grep -E '"level":"(WARN|ERROR)"' "$OUT/access-other.log" \
      | sed -E 's/.*"level":"([A-Z]+)","message":"((\\.|[^"\\])*)".*/\1 \2/; s/\\"/"/g' | cut -c1-100 \
      | sort | uniq -c | sort -rn | head -n 12 || true
    echo '```'
    echo
    echo "RSS: ${base_rss:-?} KiB at the end of warm-up (${warm}s), max ${rss_max} KiB in the last quarter: ${growth} % (limit ${RSS_LIMIT_PCT} %); after the WebSockets closed ${end_rss} KiB. fds: ${fd_base:-?} after warm-up, ${end_fds} after the WebSockets closed."
    echo
    if ((${#fails[@]})); then
      echo "**FAIL**"
      printf -- '- %s\n' "${fails[@]}"
    else
      echo "**PASS**"
    fi
  } >>"$md"
  echo
  cat "$md"
  ((${#fails[@]} == 0)) || exit 2
}

main "$@"
