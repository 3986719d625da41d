#!/bin/sh
# lines.sh N FIFO [TIMES_FILE]
# Prints N numbered lines of 80 bytes as fast as it can (one write per line on a
# terminal), then writes its own CPU times (shell + children, from `times`) to
# TIMES_FILE and signals the end on FIFO.
awk -v n="$1" 'BEGIN { pad = sprintf("%070d", 0); for (i = 1; i <= n; i++) printf "%08d %s\n", i, pad }'
if [ -n "$3" ]; then times > "$3"; fi
echo done > "$2"
