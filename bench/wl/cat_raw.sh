#!/bin/sh
# cat_raw.sh: the echo program for keystroke latency: raw terminal, no kernel
# echo, so every byte typed comes back only through the program itself.
stty raw -echo
exec cat
