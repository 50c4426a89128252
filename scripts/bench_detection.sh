#!/usr/bin/env bash
# Measures how fast the watchman declares a worker dead, with real processes: a crash (kill -9)
# and a hang (SIGSTOP, with a short heartbeat timeout), and a whole host lost (kill -9 of the
# agent and its worker together, full reports every 10 s so only the agent's 1 s heartbeats can
# tell), RUNS times each, and prints the medians. Latency = the alert's timestamp in the
# collector's alert log minus the moment the signal was sent; for host loss also the re-queue:
# the timestamp of the master's answer to `worker_down` for that worker in its log.
# Two more cases: a host lost while the collector is down (collector killed, the host killed
# 2.5 s later, the collector restarted 3 s after that; latency from the restart), and an agent
# restarted alone after its host was lost (`worker_missing`; latency from the agent's restart).
# Three more on Redis (a real redis-server, a master on it, workers reading it directly): a
# worker's link cut mid-job through a proxy that drops replies (so a lease granted in the cut
# never reaches it) for CUT_SECONDS, then restored; measured is how long any task it was
# delivered before the reconnect stays pending under it afterwards (the longest idle time after
# the reconnect). A second worker under a live worker's id connecting through the master: the
# time until it is refused (exit code 2). A worker killed with kill -9 and restarted at once
# under the same id: the time until it serves again.
# Targets: crash < 1 s, hang < timeout + 1 s, host loss (alert and re-queue) <= 5 s, host lost
# while the collector was down <= 5 s after it returns, agent alone < timeout + 1 s, idle after
# a reconnect <= 5 s, duplicate id refused, back serving after kill -9 <= 2 s.
#
# usage: scripts/bench_detection.sh [RUNS] [HEARTBEAT_TIMEOUT_SECONDS] [CUT_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
timeout=${2:-3}
cut_seconds=${3:-10}

cargo build --release --quiet
bin=$PWD/target/release/gridwatch
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

now() { date +%s.%N; }

wait_file() {
  for _ in $(seq 1 500); do [ -s "$1" ] && return 0; sleep 0.02; done
  echo "timed out waiting for $1" >&2; exit 1
}

# Prints the timestamp of the firing alert of rule $2 (worker_dead by default) for worker $1 once
# it is in the alert log.
wait_dead_alert() {
  for _ in $(seq 1 1500); do
    line=$(grep "\"rule\":\"${2:-worker_dead}\"" "$dir/alerts.log" 2>/dev/null \
      | grep "\"worker_id\":\"$1\"" | grep '"state":"firing"' | head -n 1 || true)
    if [ -n "$line" ]; then
      echo "$line" | sed -n 's/.*"timestamp":\([0-9.]*\)}.*/\1/p'
      return 0
    fi
    sleep 0.02
  done
  echo "no ${2:-worker_dead} alert for $1" >&2; exit 1
}

