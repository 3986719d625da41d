#!/bin/sh
# orphans.sh: leaves four kinds of descendants behind (distinct durations):
# a background child, a subshell ignoring HUP and TERM, a new session, and itself.
sleep 7101 &
(trap "" HUP TERM; sleep 7102) &
setsid sleep 7103 &
exec sleep 7104
