#!/usr/bin/env bash
# gatehouse shared-store benchmark: what a redis:// store costs next to "memory".
#
# Two tests, each with [revocation] and [tickets] in the same store, memory or Redis
# (a redis-server this script starts on a free loopback port):
#   revocation  wrk -> gatehouse -> nginx with the same RS256 token on every request
#               (run.sh's "gatehouse" row) while REVOKED jtis are revoked. Every request
#               checks the revocation list, which gatehouse keeps as a local view
#               (synced by pub/sub + a periodic resync), so Redis must not be on the path.
#   tickets     one unit = POST /.gatehouse/ticket with the bearer token, then
#               GET /t?ticket=<it> (a route whose only token source is "ticket").
#               With Redis that is a SET ... NX and a GETDEL per unit.
# Figures: req/s (units/s), p99, gatehouse CPU-µs per request (unit) from /proc/PID/stat,
# redis-server's CPU-µs and commands per request (unit), medians over interleaved rounds.
#
# Everything listens on 127.0.0.1 only. Generated files go to bench/out/stores/.
# See bench/README.md, "Shared stores (bench/stores.sh)".
set -euo pipefail

# ---------------------------------------------------------------- settings
DURATION=${DURATION:-10}            # seconds per measured wrk run
CONNECTIONS=${CONNECTIONS:-32}      # wrk connections
ROUNDS=${ROUNDS:-3}                 # every (test, store) once per round; medians shown
WARMUP=${WARMUP:-1}                 # unmeasured seconds of the same load before each run
WRK_THREADS=${WRK_THREADS:-1}
TESTS=${TESTS:-revocation tickets}
STORES=${STORES:-memory redis}
REVOKED=${REVOKED:-10000}           # jtis revoked before any load (plus one for the preflight)
RESYNC=${RESYNC:-1s}                # [revocation] resync (gatehouse's default is 1s)
MAX_OTHER=${MAX_OTHER:-10}          # a run with more "other load" (% of a core) is noisy...
RETRY_NOISY=${RETRY_NOISY:-2}       # ...and is run again, up to this many times
IDLE=${IDLE:-5}                     # revocation runs: seconds of no load measured first (0: skip)
TOKEN_TTL=${TOKEN_TTL:-3600}
PROXY_CPU=${PROXY_CPU:-0}           # gatehouse
LOAD_CPU=${LOAD_CPU:-1}             # wrk
UPSTREAM_CPU=${UPSTREAM_CPU:-$LOAD_CPU} # nginx
REDIS_CPU=${REDIS_CPU:-$LOAD_CPU}   # redis-server: off the proxy's core, like the upstream
ACCESS_LOG=${ACCESS_LOG:-/dev/null}
READY_TIMEOUT=${READY_TIMEOUT:-30}
BUILD=${BUILD:-auto}                # auto: cargo build --release when the binary is stale; 0: never
DEFAULT_BIN=0
[[ -z ${GATEHOUSE_BIN:-} ]] && DEFAULT_BIN=1
GATEHOUSE_BIN=${GATEHOUSE_BIN:-target/release/gatehouse}

ISSUER="https://bench.example/"
AUDIENCE="bench"

