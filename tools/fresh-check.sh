#!/usr/bin/env bash
# Proves the test command on a fresh machine: removes what `.ci/setup` installs (the Debian
# packages redis-server, redis-tools, chromium, shellcheck, haproxy, prometheus, nginx-light
# and wrk), clones this repository's committed HEAD
# into a temporary folder (so no node_modules, .venv-ci or target/ comes along) and runs the
# README's test command there, `CI=true bash .ci/run`. Not run by CI itself: it uninstalls
# packages and builds everything from scratch (about 15 minutes on 2 cores).
#
# Usage: bash tools/fresh-check.sh [--keep]   (--keep leaves the clone for a look afterwards)
# Needs root (apt-get). Node.js stays: it belongs to the machine's image here; `.ci/setup`
# installs Debian's nodejs and npm only where `node` is missing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
keep="${1:-}"

echo "fresh-check: removing redis-server, redis-tools, chromium, shellcheck, haproxy, prometheus (promtool), nginx, wrk, ruby-rack and ruby-webrick"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 purge -y -qq \
  redis-server redis-tools chromium chromium-common shellcheck haproxy prometheus \
  nginx-light nginx nginx-common libnginx-mod-http-echo wrk ruby-rack ruby-webrick >/dev/null 2>&1 || true
for bin in redis-server /usr/bin/chromium shellcheck haproxy promtool /usr/sbin/nginx wrk; do
  if command -v "$bin" >/dev/null; then echo "fresh-check: $bin is still installed"; exit 1; fi
done
for lib in rack webrick; do
  if ruby -e "require '$lib'" 2>/dev/null; then echo "fresh-check: ruby-$lib is still installed"; exit 1; fi
done

work="$(mktemp -d /tmp/gatehouse-fresh.XXXXXX)"
[ "$keep" = "--keep" ] || trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/gatehouse"
cd "$work/gatehouse"
echo "fresh-check: $(git log -1 --format='%h %s') in $work/gatehouse"
unset CARGO_TARGET_DIR
start=$SECONDS
status=0
CI=true bash .ci/run || status=$?
echo "fresh-check: CI=true bash .ci/run exited $status after $((SECONDS - start)) s"
exit "$status"
