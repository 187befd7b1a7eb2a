#!/usr/bin/env bash
# gatehouse benchmark harness.
#
# Measures throughput, p99 latency and, above all, proxy CPU time per request for:
#   nginx            wrk -> nginx directly (the upstream alone; CPU column = nginx worker)
#   haproxy_plain    wrk -> HAProxy (no checks) -> nginx
#   nginx_proxy      wrk -> nginx proxy_pass (no checks) -> nginx
#   haproxy_jwt      wrk -> HAProxy (jwt_verify RS256 + iss/aud/exp on every request) -> nginx
#   gatehouse        wrk -> gatehouse -> nginx, the same token on every request
#   gatehouse_fresh  wrk -> gatehouse -> nginx, a token never seen before on every request
#   gatehouse_balanced  as gatehouse, on a route with two endpoints (both nginx), balanced
#   gatehouse_affinity  as gatehouse_balanced with affinity = "signalr", every request
#                    carrying a sealed SignalR ?id= (unsealed and pinned on each request)
#   gatehouse_hub    the affinity row's request (the same sealed ?id=, forwarded as it is)
#                    on a route with one endpoint: the base the affinity row is compared with
# Optional (TARGETS=...): haproxy_jwt_fresh, the fresh-token driver against HAProxy,
# which shows what the Lua-driven load generator itself costs; and with BASE_BIN set, any
# gatehouse row with "_base" appended (gatehouse_nolog_base): the same row run by the
# BASE_BIN build, so two builds are compared in one interleaved run.
#
# Everything listens on 127.0.0.1 only. Generated files go to bench/out/ (gitignored).
# See bench/README.md for how to read the figures.
set -euo pipefail

# ---------------------------------------------------------------- settings
DURATION=${DURATION:-10}            # seconds per measured wrk run
CONNECTIONS=${CONNECTIONS:-32}      # wrk connections (fixed, so runs are comparable)
ROUNDS=${ROUNDS:-3}                 # every target once per round; the table shows medians
WARMUP=${WARMUP:-1}                 # unmeasured seconds of load before each run (0: none)
WRK_THREADS=${WRK_THREADS:-1}       # wrk has one core; more threads would only contend
RATE=${RATE:-0}                     # >0: offer about RATE req/s (bench/fixed-rate.lua); 0: saturate
FRESH_TOKENS=${FRESH_TOKENS:-50000} # distinct tokens per first-seen run (see README)
TOKEN_TTL=${TOKEN_TTL:-3600}        # exp = iat + TOKEN_TTL for the repeated token
# The bulk tokens cost ~2.5 ms each to mint and are cached in bench/out, so they get a
# longer life: one minting serves a day of bench runs.
FRESH_TOKEN_TTL=${FRESH_TOKEN_TTL:-86400}
PROXY_CPU=${PROXY_CPU:-0}           # core for the proxy under test
LOAD_CPU=${LOAD_CPU:-1}             # core for wrk
UPSTREAM_CPU=${UPSTREAM_CPU:-$LOAD_CPU} # core for nginx; kept off the proxy's core
SEND_TOKEN_TO_ALL=${SEND_TOKEN_TO_ALL:-1} # 1: plain targets get the same Authorization header
ACCESS_LOG=${ACCESS_LOG:-/dev/null} # where gatehouse's stdout (access log) goes
# 1: count the proxy's system calls and context switches per request with perf stat
# (tracepoint counting costs a little per system call, so it is off by default).
SYSCALLS=${SYSCALLS:-0}
READY_TIMEOUT=${READY_TIMEOUT:-30}  # seconds to wait for a server to come up
GATEHOUSE_BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
BASE_BIN=${BASE_BIN:-}
TARGETS=${TARGETS:-nginx haproxy_plain haproxy_jwt gatehouse gatehouse_fresh}
# The signing algorithm of every token in the run, for HAProxy jwt_verify and gatehouse
# alike: RS256 (RSA 2048) or ES256 (P-256).
JWT_ALG=${JWT_ALG:-RS256}

ISSUER="https://bench.example/"
AUDIENCE="bench"

