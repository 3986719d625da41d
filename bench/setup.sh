#!/usr/bin/env bash
# Installs the peers the benchmark compares mew with, into bench/.tools (gitignored).
# Each comes from its own registry; one that fails is reported and skipped.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/.tools"
mkdir -p "$tools"
cd "$tools" || exit 1

command -v tmux >/dev/null || echo "tmux missing: apt-get install tmux" >&2
command -v script >/dev/null || echo "script missing: apt-get install bsdutils" >&2
command -v inotifywait >/dev/null || echo "inotifywait missing (the watch benchmark's baseline): apt-get install inotify-tools" >&2

if [ ! -x "$tools/bin/mprocs" ]; then
    cargo install mprocs --locked --root "$tools" || echo "mprocs: cargo install failed" >&2
fi
if command -v npm >/dev/null; then
    [ -f package.json ] || npm init -y >/dev/null
    npm install --no-audit --no-fund pm2 foreman concurrently || echo "npm peers: install failed" >&2
else
    echo "npm missing: PM2, node-foreman and concurrently will not be measured" >&2
fi
if [ ! -x "$tools/venv/bin/honcho" ]; then
    python3 -m venv venv && venv/bin/pip install -q honcho || echo "honcho: pip install failed" >&2
fi
