#!/bin/bash
# The README's cluster walk-through on one machine, on loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0);
# `ray start --head` gets --block (in the background) so that it can be stopped by its pid.
REPO="$(cd "$(dirname "$0")/../.." && pwd)"; export PATH="$REPO/.venv/bin:$PATH" RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
WORK="$(mktemp -d)"; cd "$WORK"; ln -s "$REPO/configs" configs; ln -s "$REPO/experiments" experiments
echo '$ ray get-auth-token --generate'; ray get-auth-token --generate | sed 's/./x/g'; echo
echo '$ ray start --head --port 6379'
ray start --head --port 6379 --block > head.log 2>&1 & HEAD=$!
until grep -q "Ray runtime started" head.log; do sleep 0.5; done
grep -i "token auth" head.log | cut -c1-140
echo '$ mlp-lab compare batch_norm --seeds 0,1,2 --backend ray --address auto --threads 1'
s=$(date +%s); mlp-lab compare batch_norm --seeds 0,1,2 --backend ray --address auto --threads 1 2>&1 | grep -v "epoch \|INFO\|^\s*$" ; echo "rc=${PIPESTATUS[0]} in $(( $(date +%s) - s )) s"
echo '$ mlp-lab compare batch_norm --seeds 0,1,2 --backend ray --address 127.0.0.1:6379 --threads 1   (all done: skipped)'
mlp-lab compare batch_norm --seeds 0,1,2 --backend ray --address 127.0.0.1:6379 --threads 1 2>&1 | grep -v "INFO\|^\s*$" | tail -4
echo '$ (a machine without the token) HOME=$WORK/nohome mlp-lab compare ... --address 127.0.0.1:6379'
mkdir -p nohome; HOME=$WORK/nohome mlp-lab compare batch_norm --seeds 0 --backend ray --address 127.0.0.1:6379 --threads 1 2>&1 | grep "^error"; echo "rc=${PIPESTATUS[0]}"
kids=$(pgrep -P $HEAD); kill -TERM $HEAD; wait $HEAD; sleep 2
for k in $kids; do kill -0 $k 2>/dev/null && echo "LEFTOVER $k"; done; echo stopped