# haproxy and nginx live in /usr/sbin, which a non-login shell may not have in PATH.
export PATH="$PATH:/usr/sbin:/sbin"

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT="$BENCH/out"
TPL="$BENCH/templates"
cd "$ROOT"   # GATEHOUSE_BIN is relative to the repository root
[[ $GATEHOUSE_BIN == /* ]] || GATEHOUSE_BIN="$ROOT/$GATEHOUSE_BIN"
[[ -z $BASE_BIN || $BASE_BIN == /* ]] || BASE_BIN="$ROOT/$BASE_BIN"

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# die, process bookkeeping, ports, templates, readiness, CPU accounting: shared.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

for v in DURATION CONNECTIONS ROUNDS WARMUP WRK_THREADS RATE FRESH_TOKENS TOKEN_TTL FRESH_TOKEN_TTL READY_TIMEOUT SYSCALLS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && CONNECTIONS > 0 && ROUNDS > 0 && WRK_THREADS > 0)) \
  || die "DURATION, CONNECTIONS, ROUNDS and WRK_THREADS must be > 0"

# ---------------------------------------------------------------- processes and teardown

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  # Newest first: proxies before the upstream they use.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    stop_pid "$pid"
  done
  # nginx workers normally exit with their master; make sure of it.
  if [[ -n ${NGINX_WORKER:-} ]] && kill -0 "$NGINX_WORKER" 2>/dev/null; then
    kill -KILL "$NGINX_WORKER" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT   # exit runs the EXIT trap
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
ensure_tools() {
  local missing=() t
  for t in haproxy nginx wrk; do command -v "$t" >/dev/null || missing+=("$t"); done
  if ((${#missing[@]})); then
    log "missing: ${missing[*]}; installing haproxy nginx-light wrk with apt-get"
    [[ $(id -u) == 0 ]] || die "need root to apt-get install (or install: haproxy nginx-light wrk)"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy nginx-light wrk
  fi
  # Base tools a Debian system normally has; we do not install these silently.
  for t in openssl curl taskset ss base64 getconf; do
    command -v "$t" >/dev/null || die "'$t' is required but not installed"
  done
}

# ---------------------------------------------------------------- keys and tokens
case $JWT_ALG in
  RS256) ALG_SUFFIX="" ;;
  ES256) ALG_SUFFIX="-es256" ;;
  *) echo "JWT_ALG must be RS256 or ES256, got '$JWT_ALG'" >&2; exit 1 ;;
esac
KEY="$OUT/key$ALG_SUFFIX.pem"
PUB="$OUT/pub$ALG_SUFFIX.pem"
FRESH_FILE="$OUT/fresh-tokens$ALG_SUFFIX.txt"
FRESH_META="$OUT/fresh-tokens$ALG_SUFFIX.meta"

JWT_HEADER="{\"alg\":\"$JWT_ALG\",\"typ\":\"JWT\",\"kid\":\"bench\"}"
# iss, aud, iat, exp, jti. jti is always 32 hex digits, so every token of a batch has the same
# length (the bulk minting below relies on it).
CLAIMS_FMT='{"iss":"%s","aud":"%s","sub":"bench-user","scope":"api","iat":%d,"exp":%d,"jti":"%s"}'

make_keys() {
  # The key is kept between runs so that the cached fresh tokens stay valid.
  if [[ ! -s $KEY ]]; then
    log "generating a $JWT_ALG key pair in $OUT"
    if [[ $JWT_ALG == ES256 ]]; then
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEY" 2>/dev/null
    else
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY" 2>/dev/null
    fi
    rm -f "$FRESH_FILE" "$FRESH_META"
  fi
  openssl pkey -in "$KEY" -pubout -out "$PUB"
}

# jose_sigs: openssl's signatures on stdin (back to back) as JWS signatures, one
# base64url line each: RSA signatures are already the JWS bytes; ECDSA ones are DER and
# become r || s (bench/ecdsa-sig.py).
jose_sigs() {
  if [[ $JWT_ALG == ES256 ]]; then python3 "$BENCH/ecdsa-sig.py" der2jose 32; else b64url; fi
}

# mint_token [AUD] [AGE]: one JWT, the plain readable way (four processes per
# token). AGE seconds shifts iat and exp into the past (to make an expired token).
mint_token() {
  local aud=${1:-$AUDIENCE} age=${2:-0} now exp jti h p s claims
  now=$(($(date +%s) - age))
  exp=$((now + TOKEN_TTL))
  new_jti jti
  printf -v claims "$CLAIMS_FMT" "$ISSUER" "$aud" "$now" "$exp" "$jti"
  h=$(printf '%s' "$JWT_HEADER" | b64url)
  p=$(printf '%s' "$claims" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$KEY" -binary | jose_sigs)
  printf '%s.%s.%s' "$h" "$p" "$s"
}

# verify_token TOKEN: checks the signature with openssl (catches minting bugs).
verify_token() {
  local tok=$1 sig rc=0
  sig=${tok##*.}
  if [[ $JWT_ALG == ES256 ]]; then
    printf '%s' "$sig" | python3 "$BENCH/ecdsa-sig.py" jose2der 32 >"$OUT/verify.sig"
  else
    sig=${sig//-/+}
    sig=${sig//_//}
    while ((${#sig} % 4)); do sig+="="; done
    printf '%s' "$sig" | base64 -d >"$OUT/verify.sig"
  fi
  printf '%s' "${tok%.*}" | openssl dgst -sha256 -verify "$PUB" -signature "$OUT/verify.sig" >/dev/null || rc=$?
  rm -f "$OUT/verify.sig"
  return "$rc"
}

# b64url_records LEN: stdin is a run of records, each LEN bytes followed by zero bytes
# up to a multiple of 3. Base64 of a 3-byte-aligned record never depends on its
# neighbours, so ONE base64 process encodes them all; cutting each record's output to
# ceil(4*LEN/3) characters drops exactly what the zero padding added, which gives the
# unpadded base64url of the record alone.
b64url_records() {
  local len=$1
  local chunk=$(((len + 2) / 3 * 4)) keep=$(((len * 4 + 2) / 3))
  base64 -w0 | tr '+/' '-_' | fold -w "$chunk" | cut -c "1-$keep"
}

# mint_shard COUNT DIR NOW: COUNT distinct tokens into DIR/tokens.txt.
# The one program started per token is `openssl dgst -sign` (its start-up, not the
# RSA maths, is what costs); claims are built with bash builtins, and payloads and
# signatures are base64url-encoded in bulk (b64url_records).
mint_shard() {
  local n=$1 dir=$2 now=$3 exp=$(($3 + FRESH_TOKEN_TTL)) h i jti claims len=0 p
  mkdir -p "$dir"
  h=$(printf '%s' "$JWT_HEADER" | b64url)
  for ((i = 0; i < n; i++)); do
    new_jti jti
    printf -v claims "$CLAIMS_FMT" "$ISSUER" "$AUDIENCE" "$now" "$exp" "$jti"
    ((len)) || len=${#claims}
    ((${#claims} == len)) || { echo "claims length changed" >&2; return 1; }
    printf '%s' "$claims"
    case $(((3 - len % 3) % 3)) in  # zero bytes up to a multiple of 3
      1) printf '\0' ;;
      2) printf '\0\0' ;;
    esac
  done >"$dir/payloads.bin"
  b64url_records "$len" <"$dir/payloads.bin" >"$dir/payloads.b64"
  if [[ $JWT_ALG == ES256 ]]; then
    # DER signatures delimit themselves: one converter process for all of them.
    while IFS= read -r p; do
      printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$KEY" -binary
    done <"$dir/payloads.b64" | python3 "$BENCH/ecdsa-sig.py" der2jose 32 >"$dir/sigs.b64"
    (($(wc -l <"$dir/sigs.b64") == n)) || { echo "unexpected signature count" >&2; return 1; }
  else
    # An RSA-2048 signature is 256 bytes: 2 zero bytes make it 258, a multiple of 3.
    while IFS= read -r p; do
      printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$KEY" -binary
      printf '\0\0'
    done <"$dir/payloads.b64" >"$dir/sigs.bin"
    (($(stat -c %s "$dir/sigs.bin") == n * 258)) || { echo "unexpected signature size" >&2; return 1; }
    b64url_records 256 <"$dir/sigs.bin" >"$dir/sigs.b64"
  fi
  paste -d. "$dir/payloads.b64" "$dir/sigs.b64" | sed "s/^/$h./" >"$dir/tokens.txt"
}

# make_fresh_tokens: FRESH_TOKENS distinct tokens in out/fresh-tokens.txt, minted in
# parallel (one shard per core) and reused by later runs while they stay valid for
# long enough, because minting costs ~5 ms of CPU per token (mostly openssl start-up).
make_fresh_tokens() {
  local file="$FRESH_FILE" meta="$FRESH_META"
  local keyid now needed jobs per s pids=() rc=0 count unique
  keyid=$(sha256sum "$PUB" | cut -c1-16)
  now=$(date +%s)
  # Valid for the whole bench: ~ (warm-up + run + 10 s start-up) per target and round.
  needed=$BENCH_END
  if [[ -s $file && -s $meta ]]; then
    local m_count m_exp m_key
    read -r m_count m_exp m_key <"$meta"
    if [[ $m_count == "$FRESH_TOKENS" && $m_key == "$keyid" ]] && ((m_exp > needed)); then
      log "reusing $FRESH_TOKENS fresh tokens from $file (valid until $(date -d "@$m_exp" "+%F %H:%M"))"
      return 0
    fi
  fi
  ((now + FRESH_TOKEN_TTL > needed)) || die "FRESH_TOKEN_TTL=$FRESH_TOKEN_TTL is shorter than this bench run"
  jobs=$(nproc)
  per=$(((FRESH_TOKENS + jobs - 1) / jobs))
  log "minting $FRESH_TOKENS distinct tokens on $jobs cores (takes about $((FRESH_TOKENS * 5 / 1000 / jobs + 1)) s; cached afterwards)"
  rm -rf "$OUT/mint"
  for ((s = 0; s < jobs; s++)); do
    local n=$((FRESH_TOKENS - s * per))
    ((n > per)) && n=$per
    ((n > 0)) || break
    mint_shard "$n" "$OUT/mint/$s" "$now" &
    pids+=($!)
    PIDS+=($!)
  done
  for s in "${pids[@]}"; do
    wait "$s" || rc=$?
    forget_pid "$s"
  done
  ((rc == 0)) || die "minting fresh tokens failed"
  cat "$OUT"/mint/*/tokens.txt >"$file"
  rm -rf "$OUT/mint"
  count=$(wc -l <"$file")
  unique=$(sort -u "$file" | wc -l)
  ((count == FRESH_TOKENS && unique == FRESH_TOKENS)) \
    || die "fresh tokens: expected $FRESH_TOKENS distinct, got $count lines / $unique distinct"
  verify_token "$(head -n1 "$file")" && verify_token "$(tail -n1 "$file")" \
    || die "bulk-minted tokens do not verify with $PUB"
  echo "$FRESH_TOKENS $((now + FRESH_TOKEN_TTL)) $keyid" >"$meta"
}

# ---------------------------------------------------------------- servers
NGINX_PID="" NGINX_WORKER=""

start_nginx() {
  free_port NGINX_PORT
  free_port NGINX_PORT2
  mkdir -p "$OUT/nginx-tmp"
  render "$TPL/nginx.conf.tmpl" "$OUT/nginx.conf" OUT="$OUT" NGINX_PORT="$NGINX_PORT" \
    NGINX_PORT2="$NGINX_PORT2"
  : >"$OUT/nginx-error.log"
  # -e: even the errors before the config is read go to our log, not /var/log/nginx.
  taskset -c "$UPSTREAM_CPU" nginx -p "$OUT" -e "$OUT/nginx-error.log" -c "$OUT/nginx.conf" \
    >"$OUT/nginx.stdout.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" nginx 200 \
    || { tail -n 20 "$OUT/nginx-error.log" >&2; die "nginx did not start"; }
  # The worker (child of the master) does the work; its CPU time is the nginx figure.
  NGINX_WORKER=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null | awk '{print $1}')
  [[ -n $NGINX_WORKER ]] || NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n1)
  [[ -n $NGINX_WORKER ]] || die "cannot find the nginx worker process"
  measured_pid_ok "$NGINX_WORKER" nginx || die "wrong nginx worker PID"
  log "nginx on 127.0.0.1:$NGINX_PORT (master $NGINX_PID, worker $NGINX_WORKER, cpu $UPSTREAM_CPU)"
}

