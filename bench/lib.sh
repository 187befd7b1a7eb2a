# Helpers shared by the scripts in bench/; sourced, never run.
# The sourcing script defines log() (its own prefix) and READY_TIMEOUT first.

die() { log "ERROR: $*"; exit 1; }

# Every process a script starts is recorded here; its EXIT trap stops them whatever
# happens (error, Ctrl-C, normal end). PIDs are removed once stopped and reaped, so the
# trap can never signal an unrelated process that reused a PID.
PIDS=()

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# stop_pid PID [GRACE]: SIGTERM, up to GRACE (5) seconds to exit, then SIGKILL; reap it.
stop_pid() {
  local pid=$1 grace=${2:-5} i
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# stop_all: stops every process in PIDS, newest first.
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
}

# stop_all_on_exit: whatever ends the script (error, Ctrl-C, normal end), stop_all runs
# and the script keeps its exit status (130 for INT, 143 for TERM).
stop_all_on_exit() {
  trap 'rc=$?; trap - EXIT INT TERM; stop_all; exit "$rc"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# free_port VAR: a TCP port on 127.0.0.1 that no socket uses (in any state) and that
# this run has not handed out yet.
USED_PORTS=" "
free_port() {
  local -n _out=$1
  local p tries
  for ((tries = 0; tries < 200; tries++)); do
    p=$((20000 + SRANDOM % 12000)) # below the ephemeral range (32768+) of outgoing connections
    [[ $USED_PORTS == *" $p "* ]] && continue
    if [[ -z $(ss -Htan "( sport = :$p )") ]]; then
      USED_PORTS+="$p "
      _out=$p
      return 0
    fi
  done
  die "no free port found"
}

# render TEMPLATE OUTPUT NAME=VALUE...: replaces @NAME@ placeholders.
render() {
  local tpl=$1 dst=$2 kv args=()
  shift 2
  for kv in "$@"; do
    # '|' never appears in our values (paths, ports, URLs); escape '&' for sed.
    local val=${kv#*=}
    val=${val//&/\\&}
    args+=(-e "s|@${kv%%=*}@|${val}|g")
  done
  sed "${args[@]}" "$tpl" >"$dst"
  if grep -q '@[A-Z_]*@' "$dst"; then die "unrendered placeholder in $dst"; fi
}

# http_code URL [curl args...]: prints the status code, 000 when nothing answered.
http_code() {
  local url=$1
  shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true
}

# wait_http URL PID NAME [WANT]: until URL answers (with WANT if given), the process
# dies, or READY_TIMEOUT passes.
wait_http() {
  local url=$1 pid=$2 name=$3 want=${4:-} code deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || { log "$name exited during startup"; return 1; }
    code=$(http_code "$url")
    if [[ -n $want && $code == "$want" ]] || [[ -z $want && $code != 000 ]]; then return 0; fi
    sleep 0.2
  done
  log "$name not ready after ${READY_TIMEOUT}s ($url answered ${code:-nothing})"
  return 1
}

# cpu_times PID: "utime stime" (fields 14 and 15 of /proc/PID/stat), all threads.
# The command name (field 2) may contain spaces, so split after its closing ')'.
cpu_times() {
  local stat rest f
  stat=$(<"/proc/$1/stat") || return 1
  rest=${stat##*) }          # now field 3 (state) is f[0], so field N is f[N-3]
  read -r -a f <<<"$rest"
  echo "${f[11]} ${f[12]}"
}

# cpu_ticks PID: utime + stime.
cpu_ticks() {
  local t
  t=$(cpu_times "$1") || return 1
  echo $((${t% *} + ${t#* }))
}

# cpu_sys_ticks PID: stime alone, the kernel's share of cpu_ticks.
cpu_sys_ticks() {
  local t
  t=$(cpu_times "$1") || return 1
  echo "${t#* }"
}
CLK_TCK=$(getconf CLK_TCK)

# measured_pid_ok PID NAME: the PID whose CPU we read must be the server itself, not a
# wrapper left in between (env, taskset, a forked bash), whose CPU time would be ~0.
measured_pid_ok() {
  local comm
  comm=$(<"/proc/$1/comm") || return 1
  case $comm in
    bash | sh | env | taskset | timeout)
      log "$2: PID $1 is '$comm', a wrapper, not the server"
      return 1
      ;;
  esac
}

# to_ms VALUE-WITH-UNIT: wrk prints latencies as 845.00us, 1.23ms, 1.02s or 1.50m.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
new_jti() { printf -v "$1" '%08x%08x%08x%08x' "$SRANDOM" "$SRANDOM" "$SRANDOM" "$SRANDOM"; }

# An answer that refuses a token (gatehouse and HAProxy may say 401 or 403).
denied() { [[ $1 == 401 || $1 == 403 ]]; }

stop_gatehouse() {
  [[ -n $GH_PID ]] && stop_pid "$GH_PID"
  GH_PID=""
}

# build_gatehouse: rebuilds the default binary (DEFAULT_BIN=1) when it is missing or older
# than its sources, unless BUILD=0; a GATEHOUSE_BIN given by the caller is used as it is.
# Other engineers may be editing the tree: when the build fails, an existing binary is used
# and GH_NOTE says how old it is. Returns 1 when there is no binary to run. Uses the
# caller's log, OUT, GATEHOUSE_BIN, BUILD and DEFAULT_BIN.
GH_NOTE=""
build_gatehouse() {
  local stale="" built
  if [[ ! -x $GATEHOUSE_BIN ]]; then
    stale="missing"
  elif [[ -n $(find src Cargo.toml Cargo.lock -newer "$GATEHOUSE_BIN" -print -quit 2>/dev/null) ]]; then
    stale="older than its sources"
  fi
  if [[ -n $stale && $BUILD != 0 && $DEFAULT_BIN == 1 ]]; then
    log "gatehouse binary $stale: cargo build --release (may wait for another build's lock)"
    if ! timeout 1800 cargo build --release >"$OUT/gatehouse.build.log" 2>&1; then
      tail -n 15 "$OUT/gatehouse.build.log" >&2
      [[ -x $GATEHOUSE_BIN ]] || { log "the build failed and there is no binary"; return 1; }
      built=$(date -r "$GATEHOUSE_BIN" '+%F %H:%M')
      log "WARNING: the build failed; using the existing binary (built $built)"
      GH_NOTE="the working tree did not build; measured the binary built $built"
    fi
  elif [[ -n $stale ]]; then
    log "gatehouse binary $stale; not building (BUILD=$BUILD, GATEHOUSE_BIN=$GATEHOUSE_BIN)"
    [[ -x $GATEHOUSE_BIN ]] || return 1
  fi
}
