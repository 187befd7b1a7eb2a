#!/usr/bin/env bash
# Runs each gatehouse fuzz target for a while, one after another. Not part of CI.
#
#   fuzz/run.sh                      # every target, FUZZ_SECONDS (default 180) each
#   FUZZ_SECONDS=600 fuzz/run.sh jwt_validate config_parse
#   FUZZ_JOBS=2 fuzz/run.sh          # libFuzzer -fork=N per target (default 1 process)
#   GATEHOUSE_FUZZ_STRICT=1 fuzz/run.sh token_extract   # also check the known findings
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and nightly features; on stable Rust this
# script sets RUSTC_BOOTSTRAP=1. Seeds are read from fuzz/corpus/<target>/ (committed,
# never written); what libFuzzer learns goes to fuzz/work/<target>/ (ignored by git), so a
# later run continues from it. Crashes land in fuzz/artifacts/<target>/; reproduce one with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> artifacts/<target>/<file>
# Each run's libFuzzer log is fuzz/work/<target>.log; a summary line per target is printed.
set -euo pipefail

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
seconds="${FUZZ_SECONDS:-180}"
jobs="${FUZZ_JOBS:-1}"
all=(token_extract jwt_validate config_parse first_message redact framing canonical_path proxy_header ws_relay)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

declare -A dict=([config_parse]=dict/config.dict [jwt_validate]=dict/jwt.dict [token_extract]=dict/http.dict [first_message]=dict/jwt.dict [framing]=dict/http.dict [canonical_path]=dict/path.dict)

cargo fuzz build 2>&1 | tail -1
echo "load before: $(uptime)"
status=0
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048)
  [ -n "${dict[$t]:-}" ] && args+=(-dict="${dict[$t]}")
  [ "$jobs" -gt 1 ] && args+=(-fork="$jobs")
  log="work/$t.log"
  echo "== $t: ${seconds}s"
  if cargo fuzz run "$t" "work/$t" "corpus/$t" -- "${args[@]}" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log and artifacts/$t/)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  cov=$(grep -oE '(cov|ft): [0-9]+' "$log" | tail -2 | paste -sd' ' || true)
  echo "   $result; executions: ${execs:-?}; last $cov; corpus: $(ls "work/$t" | wc -l) files"
done
echo "load after: $(uptime)"
exit $status