# start_nginx_proxy: nginx as a plain reverse proxy on PROXY_CPU; sets NGINX_PROXY_PORT
# and NGINX_PROXY_WORKER, or returns 1.
start_nginx_proxy() {
  free_port NGINX_PROXY_PORT
  render "$TPL/nginx-proxy.conf.tmpl" "$OUT/nginx-proxy.conf" OUT="$OUT" \
    NGINX_PORT="$NGINX_PORT" PROXY_PORT="$NGINX_PROXY_PORT"
  taskset -c "$PROXY_CPU" nginx -p "$OUT" -e "$OUT/nginx-proxy-error.log" -c "$OUT/nginx-proxy.conf" \
    >/dev/null 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_http "http://127.0.0.1:$NGINX_PROXY_PORT/" "$pid" nginx_proxy 200 || return 1
  NGINX_PROXY_WORKER=$(awk '{print $1}' "/proc/$pid/task/$pid/children" 2>/dev/null)
  [[ -n $NGINX_PROXY_WORKER ]] && measured_pid_ok "$NGINX_PROXY_WORKER" nginx
}

# start_haproxy NAME TEMPLATE: sets HAPROXY_PORT and HAPROXY_PID, or returns 1.
start_haproxy() {
  local name=$1 tpl=$2 cfg="$OUT/$1.cfg"
  free_port HAPROXY_PORT
  render "$tpl" "$cfg" PORT="$HAPROXY_PORT" NGINX_PORT="$NGINX_PORT" PUB_PEM="$PUB" ALG="$JWT_ALG" \
    ISSUER="$ISSUER" AUDIENCE="$AUDIENCE"
  if ! haproxy -c -q -f "$cfg" >"$OUT/$name.check.log" 2>&1; then
    cat "$OUT/$name.check.log" >&2
    log "$name: HAProxy rejected $cfg"
    return 1
  fi
  # -db: stay in the foreground as one process (no daemon, no master), so $! is the
  # PID whose CPU time we read. taskset execs haproxy, so the PID is unchanged.
  taskset -c "$PROXY_CPU" haproxy -db -f "$cfg" >"$OUT/$name.log" 2>&1 &
  HAPROXY_PID=$!
  PIDS+=("$HAPROXY_PID")
  wait_http "http://127.0.0.1:$HAPROXY_PORT/" "$HAPROXY_PID" "$name" \
    || { tail -n 20 "$OUT/$name.log" >&2; return 1; }
  measured_pid_ok "$HAPROXY_PID" "$name" || return 1
  log "$name on 127.0.0.1:$HAPROXY_PORT (pid $HAPROXY_PID, cpu $PROXY_CPU)"
}

