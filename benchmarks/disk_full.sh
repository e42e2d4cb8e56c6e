#!/bin/bash
# Disk full on small tmpfs mounts (run as root): the message, the exit code, temporaries left,
# and --resume finishing the run once space is freed. Writes under /tmp/df22m.
set -u
W=$(cd "$(dirname "$0")/.." && pwd); PY=${PYTHON:-python}; export PYTHONPATH=$W MLP_LAB_DATA=/tmp/df22m/idx
mkdir -p /tmp/df22m && cd /tmp/df22m
$PY -c "import sys; sys.path.insert(0, '$W/tests'); from pathlib import Path; from conftest import write_idx_dataset; write_idx_dataset(Path('idx'), n_train=3000, n_test=300)"
cfg() { cat > $1 <<YAML
name: full
data: {dataset: mnist, root: /tmp/df22m/data, download: false, val_fraction: 0.1}
model: {hidden_sizes: [$2]}
train: {epochs: $3, batch_size: 64, device: cpu}
output: {dir: $4, tensorboard: true}
YAML
}
echo "== A: 2 MB tmpfs, full at the first checkpoint"
mkdir -p a && mount -t tmpfs -o size=2m tmpfs a
cfg a.yaml 256 3 /tmp/df22m/a/runs
$PY -m mlp_lab run a.yaml > a.out 2> a.err; echo "exit $?"; cat a.err
echo "temporaries left: $(find a -name '*.tmp-*' | wc -l)"; find a -type f | sort
mount -o remount,size=64m a
$PY -m mlp_lab run --resume a/runs/full > a2.out 2>&1; echo "resume exit $?"; tail -1 a2.out
echo "metrics rows: $(($(wc -l < a/runs/full/metrics.csv) - 1))"; umount a
echo "== B: 64 MB tmpfs, filled by another program after epoch 1"
mkdir -p b && mount -t tmpfs -o size=64m tmpfs b
cfg b.yaml 512 20 /tmp/df22m/b/runs
$PY -m mlp_lab run b.yaml > b.out 2> b.err & pid=$!
while [ ! -f b/runs/full/metrics.csv ]; do sleep 0.05; done
dd if=/dev/zero of=b/filler bs=1M 2>/dev/null; wait $pid; echo "exit $?"; cat b.err
echo "temporaries left: $(find b -name '*.tmp-*' | wc -l)"
rows=$(($(wc -l < b/runs/full/metrics.csv) - 1)); echo "metrics rows (complete epochs): $rows"
$PY -c "from mlp_lab.training.checkpoint import load_checkpoint; c = load_checkpoint('b/runs/full/checkpoints/last.pt', 'last'); print('last.pt loads: epoch', c['epoch'])"
rm b/filler
$PY -m mlp_lab run --resume b/runs/full > b2.out 2>&1; echo "resume exit $?"; tail -1 b2.out
echo "metrics rows: $(($(wc -l < b/runs/full/metrics.csv) - 1))"; umount b
