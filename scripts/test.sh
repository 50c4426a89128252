#!/usr/bin/env bash
# Runs the whole test suite the way CI does: one optimized build (the `test-release` profile),
# tests in parallel.
# Installs what the tests need beyond cargo (redis-server, promtool, Alertmanager, chromium and its WebDriver,
# tmux, Biopython, py2bit, docker-compose to validate the compose file) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
  || need_apt+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
# Biopython is the independent reader the .2bit files gridwatch writes are checked against.
/usr/bin/python3 -c 'import Bio.SeqIO' >/dev/null 2>&1 || need_apt+=(python3-biopython)
# py2bit (UCSC's own 2bit library, wrapped) reads back the .2bit files `genomes export` writes.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import py2bit' >/dev/null 2>&1; then
  python3 -m pip install --quiet py2bit || echo "py2bit could not be installed; Biopython reads the exports instead"
fi
# The compose file is validated by `docker compose config` (v2) or `docker-compose config` (v1).
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 \
  || need_apt+=(docker-compose)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Everything above is installed now: a test that finds a tool missing fails instead of skipping.
export GRIDWATCH_REQUIRE_TOOLS=1
# Most integration tests spend their time waiting on real processes (servers, workers, a
# browser), so six at a time keep two cores busy; every test waits with generous deadlines.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-6}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The library's, the binary's and the integration tests. The benchmarks are not built here: CI
# builds them once to lint them, and `cargo bench` measures them.
cargo test --profile test-release --lib --bins --tests --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

# One closing line over every test binary, so a reader of the log need not add them up.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1); if ($(i) ~ /^ignored/) s += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