GH_PID="" GH_PORT="" GH_ADMIN_PORT=""
GH_TARGETS="gatehouse gatehouse_nolog gatehouse_fresh gatehouse_balanced gatehouse_affinity gatehouse_hub"

gatehouse_config() {
  free_port GH_PORT
  free_port GH_ADMIN_PORT
  render "$TPL/gatehouse.toml.tmpl" "$OUT/gatehouse.toml" PORT="$GH_PORT" \
    ADMIN_PORT="$GH_ADMIN_PORT" NGINX_PORT="$NGINX_PORT" NGINX_PORT2="$NGINX_PORT2" PUB_PEM="$PUB" ALG="$JWT_ALG" \
    ISSUER="$ISSUER" AUDIENCE="$AUDIENCE"
}

# GH_ENV: the command prefix that sets gatehouse's environment in the bench.
# GATEHOUSE_RUNTIME__WORKER_THREADS is the env override of [runtime] worker_threads.
# taskset alone would already give tokio one worker (it sizes its pool from the CPU
# affinity), so this is belt and braces.
# GATEHOUSE_BIN is dropped so that no bench knob can look like a config override.
# It is an array, not a function: "function &" would run in a forked bash, and $!
# would be that shell's PID instead of gatehouse's (whose CPU time we read).
GH_ENV=(env -u GATEHOUSE_BIN -u BASE_BIN GATEHOUSE_RUNTIME__WORKER_THREADS=1)

# start_gatehouse BIN: a fresh gatehouse process for every run: the first-seen runs need
# an empty token cache, and the repeated-token runs then start from the same state.
start_gatehouse() {
  if [[ -z ${GH_CMD_LOGGED:-} ]]; then
    log "gatehouse command: $(printf '%q ' "${GH_ENV[@]}" taskset -c "$PROXY_CPU" "$1" run --config "$OUT/gatehouse.toml")>$ACCESS_LOG"
    GH_CMD_LOGGED=1
  fi
  "${GH_ENV[@]}" RUST_LOG="${GH_LOG_LEVEL:-info}" taskset -c "$PROXY_CPU" "$1" run --config "$OUT/gatehouse.toml" \
    >"$ACCESS_LOG" 2>>"$OUT/gatehouse.stderr.log" &
  GH_PID=$!
  PIDS+=("$GH_PID")
  if ! wait_http "http://127.0.0.1:$GH_ADMIN_PORT/readyz" "$GH_PID" gatehouse 200; then
    tail -n 20 "$OUT/gatehouse.stderr.log" >&2
    stop_pid "$GH_PID"
    GH_PID=""
    return 1
  fi
  if ! measured_pid_ok "$GH_PID" gatehouse; then
    stop_gatehouse
    return 1
  fi
}