export PATH="$PATH:/usr/sbin:/sbin"

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT="$BENCH/out/stores"
TPL="$BENCH/templates"
cd "$ROOT"
[[ $GATEHOUSE_BIN == /* ]] || GATEHOUSE_BIN="$ROOT/$GATEHOUSE_BIN"

log() { printf '[stores %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# die, process bookkeeping, ports, templates, readiness, CPU accounting: shared.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

for v in DURATION CONNECTIONS ROUNDS WARMUP WRK_THREADS REVOKED TOKEN_TTL READY_TIMEOUT IDLE MAX_OTHER RETRY_NOISY; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && CONNECTIONS > 0 && ROUNDS > 0 && WRK_THREADS > 0)) \
  || die "DURATION, CONNECTIONS, ROUNDS and WRK_THREADS must be > 0"
[[ $RESYNC =~ ^[0-9]+(ms|s)$ ]] || die "RESYNC must look like 1s or 500ms, got '$RESYNC'"

# ---------------------------------------------------------------- processes and teardown
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [[ -n ${NGINX_WORKER:-} ]] && kill -0 "$NGINX_WORKER" 2>/dev/null; then
    kill -KILL "$NGINX_WORKER" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools and build
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
  for t in openssl curl taskset ss base64 getconf timeout; do
    command -v "$t" >/dev/null || die "'$t' is required but not installed"
  done
}


# ---------------------------------------------------------------- CPU accounting

# child_ticks: cutime + cstime (fields 16, 17) of this shell: the CPU of every child
# it has waited for, and theirs. Read around wrk, the difference is wrk's CPU.
child_ticks() {
  local stat rest f
  stat=$(<"/proc/$$/stat")
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  echo $((f[13] + f[14]))
}
# machine_ticks: busy time of all CPUs (user nice system irq softirq from /proc/stat).
# Softirq work done in a process's context (loopback TCP) is in that process's stime too.
machine_ticks() {
  local cpu user nice system idle iowait irq softirq rest
  read -r cpu user nice system idle iowait irq softirq rest </proc/stat
  echo $((user + nice + system + irq + softirq))
}

# ---------------------------------------------------------------- keys and tokens
# The RSA key is shared with run.sh and ws.sh (bench/out/key.pem) and created only if
# missing; the public half and every token live in bench/out/stores.
KEY="$BENCH/out/key.pem"
PUB="$OUT/pub.pem"
JWT_HEADER='{"alg":"RS256","typ":"JWT","kid":"bench"}'
CLAIMS_FMT='{"iss":"%s","aud":"%s","sub":"bench-user","scope":"api","iat":%d,"exp":%d,"jti":"%s"}'

make_keys() {
  if [[ ! -s $KEY ]]; then
    log "generating RSA 2048 key in $KEY"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY.tmp.$$" 2>/dev/null
    mv -n "$KEY.tmp.$$" "$KEY" 2>/dev/null || true
    rm -f "$KEY.tmp.$$"
  fi
  openssl pkey -in "$KEY" -pubout -out "$PUB"
}

# mint_token JTI [AUD] [AGE]: one RS256 JWT with that jti.
mint_token() {
  local jti=$1 aud=${2:-$AUDIENCE} age=${3:-0} now exp h p s claims
  now=$(($(date +%s) - age))
  exp=$((now + TOKEN_TTL))
  printf -v claims "$CLAIMS_FMT" "$ISSUER" "$aud" "$now" "$exp" "$jti"
  h=$(printf '%s' "$JWT_HEADER" | b64url)
  p=$(printf '%s' "$claims" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$KEY" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}

# ---------------------------------------------------------------- servers
NGINX_PID="" NGINX_WORKER="" NGINX_PORT="" NGINX_PORT2=""
start_nginx() {
  free_port NGINX_PORT
  free_port NGINX_PORT2   # the template's second listener (run.sh's balanced rows)
  mkdir -p "$OUT/nginx-tmp"
  render "$TPL/nginx.conf.tmpl" "$OUT/nginx.conf" OUT="$OUT" NGINX_PORT="$NGINX_PORT" \
    NGINX_PORT2="$NGINX_PORT2"
  : >"$OUT/nginx-error.log"
  taskset -c "$UPSTREAM_CPU" nginx -p "$OUT" -e "$OUT/nginx-error.log" -c "$OUT/nginx.conf" \
    >"$OUT/nginx.stdout.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" nginx 200 \
    || { tail -n 20 "$OUT/nginx-error.log" >&2; die "nginx did not start"; }
  NGINX_WORKER=$(awk '{print $1}' "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null || true)
  [[ -n $NGINX_WORKER ]] || NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n1)
  [[ -n $NGINX_WORKER ]] || die "cannot find the nginx worker process"
  measured_pid_ok "$NGINX_WORKER" nginx || die "wrong nginx worker PID"
  log "nginx on 127.0.0.1:$NGINX_PORT (master $NGINX_PID, worker $NGINX_WORKER, cpu $UPSTREAM_CPU)"
}

REDIS_PID="" REDIS_PORT=""
rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
start_redis() {
  free_port REDIS_PORT
  mkdir -p "$OUT/redis"
  # No persistence, loopback only; the data directory is ours in case a save is forced.
  taskset -c "$REDIS_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --protected-mode yes --save '' --appendonly no --daemonize no \
    --dir "$OUT/redis" --logfile "$OUT/redis.log" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  local deadline=$((SECONDS + READY_TIMEOUT))
  until [[ $(rcli ping 2>/dev/null || true) == PONG ]]; do
    kill -0 "$REDIS_PID" 2>/dev/null || { tail -n 20 "$OUT/redis.log" >&2; die "redis-server exited"; }
    ((SECONDS < deadline)) || die "redis-server not ready after ${READY_TIMEOUT}s"
    sleep 0.1
  done
  measured_pid_ok "$REDIS_PID" redis-server || die "wrong redis-server PID"
  log "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID, cpu $REDIS_CPU)"
}
redis_commands() { rcli info stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'; }
redis_keys() { rcli --scan --pattern "$1" | wc -l; }
redis_calls() {  # COMMAND: how often redis-server has run it (INFO commandstats)
  rcli info commandstats | tr -d '\r' | awk -F'[:=,]' -v c="cmdstat_$1" '$1 == c { n = $3 } END { print n + 0 }'
}

# ---------------------------------------------------------------- gatehouse
GH_PID="" GH_PORT="" GH_ADMIN_PORT=""
ADMIN_SECRET=""
declare -A GH_CONFIG

gatehouse_configs() {
  local store url
  free_port GH_PORT
  free_port GH_ADMIN_PORT
  for store in $STORES; do
    case $store in
      memory) url=memory ;;
      redis) url="redis://127.0.0.1:$REDIS_PORT/0" ;;
    esac
    GH_CONFIG[$store]="$OUT/gatehouse-$store.toml"
    render "$TPL/gatehouse-stores.toml.tmpl" "${GH_CONFIG[$store]}" PORT="$GH_PORT" \
      ADMIN_PORT="$GH_ADMIN_PORT" NGINX_PORT="$NGINX_PORT" PUB_PEM="$PUB" \
      ISSUER="$ISSUER" AUDIENCE="$AUDIENCE" STORE="$url" RESYNC="$RESYNC"
    if ! "${GH_ENV[@]}" "$GATEHOUSE_BIN" check --config "${GH_CONFIG[$store]}" \
      >"$OUT/gatehouse-$store.check.log" 2>&1; then
      cat "$OUT/gatehouse-$store.check.log" >&2
      die "gatehouse check rejected ${GH_CONFIG[$store]}"
    fi
  done
}

start_gatehouse() {  # STORE
  local cfg=${GH_CONFIG[$1]}
  if [[ -z ${GH_CMD_LOGGED:-} ]]; then
    log "gatehouse command: $(printf '%q ' env -u GATEHOUSE_BIN GATEHOUSE_RUNTIME__WORKER_THREADS=1 BENCH_ADMIN_TOKEN=… taskset -c "$PROXY_CPU" "$GATEHOUSE_BIN" run --config "$cfg")>$ACCESS_LOG"
    GH_CMD_LOGGED=1
  fi
  "${GH_ENV[@]}" taskset -c "$PROXY_CPU" "$GATEHOUSE_BIN" run --config "$cfg" \
    >"$ACCESS_LOG" 2>>"$OUT/gatehouse.stderr.log" &
  GH_PID=$!
  PIDS+=("$GH_PID")
  if ! wait_http "http://127.0.0.1:$GH_ADMIN_PORT/readyz" "$GH_PID" gatehouse 200; then
    tail -n 20 "$OUT/gatehouse.stderr.log" >&2
    stop_gatehouse
    return 1
  fi
  measured_pid_ok "$GH_PID" gatehouse || { stop_gatehouse; return 1; }
}

# The revocation list: REVOKED random jtis plus the jti of $REVOKED_TOKEN. One curl
# process posts them all over one keep-alive connection (a config file with one
# block per request, separated by "next").
REVOKE_CURL="$OUT/revoke.curl"
write_revoke_requests() {
  local i jti
  {
    for ((i = 0; i <= REVOKED; i++)); do
      if ((i == 0)); then jti=$REVOKED_JTI; else new_jti jti; fi
      printf 'url = "http://127.0.0.1:%s/revocations"\n' "$GH_ADMIN_PORT"
      printf 'header = "Authorization: Bearer %s"\n' "$ADMIN_SECRET"
      printf 'header = "Content-Type: application/json"\n'
      printf 'data = "{\\"jti\\":\\"%s\\"}"\n' "$jti"
      printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'
      ((i == REVOKED)) || printf 'next\n'
    done
  } >"$REVOKE_CURL"
  chmod 600 "$REVOKE_CURL"
}

listed_revocations() {
  curl -s --max-time 10 -H "Authorization: Bearer $ADMIN_SECRET" \
    "http://127.0.0.1:$GH_ADMIN_PORT/revocations" | grep -o '"jti"' | wc -l
}

# load_revocations STORE: makes gatehouse's local view hold all REVOKED + 1 entries.
# memory: POSTed after every start (the list dies with the process). Redis: POSTed once,
# the first time the server lacks them; a restarted gatehouse reads them back (resync).
load_revocations() {
  local store=$1 want=$((REVOKED + 1)) codes ok t0 have deadline
  if [[ $store == memory ]] || (($(redis_keys 'gatehouse:revoked:*') < want)); then
    t0=$SECONDS
    codes=$(timeout 600 curl -s --config "$REVOKE_CURL") || { log "posting revocations failed"; return 1; }
    ok=$(grep -c '^204$' <<<"$codes" || true)
    ((ok == want)) || { log "POST /revocations: $ok of $want answered 204 ($(sort <<<"$codes" | uniq -c | tr '\n' ' '))"; return 1; }
    log "revoked $want jtis through POST /revocations in $((SECONDS - t0)) s ($store)"
  fi
  deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    have=$(listed_revocations)
    ((have >= want)) && return 0
    ((SECONDS < deadline)) || { log "GET /revocations lists $have, want $want"; return 1; }
    sleep 0.2
  done
}

# run_bg OUTPUT CMD...: runs CMD in the background with stdout and stderr to OUTPUT and
# waits for it. A signal to this script interrupts `wait` (a foreground command would
# delay the trap until it ends), and the trap then stops CMD with the rest.
run_bg() {
  local dst=$1 pid rc=0
  shift
  "$@" >"$dst" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  forget_pid "$pid"
  return "$rc"
}

# preflight STORE: the route checks tokens and revocations, the ticket flow works once,
# and with Redis the ticket really went through Redis (a SET to issue, a GETDEL to redeem).
preflight() {
  local store=$1 base="http://127.0.0.1:$GH_PORT" ok none bad rev body ticket issue once twice rev_issue
  local set0=0 set1=0 del0=0 del1=0 via=""
  ok=$(http_code "$base/" -H "Authorization: Bearer $TOKEN")
  none=$(http_code "$base/")
  bad=$(http_code "$base/" -H "Authorization: Bearer $TAMPERED")
  rev=$(http_code "$base/" -H "Authorization: Bearer $REVOKED_TOKEN")
  [[ $store == redis ]] && { set0=$(redis_calls set); del0=$(redis_calls getdel); }
  body=$(curl -s --max-time 5 -w '\n%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" "$base/.gatehouse/ticket" || true)
  issue=${body##*$'\n'}
  ticket=$(sed -n 's/.*"ticket" *: *"\([^"]*\)".*/\1/p' <<<"${body%$'\n'*}")
  [[ $store == redis ]] && set1=$(redis_calls set)
  once=$(http_code "$base/t?ticket=$ticket")
  [[ $store == redis ]] && { del1=$(redis_calls getdel); via=" (redis SET +$((set1 - set0)), GETDEL +$((del1 - del0)))"; }
  twice=$(http_code "$base/t?ticket=$ticket")
  rev_issue=$(http_code "$base/.gatehouse/ticket" -X POST -H "Authorization: Bearer $REVOKED_TOKEN")
  log "$store preflight: valid=$ok none=$none tampered=$bad revoked=$rev ticket=$issue$via redeem=$once again=$twice revoked-ticket=$rev_issue"
  [[ $ok == 200 && $none == 401 && $rev == 401 && $issue == 201 && -n $ticket && $once == 200 ]] \
    && denied "$bad" && denied "$twice" && denied "$rev_issue" \
    && { [[ $store != redis ]] || ((set1 > set0 && del1 > del0)); }
}

# ---------------------------------------------------------------- load
RESULTS="$OUT/runs.csv"
FLAGGED=0
declare -A SKIP

# run_one ROUND TEST STORE: start gatehouse, load the revocations, preflight, warm-up,
# one measured wrk run, one line in runs.csv.
run_one() {
  local round=$1 test=$2 store=$3 name="$2/$3" url script=() hdr=() raw ok=1 out
  local g0 g1 r0 r1 n0 n1 w0 w1 m0 m1 k0 k1 requests secs rps p99 non2xx sockerr count
  local gh_us gh_pct redis_us redis_pct cmds_per nginx_us other_pct note="" line
  LAST_OTHER=""
  if ! start_gatehouse "$store"; then
    log "FLAG $name: gatehouse did not become ready; round $round skipped"
    SKIP[$name]="did not start"; FLAGGED=1; return 0
  fi
  if ! load_revocations "$store" || ! preflight "$store"; then
    log "FLAG $name: revocations or preflight failed; round $round skipped"
    SKIP[$name]="preflight failed"; FLAGGED=1; stop_gatehouse; return 0
  fi
  if [[ $test == revocation ]]; then
    url="http://127.0.0.1:$GH_PORT/"
    hdr=(-H "Authorization: Bearer $TOKEN")
  else
    url="http://127.0.0.1:$GH_PORT/.gatehouse/ticket"
    script=(-s "$BENCH/tickets.lua")
  fi
  export BENCH_TOKEN=$TOKEN
  # Background cost with no load at all: with Redis, the health pings and the resync
  # (SCAN + MGET of every revocation key, each parsed as JSON) every RESYNC.
  local idle_gh="" idle_redis=""
  if [[ $test == revocation ]] && ((IDLE > 0)); then
    local i0 i1 j0 j1 t0 t1
    t0=$EPOCHREALTIME; i0=$(cpu_ticks "$GH_PID"); j0=$(cpu_ticks "$REDIS_PID")
    run_bg /dev/null sleep "$IDLE"   # interruptible, unlike a foreground sleep
    i1=$(cpu_ticks "$GH_PID"); j1=$(cpu_ticks "$REDIS_PID"); t1=$EPOCHREALTIME
    idle_gh=$(awk -v t=$((i1 - i0)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", t / hz / (b - a) * 100 }')
    idle_redis=$(awk -v t=$((j1 - j0)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", t / hz / (b - a) * 100 }')
  fi
  if ((WARMUP > 0)); then
    run_bg /dev/null timeout $((WARMUP + 30)) taskset -c "$LOAD_CPU" \
      wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "${script[@]}" "${hdr[@]}" "$url" || true
  fi
  raw="$OUT/wrk/r${round}-$test-$store.txt"
  k0=$(redis_commands)
  m0=$(machine_ticks); r0=$(cpu_ticks "$REDIS_PID"); n0=$(cpu_ticks "$NGINX_WORKER")
  g0=$(cpu_ticks "$GH_PID") || { log "FLAG $name: gatehouse is gone"; FLAGGED=1; stop_gatehouse; return 0; }
  w0=$(child_ticks)
  run_bg "$raw" timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" \
    wrk --latency -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "${script[@]}" "${hdr[@]}" "$url" || ok=0
  w1=$(child_ticks)
  g1=$(cpu_ticks "$GH_PID") || g1=""
  n1=$(cpu_ticks "$NGINX_WORKER"); r1=$(cpu_ticks "$REDIS_PID"); m1=$(machine_ticks)
  k1=$(redis_commands)
  out=$(<"$raw")
  stop_gatehouse

  requests=$(awk '/ requests in / {print $1; exit}' <<<"$out")
  secs=$(awk '/ requests in / {s = $4; sub(/s,?$/, "", s); print s; exit}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2; exit}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF; exit}' <<<"$out")
  sockerr=$(awk -F'[ ,]+' '/Socket errors:/ {print $5 + $7 + $9 + $11; exit}' <<<"$out")
  non2xx=${non2xx:-0}
  sockerr=${sockerr:-0}
  if ((ok == 0)) || [[ -z $requests || -z $secs || -z $p99 || -z $g1 ]] || ((requests == 0)); then
    log "FLAG $name round $round: wrk or gatehouse failed, see $raw"
    FLAGGED=1; return 0
  fi
  count=$requests
  if [[ $test == tickets ]]; then
    # One unit = one issue + one redeem; units are the redeemed tickets.
    line=$(grep '^bench_tickets ' <<<"$out" || true)
    local issued redeemed failed queued
    issued=$(sed -n 's/.*issued=\([0-9]*\).*/\1/p' <<<"$line")
    redeemed=$(sed -n 's/.*redeemed=\([0-9]*\).*/\1/p' <<<"$line")
    failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$line")
    queued=$(sed -n 's/.*queued=\([0-9]*\).*/\1/p' <<<"$line")
    if [[ -z $redeemed ]] || ((redeemed == 0)); then
      log "FLAG $name round $round: no ticket redeemed, see $raw"
      FLAGGED=1; return 0
    fi
    count=$redeemed
    note="issued=$issued redeemed=$redeemed failed=$failed queued_at_end=$queued"
    ((failed == 0)) || { log "FLAG $name round $round: $failed ticket requests failed"; FLAGGED=1; }
  fi
  rps=$(awk -v n="$count" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
  # per-unit CPU: ticks -> µs, divided by requests (revocation) or units (tickets)
  per() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$count" 'BEGIN { printf "%.3f", t * 1e6 / hz / n }'; }
  pct() { awk -v t="$1" -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.1f", t / hz / s * 100 }'; }
  gh_us=$(per $((g1 - g0)))
  gh_pct=$(pct $((g1 - g0)))
  redis_us=$(per $((r1 - r0)))
  redis_pct=$(pct $((r1 - r0)))
  nginx_us=$(per $((n1 - n0)))
  other_pct=$(pct $(((m1 - m0) - (g1 - g0) - (r1 - r0) - (n1 - n0) - (w1 - w0))))
  # The second INFO is counted too: one command of ours.
  cmds_per=$(awk -v a="$k0" -v b="$k1" -v n="$count" 'BEGIN { printf "%.5f", (b - a - 1) / n }')
  p99=$(to_ms "$p99")
  if ((non2xx > 0 || sockerr > 0)); then
    log "FLAG $name round $round: $non2xx non-2xx responses, $sockerr socket errors (see $raw)"
    FLAGGED=1
  fi
  echo "$round,$test,$store,$rps,$p99,$count,$requests,$gh_us,$gh_pct,$redis_us,$redis_pct,$cmds_per,$nginx_us,$other_pct,$non2xx,$sockerr,$idle_gh,$idle_redis,$note" >>"$RESULTS"
  ((non2xx > 0 || sockerr > 0)) || LAST_OTHER=$other_pct
  log "$(printf '%-18s r%s %9s/s  p99 %7s ms  gatehouse %7s µs %5s%%  redis %6s µs %5s%% %8s cmds  other %5s%%  non-2xx %s  sockerr %s%s' \
    "$name" "$round" "$rps" "$p99" "$gh_us" "$gh_pct" "$redis_us" "$redis_pct" "$cmds_per" "$other_pct" "$non2xx" "$sockerr" \
    "${idle_gh:+  (idle: gatehouse $idle_gh%, redis $idle_redis%)}")"
}

# ---------------------------------------------------------------- report
median() {
  sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) print "";
    else if (NR % 2) print a[(NR + 1) / 2];
    else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
col_median() {  # TEST STORE COLUMN
  awk -F, -v t="$1" -v s="$2" -v c="$3" '$2 == t && $3 == s { print $c }' "$RESULTS" | median
}
ratio() {
  if [[ -n $1 && -n $2 ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'
  else
    echo "n/a"
  fi
}

table() {  # TEST UNIT
  local test=$1 unit=$2 store runs rps p99 gh ghp rus rpct cmds other non2xx sock flag
  local cmd_scale=1 cmd_label="Redis cmds/$unit" rate_label="${unit}s/s"
  [[ $unit == req ]] && rate_label="req/s"
  [[ $test == revocation ]] && { cmd_scale=1000; cmd_label="Redis cmds/1k req"; }
  echo "| store | $rate_label | p99 ms | gatehouse CPU-µs/$unit | gatehouse CPU % | redis-server CPU-µs/$unit | redis-server CPU % | $cmd_label | other load % | non-2xx | runs |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for store in $STORES; do
    runs=$(awk -F, -v t="$test" -v s="$store" '$2 == t && $3 == s' "$RESULTS" | wc -l)
    if ((runs == 0)); then
      echo "| $store | – | – | – | – | – | – | – | – | – | 0 (${SKIP[$test/$store]:-no run}) |"
      continue
    fi
    rps=$(col_median "$test" "$store" 4)
    p99=$(col_median "$test" "$store" 5)
    gh=$(col_median "$test" "$store" 8)
    ghp=$(col_median "$test" "$store" 9)
    rus=$(col_median "$test" "$store" 10)
    rpct=$(col_median "$test" "$store" 11)
    cmds=$(col_median "$test" "$store" 12)
    other=$(col_median "$test" "$store" 14)
    non2xx=$(awk -F, -v t="$test" -v s="$store" '$2 == t && $3 == s { n += $15 } END { print n + 0 }' "$RESULTS")
    sock=$(awk -F, -v t="$test" -v s="$store" '$2 == t && $3 == s { n += $16 } END { print n + 0 }' "$RESULTS")
    flag=""
    ((non2xx + sock == 0)) || flag=" ⚠"
    local label=$store
    [[ $store == memory ]] && label="memory (redis-server idle)"
    printf '| %s | %.0f | %.2f | %.2f | %.0f | %.3f | %.1f | %s | %.0f | %s%s | %s |\n' \
      "$label" "$rps" "$p99" "$gh" "$ghp" "$rus" "$rpct" \
      "$(awk -v c="$cmds" -v k="$cmd_scale" 'BEGIN { printf (k > 1 ? "%.2f" : "%.3f"), c * k }')" \
      "$other" "$non2xx" "$flag" "$runs"
  done
  if [[ " $STORES " == *" memory "* && " $STORES " == *" redis "* ]]; then
    local rm rr gm gr
    rm=$(col_median "$test" memory 4); rr=$(col_median "$test" redis 4)
    gm=$(col_median "$test" memory 8); gr=$(col_median "$test" redis 8)
    echo
    echo "Redis ÷ memory: $rate_label **$(ratio "$rr" "$rm")×**, gatehouse CPU-µs/$unit **$(ratio "$gr" "$gm")×**."
  fi
  if [[ $test == revocation ]] && ((IDLE > 0)); then
    local parts="" im ir
    for store in $STORES; do
      im=$(col_median "$test" "$store" 17)
      ir=$(col_median "$test" "$store" 18)
      [[ -n $im ]] && parts+="${parts:+; }$store: gatehouse $(printf '%.2f' "$im") %, redis-server $(printf '%.2f' "$ir") %"
    done
    echo
    echo "With no load at all (${IDLE}s measured before each run, CPU % of one core): $parts."
  fi
}

report() {
  local md="$OUT/../stores-results.md" t
  {
    echo "# gatehouse shared stores: memory vs Redis"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r)."
    echo "gatehouse: ${GATEHOUSE_BIN#"$ROOT"/} built $(date -r "$GATEHOUSE_BIN" '+%F %H:%M'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); restarted before every run, 1 worker thread on core $PROXY_CPU, access log to $ACCESS_LOG.${GH_NOTE:+ **$GH_NOTE.**}"
    echo "wrk (core $LOAD_CPU): $CONNECTIONS connections, $WRK_THREADS thread(s), ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS interleaved rounds, medians shown. nginx upstream on core $UPSTREAM_CPU, $(redis-server --version | cut -d' ' -f1-3) on core $REDIS_CPU."
    echo "Revocation list: $((REVOKED + 1)) revoked jtis in both stores; [revocation] resync = $RESYNC; [tickets] and [revocation] use the same store."
    for t in $TESTS; do
      echo
      if [[ $t == revocation ]]; then
        echo "## Requests with a revocation check (same RS256 token in the header, nginx upstream)"
        echo
        table revocation req
      else
        echo "## Tickets: POST /.gatehouse/ticket, then GET /t?ticket= (one unit = issue + redeem)"
        echo
        table tickets unit
        echo
        echo "p99 is per request (POST or GET), not per unit."
      fi
    done
    local noisy
    noisy=$(awk -F, -v m="$MAX_OTHER" 'NR > 1 && $14 > m' "$RESULTS" | wc -l)
    echo
    echo "Runs with other load above ${MAX_OTHER} % of a core were repeated (up to ${RETRY_NOISY} times); ${noisy} of the runs kept are still above it."
    echo
    if ((FLAGGED)); then
      echo "**⚠ Some runs were flagged (non-2xx answers, socket errors, failed preflight or runs): their figures are not trustworthy. See the log and bench/out/stores/wrk/.**"
    else
      echo "All measured requests got 2xx answers; no socket errors."
    fi
    echo
    echo "Per-run figures: bench/out/stores/runs.csv; raw wrk output: bench/out/stores/wrk/."
  } >"$md"
  echo
  cat "$md"
}

# ---------------------------------------------------------------- main
main() {
  local t s
  for t in $TESTS; do [[ $t == revocation || $t == tickets ]] || die "unknown test '$t' (revocation, tickets)"; done
  for s in $STORES; do [[ $s == memory || $s == redis ]] || die "unknown store '$s' (memory, redis)"; done
  mkdir -p "$OUT/wrk"
  rm -f "$OUT"/wrk/*.txt "$OUT/gatehouse.stderr.log"
  ensure_tools
  build_gatehouse || die "no gatehouse binary at $GATEHOUSE_BIN"
  echo "round,test,store,rate,p99_ms,units,requests,gh_cpu_us,gh_cpu_pct,redis_cpu_us,redis_cpu_pct,redis_cmds_per_unit,nginx_cpu_us,other_pct,non2xx,socket_errors,idle_gh_pct,idle_redis_pct,note" >"$RESULTS"

  make_keys
  local jti
  new_jti jti
  TOKEN=$(mint_token "$jti")
  REVOKED_JTI=""
  new_jti REVOKED_JTI
  REVOKED_TOKEN=$(mint_token "$REVOKED_JTI")
  local sig=${TOKEN##*.} c
  c=${sig:100:1}
  [[ $c == A ]] && c=B || c=A
  TAMPERED="${TOKEN%.*}.${sig:0:100}${c}${sig:101}"
  ADMIN_SECRET=$(openssl rand -hex 24)
  GH_ENV=(env -u GATEHOUSE_BIN GATEHOUSE_RUNTIME__WORKER_THREADS=1 "BENCH_ADMIN_TOKEN=$ADMIN_SECRET")

  start_nginx
  start_redis
  gatehouse_configs
  write_revoke_requests

  local entries=() n r i attempt
  for t in $TESTS; do for s in $STORES; do entries+=("$t $s"); done; done
  n=${#entries[@]}
  for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS"
    for ((i = 0; i < n; i++)); do
      # A run during which something else used the machine (other load > MAX_OTHER) is
      # replaced by a new one, after a pause, up to RETRY_NOISY times.
      for ((attempt = 0; ; attempt++)); do
        # shellcheck disable=SC2086
        run_one "$r" ${entries[(i + r - 1) % n]}
        if [[ -n $LAST_OTHER ]] && ((attempt < RETRY_NOISY)) \
          && awk -v o="$LAST_OTHER" -v m="$MAX_OTHER" 'BEGIN { exit !(o > m) }'; then
          log "noisy: other load ${LAST_OTHER}% > ${MAX_OTHER}%; running it again in 15 s"
          sed -i '$d' "$RESULTS"
          run_bg /dev/null sleep 15
          continue
        fi
        break
      done
    done
  done

  report
  if ((FLAGGED)); then
    log "some runs were flagged; see above"
    exit 2
  fi
}

main "$@"
