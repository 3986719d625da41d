#!/bin/sh
# tick.sh NAME: one short line every 100 ms, forever.
i=0
while :; do i=$((i + 1)); echo "$1 tick $i"; sleep 0.1; done