# gatehouse_path TARGET: the path each gatehouse row loads. The affinity row first
# negotiates (nginx answers a fixed negotiate JSON) and then loads the connect URL with the
# sealed token gatehouse returned, so every measured request is unsealed and pinned.
gatehouse_path() {
  local sealed
  case $1 in
    gatehouse_balanced) echo "/balanced/" ;;
    gatehouse_affinity | gatehouse_hub)
      sealed=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$GH_PORT/affinity/hub/negotiate?negotiateVersion=1" |
        sed -n 's/.*"connectionToken":"\([^"]*\)".*/\1/p')
      [[ $sealed == *.* ]] || return 1
      [[ $1 == gatehouse_hub ]] && echo "/single/hub?id=$sealed" || echo "/affinity/hub?id=$sealed"
      ;;
    *) echo "/" ;;
  esac
}

# ---------------------------------------------------------------- load
# Per-target URL and measured PID (filled in by main, and by run_one for gatehouse),
# and why a target is skipped.
declare -A URL PID_OF SKIP

# preflight NAME URL AUTH: the target answers 200 to a valid token and, when it
# checks tokens, 401 to none and 401/403 to a tampered, an expired and a wrong-audience
# one. A proxy that answers 401 to everything, or skips checks, would look fast.
preflight() {
  local name=$1 url=$2 auth=$3 ok bad none expired aud
  ok=$(http_code "$url" -H "Authorization: Bearer $TOKEN")
  if [[ $auth == yes ]]; then
    bad=$(http_code "$url" -H "Authorization: Bearer $TAMPERED")
    none=$(http_code "$url")
    expired=$(http_code "$url" -H "Authorization: Bearer $EXPIRED")
    aud=$(http_code "$url" -H "Authorization: Bearer $WRONG_AUD")
    log "$name preflight: valid=$ok none=$none tampered=$bad expired=$expired wrong-aud=$aud"
    [[ $ok == 200 && $none == 401 ]] && denied "$bad" && denied "$expired" && denied "$aud"
  else
    log "$name preflight: $ok"
    [[ $ok == 200 ]]
  fi
}

RESULTS="$OUT/runs.csv"
FLAGGED=0

