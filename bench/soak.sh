#!/usr/bin/env bash
# Soak test for mew (not run in CI): a space whose processes restart every few
# seconds (crashes and `mew space restart`), with output, status calls and
# `logs -f` clients, for SOAK_SECONDS (default 600). Reports the space
# server's resident memory, open file descriptors and threads at the start
# (after a warm-up) and at the end, and fails if any grew beyond a margin or
# if a process survives `down`.
#
#   bench/soak.sh                      # 10 minutes, debug build
#   SOAK_SECONDS=60 MEW=target/release/mew bench/soak.sh
set -euo pipefail

SOAK_SECONDS=${SOAK_SECONDS:-600}
WARMUP=${WARMUP:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MEW=${MEW:-$ROOT/target/debug/mew}
if [[ ! -x $MEW ]]; then
  (cd "$ROOT" && cargo build --quiet)
fi
DIR=$(mktemp -d /tmp/mew-soak.XXXXXX)
MARK="soak$$"
mkdir -p "$DIR/.mew"
cat > "$DIR/.mew/space.yaml" <<'YAML'
processes:
  crash-2s: { command: "echo starting; sleep 2; exit 1", restart_policy: always, backoff: { initial: 100ms, max: 100ms } }
  crash-3s: { command: "echo starting; sleep 3; exit 2", restart_policy: always, backoff: { initial: 100ms, max: 100ms } }
  crash-4s: { command: "seq 1 5000; sleep 4; kill -9 $$$$", restart_policy: always, backoff: { initial: 100ms, max: 100ms } }
  restarted: { command: "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.01; done" }
  forks: { command: "sleep 1000 & (setsid sleep 1000 &); while :; do sleep 1; done" }
  steady: { command: "while :; do date; sleep 0.5; done" }
YAML

m() { TEST_MARK=$MARK "$MEW" --space-dir "$DIR" "$@"; }
cleanup() {
  m space down >/dev/null 2>&1 || true
  [[ -n ${FOLLOW_PID:-} ]] && kill "$FOLLOW_PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

m space up -d --wait --timeout 60s >/dev/null
PID=$(m space status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["server_pid"])')
sample() {
  local rss fds thr
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$PID/status")
  fds=$(ls "/proc/$PID/fd" | wc -l)
  echo "$rss $fds $thr"
}
m space logs -f >/dev/null 2>&1 & FOLLOW_PID=$!

# Load: restart a process every 3 s, status every second.
load_until() {
  local end=$1 n=0
  while (( $(date +%s) < end )); do
    if (( n % 3 == 0 )); then m space restart restarted forks >/dev/null; fi
    m space status >/dev/null
    n=$((n + 1))
    sleep 1
  done
}

load_until $(( $(date +%s) + WARMUP ))
read -r RSS0 FDS0 THR0 < <(sample)
echo "start (after ${WARMUP}s warm-up): rss ${RSS0} KiB, fds ${FDS0}, threads ${THR0}"
END=$(( $(date +%s) + SOAK_SECONDS ))
while (( $(date +%s) < END )); do
  NEXT=$(( $(date +%s) + 60 ))
  (( NEXT > END )) && NEXT=$END
  load_until "$NEXT"
  read -r RSS FDS THR < <(sample)
  RESTARTS=$(m space status --json | python3 -c 'import json,sys; print(sum(p["restarts"] for p in json.load(sys.stdin)["processes"]))')
  echo "$(date +%T): rss ${RSS} KiB, fds ${FDS}, threads ${THR}, restarts so far ${RESTARTS}"
done
read -r RSS1 FDS1 THR1 < <(sample)
echo "end: rss ${RSS1} KiB, fds ${FDS1}, threads ${THR1}"

kill "$FOLLOW_PID" 2>/dev/null || true
m space down >/dev/null
LEFT=""
for _ in $(seq 1 100); do
  LEFT=$(grep -l "TEST_MARK=$MARK" /proc/[0-9]*/environ 2>/dev/null || true)
  [[ -z $LEFT ]] && break
  sleep 0.1
done

STATUS=0
if [[ -n $LEFT ]]; then echo "FAIL: processes left after down: $LEFT"; STATUS=1; fi
# Margins: the allocator and buffers settle; growth beyond these is a leak.
if (( RSS1 > RSS0 + 4096 + RSS0 / 5 )); then echo "FAIL: rss grew ${RSS0} -> ${RSS1} KiB"; STATUS=1; fi
if (( FDS1 > FDS0 + 2 )); then echo "FAIL: fds grew ${FDS0} -> ${FDS1}"; STATUS=1; fi
if (( THR1 > THR0 + 2 )); then echo "FAIL: threads grew ${THR0} -> ${THR1}"; STATUS=1; fi
(( STATUS == 0 )) && echo "ok: no growth in memory, file descriptors or threads over ${SOAK_SECONDS}s"
exit $STATUS
