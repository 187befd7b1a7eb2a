#!/usr/bin/env bash
# TLS termination cost: gatehouse next to nginx and HAProxy, each terminating TLS with the
# same ECDSA P-256 certificate in front of the same plain-HTTP nginx upstream.
#
# Tests (each a table; one interleaved run, ROUNDS rounds, medians):
#   keepalive  wrk over https, 32 keep-alive connections           -> CPU-µs per request
#   plain      the same over plain http to each proxy's listener without TLS: subtracted
#              from keepalive, it gives what TLS itself adds to a keep-alive request
#   h2         h2load over https, 32 HTTP/2 connections, one stream in flight on each
#              (what a browser speaks over TLS)                   -> CPU-µs per request
#   newconn    wrk over https with "Connection: close": a new TCP and TLS connection per
#              request (wrk resumes the session when the server offers it; the *_nores
#              rows offer none, so every connection is a full handshake)
#   full       openssl s_time -new: full handshakes only, one at a time -> CPU-µs/handshake
#   reuse      openssl s_time -reuse -www /: resumed handshakes (and one GET each, which
#              TLS 1.3 needs: the ticket arrives after the handshake)
#
# keepalive and plain also measure hyper_floor (bench/hyper-floor): a proxy on gatehouse's
# own stack (hyper, tokio, rustls with aws-lc-rs) that checks and adds nothing, so the
# tables show what the stack costs and what gatehouse adds to it.
#
# Everything listens on 127.0.0.1; the proxy under test is pinned to PROXY_CPU, the load
# and the upstream to LOAD_CPU. See bench/README.md ("TLS termination").
set -euo pipefail

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-32}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
READY_TIMEOUT=${READY_TIMEOUT:-30}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
TESTS=${TESTS:-keepalive plain h2 newconn full reuse}