# run_one ROUND TARGET: warm-up, one measured wrk run, one line in runs.csv.
run_one() {
  local round=$1 t=$2 url pid mode=repeat auth=yes hdr=() raw ok=1
  # kind: the row without its "_base" (which only picks the binary).
  local kind=${2%_base} bin=$GATEHOUSE_BIN
  [[ $t == *_base ]] && bin=$BASE_BIN
  local c0 c1 s0 s1 u0 u1 out requests rps p99 non2xx sockerr active ticks uticks cpu_us cpu_pct up_us note=""
  local sys_pct sc_req="" cs_req="" perf_pid="" perf_out="$OUT/wrk/r${round}-$t.perf"
  case $kind in
    nginx | haproxy_plain | nginx_proxy) auth=no ;;
    *_fresh) mode=fresh ;;
  esac
  if [[ $auth == yes || $SEND_TOKEN_TO_ALL == 1 ]]; then hdr=(-H "Authorization: Bearer $TOKEN"); fi

  if [[ $t == gatehouse* ]]; then
    # gatehouse_nolog: the same process with its access log filtered out (RUST_LOG=warn).
    GH_LOG_LEVEL=info
    [[ $kind == gatehouse_nolog ]] && GH_LOG_LEVEL=warn
    if ! start_gatehouse "$bin"; then
      log "FLAG $t: gatehouse did not become ready; round $round skipped"
      SKIP[$t]="did not start"
      FLAGGED=1
      return 0
    fi
    URL[$t]="http://127.0.0.1:$GH_PORT$(gatehouse_path "$kind")" || {
      log "FLAG $t: no sealed connection token from negotiate; round $round skipped"
      SKIP[$t]="negotiate failed"
      FLAGGED=1
      stop_gatehouse
      return 0
    }
    PID_OF[$t]=$GH_PID
    if ! preflight "$t" "${URL[$t]}" yes; then
      log "FLAG $t: preflight failed; round $round skipped"
      SKIP[$t]="preflight failed"
      FLAGGED=1
      stop_gatehouse
      return 0
    fi
  fi
  url=${URL[$t]}
  pid=${PID_OF[$t]}

  # Warm-up with the repeated token (also for fresh runs: it must not use up
  # fresh tokens): opens connections, fills pools and caches of the code paths.
  if ((WARMUP > 0)); then
    timeout $((WARMUP + 30)) taskset -c "$LOAD_CPU" \
      wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "${hdr[@]}" "$url" >/dev/null 2>&1 || true
  fi

  local script=()
  if ((RATE > 0)); then
    script=(-s "$BENCH/fixed-rate.lua")
  fi
  if [[ $mode == fresh ]]; then
    script=(-s "$BENCH/fresh-tokens.lua")
    hdr=()   # the Lua script sets Authorization itself
  fi
  raw="$OUT/wrk/r${round}-$t.txt"
  if ! c0=$(cpu_ticks "$pid"); then
    log "FLAG $t round $round: process $pid is gone"
    FLAGGED=1
    [[ $t == gatehouse* ]] && stop_gatehouse
    return 0
  fi
  s0=$(cpu_sys_ticks "$pid") || s0=0
  u0=$(cpu_ticks "$NGINX_WORKER")
  if ((SYSCALLS)); then
    perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" -o "$perf_out" &
    perf_pid=$!
  fi
  # timeout: wrk stops itself after -d, the margin only catches a hung wrk.
  out=$(TOKENS_FILE="$FRESH_FILE" WRK_THREADS="$WRK_THREADS" RATE="$RATE" CONNECTIONS="$CONNECTIONS" \
    timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" \
    wrk --latency -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "${script[@]}" "${hdr[@]}" "$url" 2>&1) || ok=0
  c1=$(cpu_ticks "$pid") || c1=""
  s1=$(cpu_sys_ticks "$pid") || s1=$s0
  u1=$(cpu_ticks "$NGINX_WORKER")
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  printf '%s\n' "$out" >"$raw"
  [[ $t == gatehouse* ]] && stop_gatehouse

  requests=$(awk '/ requests in / {print $1; exit}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2; exit}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2; exit}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF; exit}' <<<"$out")
  sockerr=$(awk -F'[ ,]+' '/Socket errors:/ {print $5 + $7 + $9 + $11; exit}' <<<"$out")
  non2xx=${non2xx:-0}
  sockerr=${sockerr:-0}
  if ((ok == 0)) || [[ -z $requests || -z $rps || -z $p99 || -z $c1 ]] || ((requests == 0)); then
    log "FLAG $t round $round: wrk or the proxy failed, see $raw"
    FLAGGED=1
    return 0
  fi

  active=$DURATION
  if [[ $mode == fresh ]]; then
    local line exhausted act
    line=$(grep '^bench_fresh ' <<<"$out" || true)
    exhausted=$(sed -n 's/.*exhausted=\([0-9]*\).*/\1/p' <<<"$line")
    act=$(sed -n 's/.*active_s=\([0-9.]*\).*/\1/p' <<<"$line")
    if [[ $exhausted == 1 ]]; then
      # wrk divided by the full -d although the tokens ran out earlier.
      active=$act
      rps=$(awk -v n="$requests" -v s="$active" 'BEGIN { printf "%.2f", n / s }')
      note=$(printf 'tokens ran out after %.1fs' "$active")
    fi
  fi

  ticks=$((c1 - c0))
  uticks=$((u1 - u0))
  cpu_us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
  cpu_pct=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v s="$active" 'BEGIN { printf "%.0f", t / hz / s * 100 }')
  up_us=$(awk -v t="$uticks" -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
  sys_pct=$(awk -v s=$((s1 - s0)) -v t="$ticks" 'BEGIN { printf "%.0f", (t > 0) ? s * 100 / t : 0 }')
  if [[ -n $perf_pid && -s $perf_out ]]; then
    sc_req=$(awk -F, -v n="$requests" '$3 ~ /sys_enter/ { printf "%.2f", $1 / n }' "$perf_out")
    cs_req=$(awk -F, -v n="$requests" '$3 ~ /context-switches/ { printf "%.3f", $1 / n }' "$perf_out")
  fi
  p99=$(to_ms "$p99")

  if ((non2xx > 0 || sockerr > 0)); then
    log "FLAG $t round $round: $non2xx non-2xx responses, $sockerr socket errors (see $raw)"
    FLAGGED=1
  fi
  echo "$round,$t,$rps,$p99,$requests,$cpu_us,$cpu_pct,$non2xx,$sockerr,$up_us,$sys_pct,$sc_req,$cs_req,$note" >>"$RESULTS"
  log "$(printf '%-17s r%s  %10s req/s  p99 %8s ms  %7s CPU-us/req (%s%% kernel)  CPU %3s%%  non-2xx %s  sockerr %s %s' \
    "$t" "$round" "$rps" "$p99" "$cpu_us" "$sys_pct" "$cpu_pct" "$non2xx" "$sockerr" "$note")"
  if [[ -n $sc_req ]]; then
    log "$(printf '%-17s r%s  %s system calls and %s context switches per request' "$t" "$round" "$sc_req" "$cs_req")"
  fi
}

# ---------------------------------------------------------------- report
median() {
  sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) print "";
    else if (NR % 2) print a[(NR + 1) / 2];
    else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

col_median() {  # TARGET COLUMN
  awk -F, -v t="$1" -v c="$2" '$2 == t { print $c }' "$RESULTS" | median
}

ratio() {  # A B
  if [[ -n $1 && -n $2 ]]; then
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'
  else
    echo "n/a"
  fi
}

# paired A B: A's CPU-µs/req over B's, round by round, as "median (min–max, N rounds)".
# Both run in the same round minutes apart, so a slow spell of the machine (other guests'
# load) weighs on both and cancels out of the ratio, where medians of each row would not.
paired() {
  awk -F, -v a="$1" -v b="$2" '$2 == a { x[$1] = $6 } $2 == b { y[$1] = $6 }
    END { for (r in x) if ((r in y) && y[r] > 0) print x[r] / y[r] }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) exit;
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
      printf "%.3f× (%.3f–%.3f, %d rounds)\n", m, v[1], v[NR], NR }'
}

