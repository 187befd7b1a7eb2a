#!/usr/bin/env bash
# Which gatehouse functions a target's corpus reaches, from libFuzzer's own counters
# (-print_coverage=1; no coverage rebuild needed). Run after fuzz/run.sh:
#
#   fuzz/coverage.sh token_extract [src/auth/token src/redact.rs ...]
#
# Prints, for gatehouse source files under the given prefixes (default: all of src/), each
# function with its hit count and covered/total instrumented edges (edges include those of
# inlined library code, so a fully exercised function rarely shows n/n), then the uncovered
# functions of those files.
set -euo pipefail
cd "$(dirname "$0")"
t="$1"; shift
prefixes=("$@"); [ ${#prefixes[@]} -eq 0 ] && prefixes=(src/)
bin="target/x86_64-unknown-linux-gnu/release/$t"
[ -x "$bin" ] || RUSTC_BOOTSTRAP=1 cargo fuzz build "$t"
dirs=("corpus/$t"); [ -d "work/$t" ] && dirs=("work/$t" "corpus/$t")
out=$(mktemp)
"$bin" -runs=0 -print_coverage=1 "${dirs[@]}" >"$out" 2>&1 || true
root=$(cd .. && pwd)
pattern=$(printf "|$root/%s" "${prefixes[@]}"); pattern="${pattern:1}"
echo "== $t: covered functions"
grep -E "^COVERED_FUNC: .*($pattern)" "$out" | sed -E "s#$root/##; s/^COVERED_FUNC: //" | sort -t' ' -k5 || true
echo "== $t: uncovered functions"
grep -E "^UNCOVERED_FUNC: .*($pattern)" "$out" | sed -E "s#$root/##; s/^UNCOVERED_FUNC: //" | sort || true
grep -E "INITED|DONE" "$out" | tail -1
rm -f "$out"