export PATH="$PATH:/usr/sbin:/sbin"
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT="$BENCH/out/tls"
TPL="$BENCH/templates"
cd "$ROOT"
[[ $GATEHOUSE_BIN == /* ]] || GATEHOUSE_BIN="$ROOT/$GATEHOUSE_BIN"

log() { printf '[tls %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

stop_all_on_exit

for t in nginx haproxy wrk openssl curl taskset ss; do
  command -v "$t" >/dev/null || die "'$t' is required (apt-get install nginx-light haproxy wrk openssl)"
done
if [[ " $TESTS " == *" h2 "* ]]; then
  command -v h2load >/dev/null || die "the h2 test needs h2load (apt-get install nghttp2-client), or TESTS without h2"
fi
[[ -x $GATEHOUSE_BIN ]] || die "no $GATEHOUSE_BIN; build it with cargo build --release"
FLOOR_BIN="$BENCH/hyper-floor/target/release/hyper-floor"
# The floor rows are in the keepalive and plain tables only.
FLOOR=false
[[ " $TESTS " == *" keepalive "* || " $TESTS " == *" plain "* ]] && FLOOR=true
if $FLOOR; then
  log "building bench/hyper-floor"
  cargo build --release --quiet --manifest-path "$BENCH/hyper-floor/Cargo.toml" \
    || die "building bench/hyper-floor failed"
fi

mkdir -p "$OUT/tmp" "$OUT/raw"
CERT="$OUT/cert.pem" KEY="$OUT/key.pem" PEM="$OUT/haproxy.pem" TICKETS="$OUT/ticket.keys"
RSA="$OUT/rsa.pem" PUB="$OUT/rsa.pub.pem"

make_material() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$KEY" -out "$CERT" -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
  cat "$CERT" "$KEY" >"$PEM"
  openssl rand -base64 48 >"$TICKETS"
  [[ -s $RSA ]] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RSA" 2>/dev/null
  openssl pkey -in "$RSA" -pubout -out "$PUB"
  local now h p s
  now=$(date +%s)
  h=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
  p=$(printf '{"iss":"https://bench.example/","aud":"bench","sub":"bench-user","iat":%d,"exp":%d}' \
    "$now" $((now + 3600)) | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$RSA" -binary | b64url)
  TOKEN="$h.$p.$s"
}

# wait_https URL PID NAME: wait_http for a self-signed TLS listener.
wait_https() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    kill -0 "$2" 2>/dev/null || { log "$3 exited during startup"; return 1; }
    [[ $(http_code "$1" -k) == 200 ]] && return 0
    sleep 0.2
  done
  log "$3 not ready after ${READY_TIMEOUT}s"
  return 1
}

# child_of PID: the nginx worker whose CPU time is the nginx figure.
child_of() { awk '{print $1}' "/proc/$1/task/$1/children" 2>/dev/null; }

start_upstream() {
  free_port UP_PORT
  free_port STATUS_PORT
  render "$TPL/nginx-tls-upstream.conf.tmpl" "$OUT/upstream.conf" OUT="$OUT" UP_PORT="$UP_PORT" \
    STATUS_PORT="$STATUS_PORT"
  taskset -c "$LOAD_CPU" nginx -p "$OUT" -e "$OUT/upstream-error.log" -c "$OUT/upstream.conf" &
  local pid=$!
  PIDS+=("$pid")
  wait_http "http://127.0.0.1:$UP_PORT/" "$pid" upstream 200 || die "upstream did not start"
  UP_WORKER=$(child_of "$pid")
}

# The upstream's accepted-connection count; the status request itself is one of them.
upstream_accepts() {
  curl -s "http://127.0.0.1:$STATUS_PORT/" | awk 'NR == 3 {print $1}'
}

declare -A PORT_OF PID_OF

start_nginx_tls() {
  free_port NG_PORT
  free_port NG_NORES
  free_port NG_PLAIN
  render "$TPL/nginx-tls.conf.tmpl" "$OUT/nginx-tls.conf" OUT="$OUT" PORT="$NG_PORT" \
    NORES_PORT="$NG_NORES" PLAIN_PORT="$NG_PLAIN" UP_PORT="$UP_PORT" CERT="$CERT" KEY="$KEY"
  taskset -c "$PROXY_CPU" nginx -p "$OUT" -e "$OUT/nginx-tls-error.log" -c "$OUT/nginx-tls.conf" &
  local master=$!
  PIDS+=("$master")
  wait_https "https://127.0.0.1:$NG_PORT/" "$master" nginx_tls || die "nginx TLS did not start"
  PID_OF[nginx]=$(child_of "$master") PORT_OF[nginx]=$NG_PORT
  PID_OF[nginx_nores]=${PID_OF[nginx]} PORT_OF[nginx_nores]=$NG_NORES
  PID_OF[nginx_plain]=${PID_OF[nginx]} PORT_OF[nginx_plain]=$NG_PLAIN
}

start_haproxy_tls() {
  free_port HA_PORT
  free_port HA_NORES
  free_port HA_PLAIN
  render "$TPL/haproxy-tls.cfg.tmpl" "$OUT/haproxy-tls.cfg" PORT="$HA_PORT" NORES_PORT="$HA_NORES" \
    PLAIN_PORT="$HA_PLAIN" UP_PORT="$UP_PORT" PEM="$PEM"
  taskset -c "$PROXY_CPU" haproxy -db -f "$OUT/haproxy-tls.cfg" >"$OUT/haproxy.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_https "https://127.0.0.1:$HA_PORT/" "$pid" haproxy_tls || die "HAProxy TLS did not start"
  PID_OF[haproxy]=$pid PORT_OF[haproxy]=$HA_PORT
  PID_OF[haproxy_nores]=$pid PORT_OF[haproxy_nores]=$HA_NORES
  PID_OF[haproxy_plain]=$pid PORT_OF[haproxy_plain]=$HA_PLAIN
}

# start_gatehouse NAME RESUMPTION-LINE [PROVIDER]; NAME gatehouse_plain listens without TLS.
start_gatehouse() {
  local name=$1 port admin provider=${3:-aws-lc-rs}
  free_port port
  free_port admin
  render "$TPL/gatehouse-tls.toml.tmpl" "$OUT/$name.toml" PORT="$port" ADMIN_PORT="$admin" \
    CERT="$CERT" KEY="$KEY" UP_PORT="$UP_PORT" PUB_PEM="$PUB" RESUMPTION="$2" \
    PROVIDER="$provider"
  if [[ $name == gatehouse_plain ]]; then
    sed -i '/^tls\./d' "$OUT/$name.toml"
  fi
  "$GATEHOUSE_BIN" check --config "$OUT/$name.toml" >/dev/null || die "$name: gatehouse check failed"
  # Access log off, as nginx's and HAProxy's are here (GH_LOG_LEVEL=info turns it on).
  env GATEHOUSE_RUNTIME__WORKER_THREADS=1 RUST_LOG="${GH_LOG_LEVEL:-warn}" taskset -c "$PROXY_CPU" "$GATEHOUSE_BIN" run \
    --config "$OUT/$name.toml" >/dev/null 2>>"$OUT/$name.stderr.log" &
  local pid=$!
  PIDS+=("$pid")
  wait_http "http://127.0.0.1:$admin/readyz" "$pid" "$name" 200 || die "$name did not start"
  measured_pid_ok "$pid" "$name" || die "$name: wrong PID"
  PID_OF[$name]=$pid PORT_OF[$name]=$port
}

# start_floor NAME [CERT KEY]: bench/hyper-floor, over TLS when given the certificate.
start_floor() {
  local name=$1 port
  shift
  free_port port
  taskset -c "$PROXY_CPU" "$FLOOR_BIN" "127.0.0.1:$port" "127.0.0.1:$UP_PORT" "$@" \
    >/dev/null 2>>"$OUT/$name.stderr.log" &
  local pid=$!
  PIDS+=("$pid")
  if (($#)); then
    wait_https "https://127.0.0.1:$port/" "$pid" "$name" || die "$name did not start"
  else
    wait_http "http://127.0.0.1:$port/" "$pid" "$name" 200 || die "$name did not start"
  fi
  PID_OF[$name]=$pid PORT_OF[$name]=$port
}

RESULTS="$OUT/runs.csv"

# measure TEST TARGET ROUND: one run; appends
# "test,target,round,units,cpu_us,up_accepts,up_us,kernel_us" (kernel_us: cpu_us's stime part).
measure() {
  local test=$1 t=$2 round=$3 pid=${PID_OF[$2]} port=${PORT_OF[$2]} path=/ hdr=() c0 c1 u0 u1 a0 a1 k0 k1
  local units raw="$OUT/raw/r$3-$1-$2.txt" scheme=https
  if [[ $t == gatehouse_jwt ]]; then path=/auth; fi
  [[ $test == plain ]] && scheme=http
  hdr=(-H "Authorization: Bearer $TOKEN")
  local url="$scheme://127.0.0.1:$port$path"
  [[ $test == newconn ]] && hdr+=(-H "Connection: close")
  case $test in
    keepalive | newconn | plain)
      ((WARMUP > 0)) && taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "${hdr[@]}" "$url" >/dev/null 2>&1
      ;;
    h2)
      ((WARMUP > 0)) && taskset -c "$LOAD_CPU" h2load -t1 -c"$CONNECTIONS" -m1 -D"$WARMUP" "${hdr[@]}" "$url" >/dev/null 2>&1
      ;;
  esac
  c0=$(cpu_ticks "$pid") k0=$(cpu_sys_ticks "$pid") u0=$(cpu_ticks "$UP_WORKER") a0=$(upstream_accepts)
  case $test in
    keepalive | newconn | plain)
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${hdr[@]}" "$url" >"$raw" 2>&1
      units=$(awk '/requests in/ {print $1}' "$raw")
      grep -q "Non-2xx\|Socket errors" "$raw" && log "FLAG $test $t round $round: errors in $raw"
      ;;
    h2)
      # h2load counts a request as succeeded on any answer, so every one must be a 2xx;
      # and the protocol it reports must be h2.
      taskset -c "$LOAD_CPU" h2load -t1 -c"$CONNECTIONS" -m1 -D"$DURATION" "${hdr[@]}" "$url" >"$raw" 2>&1
      units=$(awk '/^status codes:/ {print $3; exit}' "$raw")
      [[ $(awk '/^requests:/ {print $8; exit}' "$raw") == "$units" ]] \
        || log "FLAG $test $t round $round: answers other than 2xx in $raw"
      grep -q "^Application protocol: h2" "$raw" || log "FLAG $test $t round $round: not h2 (see $raw)"
      ;;
    full)
      taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$port" -new -time "$DURATION" >"$raw" 2>&1
      units=$(awk '/connections in .* real seconds/ {print $1; exit}' "$raw")
      ;;
    reuse)
      taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$port" -reuse -www / -time "$DURATION" >"$raw" 2>&1
      units=$(awk '/connections in .* real seconds/ {print $1; exit}' "$raw")
      ;;
  esac
  c1=$(cpu_ticks "$pid") k1=$(cpu_sys_ticks "$pid") u1=$(cpu_ticks "$UP_WORKER") a1=$(upstream_accepts)
  [[ ${units:-0} -gt 0 ]] || { log "FLAG $test $t round $round: no units (see $raw)"; return 0; }
  per_unit() { awk -v c="$1" -v n="$units" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", c * 1e6 / hz / n}'; }
  echo "$test,$t,$round,$units,$(per_unit $((c1 - c0))),$((a1 - a0 - 1)),$(per_unit $((u1 - u0))),$(per_unit $((k1 - k0)))" >>"$RESULTS"
}

targets_for() {
  case $1 in
    keepalive) echo "nginx haproxy hyper_floor gatehouse gatehouse_jwt" ;;
    plain) echo "nginx_plain haproxy_plain hyper_floor_plain gatehouse_plain" ;;
    h2) echo "nginx haproxy gatehouse gatehouse_jwt" ;;
    newconn) echo "nginx nginx_nores haproxy haproxy_nores gatehouse gatehouse_nores gatehouse_jwt gatehouse_ring" ;;
    full) echo "nginx_nores haproxy_nores gatehouse_nores gatehouse_nores_ring" ;;
    reuse) echo "nginx haproxy gatehouse gatehouse_cache gatehouse_ring" ;;
  esac
}

median() { sort -n | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

report() {
  local test t cpu ng ha units acc up base user kernel
  for test in $TESTS; do
    printf '\n### %s (CPU-µs per %s, median of %s rounds)\n\n' "$test" \
      "$([[ $test == full || $test == reuse ]] && echo handshake || echo request)" "$ROUNDS"
    echo "| target | units/s | proxy CPU-µs | user | kernel | vs nginx | vs HAProxy | upstream conns per 1k | upstream CPU-µs |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for t in $(targets_for "$test"); do
      col() { awk -F, -v a="$test" -v b="$1" -v c="$2" '$1 == a && $2 == b {print $c}' "$RESULTS" | median; }
      cpu=$(col "$t" 5) units=$(col "$t" 4) acc=$(awk -F, -v a="$test" -v b="$t" \
        '$1 == a && $2 == b {print $6 * 1000 / $4}' "$RESULTS" | median) up=$(col "$t" 7)
      # Each a median over rounds of its own, so user + kernel need not add up to the total.
      user=$(awk -F, -v a="$test" -v b="$t" '$1 == a && $2 == b {printf "%.1f\n", $5 - $8}' "$RESULTS" | median)
      kernel=$(col "$t" 8)
      base=nginx
      [[ $t == *_nores || $test == full ]] && base=nginx_nores
      [[ $test == plain ]] && base=nginx_plain
      ng=$(col "$base" 5)
      ha=$(col "${base/nginx/haproxy}" 5)
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
        "$(awk -v u="$units" -v d="$DURATION" 'BEGIN {printf "%.0f", u / d}')" "$cpu" "$user" "$kernel" \
        "$(awk -v a="$cpu" -v b="$ng" 'BEGIN {printf "%.2fx", a / b}')" \
        "$(awk -v a="$cpu" -v b="$ha" 'BEGIN {printf "%.2fx", a / b}')" "$acc" "$up"
    done
  done
  [[ " $TESTS " == *" keepalive "* && " $TESTS " == *" plain "* ]] || return 0
  # Round by round, so that drift between rounds cancels out of the difference.
  tls_share() { # PROXY: median over rounds of keepalive CPU-µs minus plain CPU-µs
    awk -F, -v p="$1" '$1 == "keepalive" && $2 == p {k[$3] = $5}
      $1 == "plain" && $2 == p "_plain" {q[$3] = $5}
      END {for (r in k) if (r in q) printf "%.1f\n", k[r] - q[r]}' "$RESULTS" | median
  }
  printf '\n### what TLS adds to a keep-alive request (keepalive - plain, per round; median)\n\n'
  echo "| proxy | CPU-µs | vs nginx |"
  echo "|---|---:|---:|"
  local share ng_share
  ng_share=$(tls_share nginx)
  for t in nginx haproxy hyper_floor gatehouse; do
    share=$(tls_share "$t")
    printf '| %s | %s | %s |\n' "$t" "$share" "$(awk -v a="$share" -v b="$ng_share" 'BEGIN {printf "%.2fx", a / b}')"
  done
}

main() {
  make_material
  : >"$RESULTS"
  start_upstream
  start_nginx_tls
  start_haproxy_tls
  start_gatehouse gatehouse "tls.session_ticket_keys_file = \"$TICKETS\""
  start_gatehouse gatehouse_cache ""
  start_gatehouse gatehouse_nores "tls.resumption = false"
  start_gatehouse gatehouse_ring "tls.session_ticket_keys_file = \"$TICKETS\"" ring
  start_gatehouse gatehouse_nores_ring "tls.resumption = false" ring
  start_gatehouse gatehouse_plain ""
  if $FLOOR; then
    start_floor hyper_floor "$CERT" "$KEY"
    start_floor hyper_floor_plain
  fi
  PID_OF[gatehouse_jwt]=${PID_OF[gatehouse]} PORT_OF[gatehouse_jwt]=${PORT_OF[gatehouse]}
  [[ $(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:${PORT_OF[gatehouse]}/auth" \
    -H "Authorization: Bearer $TOKEN") == 200 ]] || die "gatehouse_jwt preflight: the token is refused"
  [[ $(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:${PORT_OF[gatehouse]}/auth") == 401 ]] \
    || die "gatehouse_jwt preflight: no token is not 401"
  local round test t list i n
  for ((round = 1; round <= ROUNDS; round++)); do
    for test in $TESTS; do
      read -r -a list <<<"$(targets_for "$test")"
      n=${#list[@]}
      # Each round starts one target later, so drift spreads over every row.
      for ((i = 0; i < n; i++)); do
        t=${list[$(((i + round) % n))]}
        log "round $round/$ROUNDS $test $t"
        measure "$test" "$t" "$round"
      done
    done
  done
  report | tee "$OUT/results.md"
}

main "$@"