report() {
  local md="$OUT/results.md" t runs rps p99 cpu pct kpct scr csr non2xx sockerr base_plain base_jwt base_ngx flag
  base_plain=$(col_median haproxy_plain 6)
  base_ngx=$(col_median nginx_proxy 6)
  base_jwt=$(col_median haproxy_jwt 6)
  {
    echo "# gatehouse benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r)"
    echo "wrk: ${CONNECTIONS} connections, ${WRK_THREADS} thread(s), ${DURATION}s per run, ${WARMUP}s warm-up, ${ROUNDS} rounds (medians shown)."
    echo "Proxy on core ${PROXY_CPU}, wrk on core ${LOAD_CPU}, nginx on core ${UPSTREAM_CPU}. $(haproxy -v | head -n1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3)."
    echo "Tokens: ${JWT_ALG} (JWT_ALG), the same algorithm for HAProxy jwt_verify and gatehouse."
    [[ " $TARGETS " == *_fresh* ]] && echo "First-seen runs: ${FRESH_TOKENS} distinct tokens per run, each used once."
    [[ " $TARGETS " == *" gatehouse"* ]] && echo "gatehouse: restarted before every run, 1 worker thread, access log (stdout) to ${ACCESS_LOG}."
    [[ " $TARGETS " == *_base* ]] && echo "Rows ending in _base: the same row run by ${BASE_BIN} (BASE_BIN); the others by ${GATEHOUSE_BIN}."
    echo
    echo "| target | req/s | p99 ms | CPU-µs/req | kernel % | syscalls/req | switches/req | proxy CPU % | CPU vs nginx proxy | CPU vs HAProxy plain | CPU vs HAProxy jwt_verify | non-2xx | runs |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for t in $TARGETS; do
      runs=$(awk -F, -v t="$t" '$2 == t' "$RESULTS" | wc -l)
      if ((runs == 0)); then
        echo "| $t | – | – | – | – | – | – | – | – | – | – | – | 0 (${SKIP[$t]:-no run}) |"
        continue
      fi
      rps=$(col_median "$t" 3)
      p99=$(col_median "$t" 4)
      cpu=$(col_median "$t" 6)
      pct=$(col_median "$t" 7)
      kpct=$(col_median "$t" 11)
      scr=$(col_median "$t" 12)
      csr=$(col_median "$t" 13)
      non2xx=$(awk -F, -v t="$t" '$2 == t { s += $8 } END { print s + 0 }' "$RESULTS")
      sockerr=$(awk -F, -v t="$t" '$2 == t { s += $9 } END { print s + 0 }' "$RESULTS")
      flag=""
      ((non2xx + sockerr == 0)) || flag=" ⚠"
      local label=$t
      [[ $t == nginx ]] && label="nginx (direct; CPU = nginx worker)"
      printf '| %s | %.0f | %.2f | %.1f | %s | %s | %s | %.0f | %s | %s | %s | %s%s | %s |\n' "$label" "$rps" "$p99" "$cpu" \
        "${kpct:-–}" "${scr:-–}" "${csr:-–}" "$pct" \
        "$(ratio "$cpu" "$base_ngx")" "$(ratio "$cpu" "$base_plain")" "$(ratio "$cpu" "$base_jwt")" "$non2xx" "$flag" "$runs"
    done
    local pair pr pairs=("gatehouse_balanced gatehouse" "gatehouse_affinity gatehouse_hub")
    for t in $TARGETS; do [[ $t == *_base ]] && pairs+=("${t%_base} $t"); done
    for pair in "${pairs[@]}"; do
      read -r -a pr <<<"$pair"
      [[ " $TARGETS " == *" ${pr[0]} "* && " $TARGETS " == *" ${pr[1]} "* ]] || continue
      echo
      echo "CPU-µs/req of ${pr[0]} over ${pr[1]}, paired by round: $(paired "${pr[0]}" "${pr[1]}")"
    done
    echo
    if ((FLAGGED)); then
      echo "**⚠ Some runs were flagged (non-2xx answers, socket errors or failed runs): their figures are not trustworthy. See the log and bench/out/wrk/.**"
    else
      echo "All measured requests got 2xx answers; no socket errors."
    fi
    echo
    echo "Per-run figures: bench/out/runs.csv (upstream nginx CPU-µs/req in column up_cpu_us); raw wrk output: bench/out/wrk/."
  } >"$md"
  echo
  cat "$md"
}

