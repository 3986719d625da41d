#!/bin/sh
# idle.sh DIR NAME: marks itself as started, then becomes `sleep 600`.
touch "$1/$2"
exec sleep 600