# Prints, as seconds since the epoch, when the master acted on worker $1's `worker_down` (it
# re-queued its tasks, or found none to re-queue: no job runs here).
wait_requeue() {
  for _ in $(seq 1 1500); do
    line=$(grep -e "re-queued the dead worker's tasks" -e "nothing to re-queue" "$dir/master.log" \
      2>/dev/null | grep "\"worker\":\"$1\"" | head -n 1 || true)
    if [ -n "$line" ]; then
      date -d "$(echo "$line" | sed -n 's/.*"timestamp":"\([^"]*\)".*/\1/p')" +%s.%N
      return 0
    fi
    sleep 0.02
  done
  echo "no re-queue of $1 in the master's log" >&2; exit 1
}

wait_alive() {
  for _ in $(seq 1 500); do
    if "$bin" workers --collector "$collector" --json 2>/dev/null \
      | tr -d ' \n' | grep -q "\"worker_id\":\"$1\",\"state\":\"[a-z]*\",\"status\":\"ALIVE\""; then
      return 0
    fi
    sleep 0.05
  done
  echo "worker $1 never became ALIVE" >&2; exit 1
}

"$bin" master --listen 127.0.0.1:0 --addr-file "$dir/master.addr" --data-dir "$dir/data" \
  2>"$dir/master.log" & pids+=($!)
wait_file "$dir/master.addr"; master=$(cat "$dir/master.addr")
# Starts the collector on $1, appending to its log; sets $collector_pid and $collector.
start_collector() {
  rm -f "$dir/collector.addr"
  "$bin" collector --listen "$1" --addr-file "$dir/collector.addr" --master "$master" \
    --alert-log "$dir/alerts.log" 2>>"$dir/collector.log" &
  collector_pid=$!; pids+=($collector_pid)
  wait_file "$dir/collector.addr"; collector=$(cat "$dir/collector.addr")
}
start_collector 127.0.0.1:0

# Starts an agent and a worker with id $1; sets $worker_pid and $agent_pid.
start_pair() {
  "$bin" agent --worker-id "$1" --socket "$dir/$1.sock" --collector-host 127.0.0.1 \
    --collector-port "${collector##*:}" --heartbeat-timeout "$timeout" \
    --report-interval "${2:-10}" 2>"$dir/agent-$1.log" &
  agent_pid=$!; pids+=($agent_pid)
  # Started from a subshell, so the shell does not announce the kills we are about to make.
  worker_pid=$("$bin" worker --id "$1" --master "$master" --agent-socket "$dir/$1.sock" \
    >/dev/null 2>"$dir/worker-$1.log" & echo $!)
  pids+=($worker_pid)
  wait_alive "$1"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Redis, a proxy to it that can cut a link, and a master on Redis with a lease timeout far above
# what a job here takes, so a task left behind by a cut would show as a long idle time.
redis_port=$(free_port); proxy_port=$(free_port)
mkdir -p "$dir/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/redis" \
  >"$dir/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 1 500); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.02; done
redis_url="redis://127.0.0.1:$redis_port/0"
python3 scripts/cut_proxy.py "$proxy_port" "$redis_port" "$dir/proxy.dropped" 2>"$dir/proxy.log" &
proxy_pid=$!; pids+=($proxy_pid)
wait_file "$dir/proxy.dropped"
"$bin" master --listen 127.0.0.1:0 --addr-file "$dir/rmaster.addr" --data-dir "$dir/rdata" \
  --http 127.0.0.1:0 --backend "$redis_url" --visibility-timeout 120 \
  2>"$dir/rmaster.log" & pids+=($!)
wait_file "$dir/rmaster.addr"; rmaster=$(cat "$dir/rmaster.addr")
python3 -c 'import random, sys
random.seed(7)
print(">chr1")
bases = "".join(random.choice("ACGT") for _ in range(400000))
for i in range(0, len(bases), 60): print(bases[i:i + 60])' >"$dir/cut.fa"

# Starts worker $1 reading Redis at $2 (more flags after); sets $rworker_pid once it has started.
start_redis_worker() {
  local id=$1 url=$2; shift 2
  rworker_pid=$("$bin" worker --id "$id" --master "$rmaster" --backend "$url" --threads 2 "$@" \
    >/dev/null 2>>"$dir/worker-$id.log" & echo $!)
  pids+=($rworker_pid)
  for _ in $(seq 1 1500); do
    [ "$(grep -c '"worker started"' "$dir/worker-$id.log" 2>/dev/null)" -ge "${started:-1}" ] && return 0
    sleep 0.02
  done
  echo "worker $id did not start" >&2; exit 1
}

# Deliveries pending under consumer $1 that were made more than $2 ms ago.
pending_older_than() {
  for stream in tasks:high tasks:medium tasks:low; do
    redis-cli -p "$redis_port" --raw XPENDING "$stream" workers - + 10000 "$1" 2>/dev/null
  done | awk -v min="$2" 'NR % 4 == 3 && $1 + 0 > min + 0 { n++ } END { print n + 0 }'
}

# One cut: worker cut$1 reads Redis through the proxy, steady$1 directly; a job runs; the cut
# starts mid-job and lasts $cut_seconds once a lease reply (2000 bases a task) was dropped.
# Prints the seconds after the reconnect until nothing delivered to cut$1 before it is pending.
cut_and_reconnect() {
  started=1 start_redis_worker "cut$1" "redis://127.0.0.1:$proxy_port/0"
  local cut_pid=$rworker_pid
  started=1 start_redis_worker "steady$1" "$redis_url"
  local steady_pid=$rworker_pid
  "$bin" submit "$dir/cut.fa" -p ACGTA --chunk-size 2000 --job-id "cut-job$1" \
    --master "$rmaster" >/dev/null 2>&1
  for _ in $(seq 1 1500); do
    [ "$(redis-cli -p "$redis_port" HGET "job:cut-job$1:stats" chunks_processed)" -gt 0 ] \
      2>/dev/null && break
    sleep 0.02
  done
  local before; before=$(cat "$dir/proxy.dropped")
  kill -USR1 "$proxy_pid"
  for _ in $(seq 1 3000); do
    [ "$(( $(cat "$dir/proxy.dropped") - before ))" -gt 1500 ] && break
    sleep 0.02
  done
  sleep "$cut_seconds"
  kill -USR2 "$proxy_pid"
  local restored; restored=$(now)
  local waited
  while :; do
    waited=$(echo "($(now) - $restored) * 1000" | bc -l)
    [ "$(pending_older_than "cut$1" "$waited")" -eq 0 ] && break
    sleep 0.05
  done
  echo "$(now) - $restored" | bc -l
  for _ in $(seq 1 9000); do
    [ "$(redis-cli -p "$redis_port" GET "job:cut-job$1:status")" = completed ] && break
    sleep 0.02
  done
  kill "$cut_pid" "$steady_pid" 2>/dev/null || true
}

crash=(); hang=(); host=(); requeue=(); offline=(); offline_requeue=(); alone=()
idle=(); refused=(); back=()
for run in $(seq 1 "$runs"); do
  start_pair "crash$run"
  sent=$(now); kill -9 "$worker_pid"
  alert=$(wait_dead_alert "crash$run")
  crash+=("$(echo "$alert - $sent" | bc -l)")
  kill "$agent_pid"

  start_pair "hang$run"
  sent=$(now); kill -STOP "$worker_pid"
  alert=$(wait_dead_alert "hang$run")
  hang+=("$(echo "$alert - $sent" | bc -l)")
  kill -CONT "$worker_pid"; kill "$worker_pid" "$agent_pid"
  wait "$agent_pid" 2>/dev/null || true

  start_pair "host$run"
  sent=$(now); kill -9 "$agent_pid" "$worker_pid"
  alert=$(wait_dead_alert "host$run" worker_unreachable)
  host+=("$(echo "$alert - $sent" | bc -l)")
  requeued=$(wait_requeue "host$run")
  requeue+=("$(echo "$requeued - $sent" | bc -l)")
  wait "$agent_pid" 2>/dev/null || true

  start_pair "offline$run"
  kill -9 "$collector_pid"; wait "$collector_pid" 2>/dev/null || true
  sleep 2.5
  kill -9 "$agent_pid" "$worker_pid"; wait "$agent_pid" 2>/dev/null || true
  sleep 3
  sent=$(now); start_collector "$collector"
  alert=$(wait_dead_alert "offline$run" worker_unreachable)
  offline+=("$(echo "$alert - $sent" | bc -l)")
  requeued=$(wait_requeue "offline$run")
  offline_requeue+=("$(echo "$requeued - $sent" | bc -l)")

  start_pair "alone$run"
  kill -9 "$agent_pid" "$worker_pid"; wait "$agent_pid" 2>/dev/null || true
  wait_dead_alert "alone$run" worker_unreachable >/dev/null
  sent=$(now)
  "$bin" agent --worker-id "alone$run" --socket "$dir/alone$run.sock" --collector-host 127.0.0.1 \
    --collector-port "${collector##*:}" --heartbeat-timeout "$timeout" --report-interval 10 \
    2>"$dir/agent-alone$run-again.log" &
  agent_pid=$!; pids+=($agent_pid)
  alert=$(wait_dead_alert "alone$run" worker_missing)
  alone+=("$(echo "$alert - $sent" | bc -l)")
  kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true

  idle+=("$(cut_and_reconnect "$run")")

  started=1 start_redis_worker "dup$run" "$redis_url"
  dup_pid=$rworker_pid
  sent=$(now)
  code=0
  timeout 60 "$bin" worker --id "dup$run" --master "$rmaster" >/dev/null 2>"$dir/dup$run-second.log" || code=$?
  refused+=("$(echo "$(now) - $sent" | bc -l)")
  if [ "$code" -ne 2 ] || ! grep -q "in use" "$dir/dup$run-second.log"; then
    echo "a second dup$run through the master was not refused (exit $code)" >&2; exit 1
  fi
  kill "$dup_pid"

  started=1 start_redis_worker "phoenix$run" "$redis_url"
  kill -9 "$rworker_pid"
  sent=$(now)
  started=2 start_redis_worker "phoenix$run" "$redis_url"
  back+=("$(echo "$(now) - $sent" | bc -l)")
  kill "$rworker_pid"
  printf 'run %d: crash %.3f s, hang %.3f s, host loss %.3f s, its re-queue %.3f s, host lost while the collector was down %.3f s, its re-queue %.3f s, agent alone %.3f s, idle after reconnect %.3f s, duplicate refused %.3f s, back after kill -9 %.3f s\n' \
    "$run" "${crash[-1]}" "${hang[-1]}" "${host[-1]}" "${requeue[-1]}" "${offline[-1]}" \
    "${offline_requeue[-1]}" "${alone[-1]}" "${idle[-1]}" "${refused[-1]}" "${back[-1]}"
done

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
printf 'median crash detection: %.3f s over %d runs (target < 1 s)\n' "$(median "${crash[@]}")" "$runs"
printf 'median hang detection:  %.3f s over %d runs (heartbeat timeout %s s; target < %s s)\n' \
  "$(median "${hang[@]}")" "$runs" "$timeout" "$((timeout + 1))"
printf 'median host-loss detection: %.3f s over %d runs (agent and worker killed; target <= 5 s)\n' \
  "$(median "${host[@]}")" "$runs"
printf 'median host-loss re-queue:  %.3f s over %d runs (master re-queued its tasks; target <= 5 s)\n' \
  "$(median "${requeue[@]}")" "$runs"
printf 'median host lost while the collector was down: %.3f s after it returned over %d runs (target <= 5 s)\n' \
  "$(median "${offline[@]}")" "$runs"
printf 'median its re-queue:        %.3f s after the collector returned over %d runs (target <= 5 s)\n' \
  "$(median "${offline_requeue[@]}")" "$runs"
printf 'median agent alone (worker_missing): %.3f s after the agent restarted over %d runs (heartbeat timeout %s s; target < %s s)\n' \
  "$(median "${alone[@]}")" "$runs" "$timeout" "$((timeout + 1))"
printf 'median idle after a %s s cut: %.3f s after the reconnect over %d runs (Redis; lease timeout 120 s; target <= 5 s)\n' \
  "$cut_seconds" "$(median "${idle[@]}")" "$runs"
printf 'median duplicate id through the master refused in %.3f s over %d runs (Redis; exit code 2 each time)\n' \
  "$(median "${refused[@]}")" "$runs"
printf 'median back serving after kill -9 and an immediate restart: %.3f s over %d runs (Redis; target <= 2 s)\n' \
  "$(median "${back[@]}")" "$runs"
