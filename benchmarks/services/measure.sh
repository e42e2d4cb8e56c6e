#!/bin/bash
# Issue 21 measurement: real FashionMNIST, a real mlflow server on 127.0.0.1, runs found vs expected.
set -u
REPO="$(cd "$(dirname "$0")/../.." && pwd)"; WORK="$(mktemp -d)"; cp -r "$(dirname "$0")"/experiments "$(dirname "$0")"/searches "$WORK"; sed -i "s|../../../configs|$REPO/configs|" "$WORK"/*/*.yaml; cd "$WORK"
B="$REPO/.venv/bin"
rm -rf runs server; mkdir -p server
PORT=5391
STORE=sqlite:///$WORK/server/mlflow.db
$B/python -c "from mlflow.tracking import MlflowClient as C; C('$STORE','$STORE').search_registered_models()" 2>/dev/null
setsid $B/python -m mlflow server --host 127.0.0.1 --port $PORT --workers 1 --backend-store-uri $STORE --artifacts-destination $WORK/server/art > server/log 2>&1 &
SPID=$!
until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.5; done
export MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT
echo "== compare --jobs 1"; $B/mlp-lab compare dropout_j1 --track --jobs 1 --threads 1 2>&1 | grep -v "epoch "
echo "== compare --jobs 2"; $B/mlp-lab compare dropout_j2 --track --jobs 2 --threads 1 2>&1 | grep -v "epoch "
echo "== untracked run + study, then track twice"
$B/mlp-lab run $REPO/configs/baseline.yaml --set train.epochs=1 --set output.tensorboard=false --threads 2 2>&1 | grep -v "epoch "
$B/mlp-lab compare dropout_u --threads 2 2>&1 | grep -v "epoch "
$B/mlp-lab track runs/baseline dropout_u 2>&1
$B/mlp-lab track runs/baseline dropout_u 2>&1
echo "== register (never exported before? no: exported above) -> a fresh run"
$B/mlp-lab run $REPO/configs/baseline.yaml --set name=fresh --set train.epochs=1 --set output.tensorboard=false --threads 2 2>&1 | grep -v "epoch "
$B/mlp-lab register runs/fresh --name fashion-mlp --alias champion 2>&1
echo "== search --track"; $B/mlp-lab search s3 --track --threads 2 2>&1 | grep -v "epoch "
echo "== counts in the server"
$B/python - <<'PY'
from mlflow.tracking import MlflowClient
c = MlflowClient("http://127.0.0.1:5391")
for name, want in [("dropout_j1", 3), ("dropout_j2", 3), ("dropout_u", 3), ("baseline", 1), ("fresh", 1), ("s3", 3)]:
    e = c.get_experiment_by_name(name)
    runs = c.search_runs([e.experiment_id]) if e else []
    kinds = {}
    for r in runs:
        kinds[r.data.tags.get("mlp_lab.kind")] = kinds.get(r.data.tags.get("mlp_lab.kind"), 0) + 1
    print(f"{name}: runs (kind=run) {kinds.get('run', 0)} expected {want}; all runs by kind {kinds}; logged models {len(c.search_logged_models([e.experiment_id])) if e else 0}")
print("registered:", [(m.name, m.aliases) for m in c.search_registered_models()])
PY
echo "runs/mlflow.db exists? $(test -e runs/mlflow.db && echo yes || echo no)"
echo "== unreachable store"
for uri in http://127.0.0.1:9; do
  s=$(date +%s.%N); MLFLOW_TRACKING_URI=$uri $B/mlp-lab run $REPO/configs/baseline.yaml --set name=unreach --track 2>&1; echo "rc=$? in $(echo "$(date +%s.%N) - $s" | bc) s"
done
kill -TERM -- -$SPID; sleep 3; pgrep -g $SPID && echo LEFTOVER