# ---------------------------------------------------------------- main
main() {
  ensure_tools
  mkdir -p "$OUT/wrk"
  rm -f "$OUT"/wrk/*.txt "$OUT/gatehouse.stderr.log"
  echo "round,target,rps,p99_ms,requests,cpu_us_per_req,cpu_pct,non2xx,socket_errors,up_cpu_us,kernel_pct,syscalls_per_req,cswitch_per_req,note" >"$RESULTS"

  local t want=() gh_wanted=0 fresh_wanted=0
  for t in $TARGETS; do
    case $t in
      nginx | nginx_proxy | haproxy_plain | haproxy_jwt | haproxy_jwt_fresh) ;;
      gatehouse*) [[ " $GH_TARGETS " == *" ${t%_base} "* ]] || die "unknown target '$t' (known: nginx nginx_proxy haproxy_plain haproxy_jwt haproxy_jwt_fresh $GH_TARGETS, and with BASE_BIN each gatehouse row + _base)"
        [[ $t != *_base || -x $BASE_BIN ]] || die "$t needs BASE_BIN=/path/to/another/gatehouse"
        gh_wanted=1 ;;
      *) die "unknown target '$t' (known: nginx nginx_proxy haproxy_plain haproxy_jwt haproxy_jwt_fresh $GH_TARGETS)" ;;
    esac
    want+=("$t")
  done
  if ((gh_wanted)) && [[ ! -x $GATEHOUSE_BIN ]]; then
    log "gatehouse binary not found at $GATEHOUSE_BIN: skipping the gatehouse rows."
    log "  build it (cargo build --release) or set GATEHOUSE_BIN=/path/to/gatehouse, then rerun."
    for t in "${want[@]}"; do [[ $t == gatehouse* ]] && SKIP[$t]="no binary"; done
    gh_wanted=0
  fi
  # Fresh tokens take minutes to mint the first time: only when a row will use them.
  for t in "${want[@]}"; do
    [[ ${t%_base} == *_fresh && -z ${SKIP[$t]:-} ]] && fresh_wanted=1
  done
  NUM_TARGETS=${#want[@]}
  # Tokens must outlive the run: about (warm-up + run + 10 s start-up) per target and round.
  BENCH_END=$(($(date +%s) + ROUNDS * NUM_TARGETS * (WARMUP + DURATION + 10) + 300))
  (($(date +%s) + TOKEN_TTL > BENCH_END)) || die "TOKEN_TTL=$TOKEN_TTL is shorter than this bench run"

  make_keys
  TOKEN=$(mint_token)
  verify_token "$TOKEN" || die "minted token does not verify"
  # Tampered: one signature character changed (not the last one, whose low bits are
  # padding that a lenient base64 decoder may ignore).
  local sig=${TOKEN##*.} c
  c=${sig:100:1}
  [[ $c == A ]] && c=B || c=A
  TAMPERED="${TOKEN%.*}.${sig:0:100}${c}${sig:101}"
  EXPIRED=$(mint_token "$AUDIENCE" $((TOKEN_TTL + 3600)))  # exp an hour ago, beyond any leeway
  WRONG_AUD=$(mint_token "not-$AUDIENCE")
  printf '%s\n' "$TOKEN" >"$OUT/token.txt"
  ((fresh_wanted)) && make_fresh_tokens

  start_nginx
  URL[nginx]="http://127.0.0.1:$NGINX_PORT/"
  PID_OF[nginx]=$NGINX_WORKER

  if [[ " ${want[*]} " == *" nginx_proxy "* ]]; then
    if start_nginx_proxy; then
      URL[nginx_proxy]="http://127.0.0.1:$NGINX_PROXY_PORT/"
      PID_OF[nginx_proxy]=$NGINX_PROXY_WORKER
    else
      SKIP[nginx_proxy]="did not start"
    fi
  fi

  local need_plain=0 need_jwt=0
  [[ " ${want[*]} " == *" haproxy_plain "* ]] && need_plain=1
  [[ " ${want[*]} " == *" haproxy_jwt"* ]] && need_jwt=1
  if ((need_plain)); then
    if start_haproxy haproxy-plain "$TPL/haproxy-plain.cfg.tmpl"; then
      URL[haproxy_plain]="http://127.0.0.1:$HAPROXY_PORT/"
      PID_OF[haproxy_plain]=$HAPROXY_PID
    else
      SKIP[haproxy_plain]="did not start"
    fi
  fi
  if ((need_jwt)); then
    if start_haproxy haproxy-jwt "$TPL/haproxy-jwt.cfg.tmpl"; then
      URL[haproxy_jwt]="http://127.0.0.1:$HAPROXY_PORT/"
      PID_OF[haproxy_jwt]=$HAPROXY_PID
      URL[haproxy_jwt_fresh]=${URL[haproxy_jwt]}
      PID_OF[haproxy_jwt_fresh]=$HAPROXY_PID
    else
      SKIP[haproxy_jwt]="did not start"
      SKIP[haproxy_jwt_fresh]="did not start"
    fi
  fi

  if ((gh_wanted)); then
    gatehouse_config
    # `gatehouse check` prints every config error with its key path: fail early
    # with that instead of a timeout on /readyz.
    if ! "${GH_ENV[@]}" "$GATEHOUSE_BIN" check --config "$OUT/gatehouse.toml" >"$OUT/gatehouse.check.log" 2>&1; then
      cat "$OUT/gatehouse.check.log" >&2
      log "gatehouse check rejected $OUT/gatehouse.toml: skipping the gatehouse rows"
      for t in "${want[@]}"; do [[ $t == gatehouse* ]] && SKIP[$t]="config rejected"; done
    fi
  fi

  # Targets that will run: started, and passing the preflight (gatehouse is started
  # and checked per run, see run_one).
  local active=()
  for t in "${want[@]}"; do
    [[ -n ${SKIP[$t]:-} ]] && { log "skipping $t: ${SKIP[$t]}"; continue; }
    if [[ $t != gatehouse* ]]; then
      local auth=yes
      [[ $t == nginx || $t == haproxy_plain || $t == nginx_proxy ]] && auth=no
      if ! preflight "$t" "${URL[$t]}" "$auth"; then
        log "FLAG $t: preflight failed, not measured"
        SKIP[$t]="preflight failed"
        FLAGGED=1
        continue
      fi
    fi
    active+=("$t")
  done
  ((${#active[@]})) || die "nothing to measure"

  # Rounds interleave the targets, and each round starts one target later, so slow
  # drifts of a noisy machine (other tenants, thermal) spread over all targets.
  local r i n=${#active[@]}
  for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS"
    for ((i = 0; i < n; i++)); do
      run_one "$r" "${active[(i + r - 1) % n]}"
    done
  done

  report
  if ((FLAGGED)); then
    log "some runs were flagged; see above"
    exit 2
  fi
}

main "$@"
