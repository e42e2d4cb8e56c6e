"""The Ray executor on real Ray, all on 127.0.0.1: a local instance started by the CLI, a
simulated two-node cluster (`ray.cluster_utils.Cluster`, one CPU per node) running a study and a
search with the local executor's results, a node killed mid-study, and the shared-storage check.

Everything started here is stopped through its handle or by pid (never `ray stop`, which kills
every Ray process on the machine by name).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import metrics_without_timing, write_idx_dataset, write_study
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.interrupt import signal_handlers_kept
from mlp_lab.execution.executors import SerialExecutor
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.studies.ablation import compare, load_study, plan

REPO = Path(__file__).resolve().parents[2]
# Every address a Ray started here binds to stays on the loopback; no usage statistics.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

if os.environ.get("CI") == "true":
    import ray  # in CI a missing ray is a failure, not a skip
else:
    ray = pytest.importorskip("ray")

from mlp_lab.execution.ray_executor import RayExecutor, check_shared_storage  # noqa: E402
from mlp_lab.training.context import RunContext  # noqa: E402

# One worker runs every Ray test under `pytest -n` (make test): two clusters started at once on
# one machine would contend for its cores and Ray's default ports.
pytestmark = pytest.mark.xdist_group("ray")

quiet = {"log": lambda _: None}
RAY_EXTRA = (
    "error: --backend ray needs the [ray] extra: pip install 'mlp-lab[ray]' (in a checkout: pip install -e '.[ray]')"
)


def _wait_until(condition, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head with no CPU and two worker nodes of one CPU each, all on 127.0.0.1; this process is
    its driver. Node deaths are noticed within about a second (the default is tens of seconds).

    Started from a directory of its own, so its workers' working directory is not the tests'.
    """
    from ray.cluster_utils import Cluster

    # The head node and ray.init each set a SIGTERM handler and leave it: kept, a SIGTERM to
    # pytest after these tests failed whichever unrelated test was running.
    with signal_handlers_kept():
        here = os.getcwd()
        os.chdir(tmp_path_factory.mktemp("ray-workers-cwd"))
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": 0,
                    "include_dashboard": False,
                    "_system_config": {
                        "health_check_initial_delay_ms": 0,
                        "health_check_period_ms": 300,
                        "health_check_failure_threshold": 3,
                    },
                },
            )
            try:
                for _ in range(2):
                    cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                ray.init(address=cluster.address)
            except BaseException:
                cluster.shutdown()
                raise
        finally:
            os.chdir(here)
    try:
        yield cluster
    finally:
        with signal_handlers_kept():
            ray.shutdown()
            cluster.shutdown()


# A model about ten times the tiny one's cost: with `bigger_data`, an epoch takes some tenths of a
# second, so a run lasts long enough for a stop or a node loss to land in the middle of it.
LONG = {"model.hidden_sizes": [256, 256]}


def _study(tmp_path: Path, tiny_config, where: str, epochs: int = 3, overrides=None, **fields) -> Path:
    """The conftest study (2 arms x 2 seeds) in its own directory, with its runs under `where`."""
    folder = tmp_path / where
    folder.mkdir()
    return write_study(
        folder,
        tiny_config,
        overrides={"output.dir": str(tmp_path / where / "runs"), "train.epochs": epochs, **(overrides or {})},
        **fields,
    )


@pytest.fixture
def bigger_data(tmp_path, monkeypatch):
    """Five times the conftest's training set: runs last long enough to be caught mid-run."""
    monkeypatch.setenv("MLP_LAB_DATA", str(write_idx_dataset(tmp_path / "bigger", n_train=3000)))


def _serial_reference(tmp_path: Path, tiny_config, epochs: int = 3, overrides=None) -> dict[str, list]:
    exp = load_study(_study(tmp_path, tiny_config, "serial", epochs, overrides))
    compare(exp, executor=SerialExecutor(threads=1, context=RunContext(**quiet)), **quiet)
    return {s.label: metrics_without_timing(s.run_dir) for s in plan(exp)}


@pytest.mark.slow
def test_cli_ray_backend_stops_on_ctrl_c_then_matches_jobs_1(tiny_config, bigger_data, tmp_path):
    study = _study(tmp_path, tiny_config, "cli", epochs=16, overrides=LONG)
    specs = plan(load_study(study))
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLP_LAB_DATA": os.environ["MLP_LAB_DATA"]}
    env.pop("RAY_ADDRESS", None)  # no address: the command starts (and stops) its own local instance
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # and keeps it on 127.0.0.1 by itself
    command = [sys.executable, "-m", "mlp_lab", "compare", str(study), "--backend", "ray", "--threads", "1"]
    # Its own session, so that the SIGINT below reaches its whole process group, as a terminal's Ctrl-C does.
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_until(
            lambda: process.poll() is not None or any((s.run_dir / rundir.LAST_CHECKPOINT).exists() for s in specs),
            300,
            "a run's first checkpoint",
        )
        assert process.poll() is None, process.communicate()
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, err[-3000:]
    assert "stopped by signal; finished runs are kept and partial ones resume" in err
    assert any(s.status() == RunStatus.PARTIAL for s in specs)
    assert not any(s.status() == RunStatus.FAILED for s in specs)

    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(resumed; test/acc" in done.stdout and "[4/4 done, 0 left]" in done.stdout
    reference = _serial_reference(tmp_path, tiny_config, epochs=16, overrides=LONG)
    assert {s.label: metrics_without_timing(s.run_dir) for s in specs} == reference
    serial = plan(load_study(tmp_path / "serial" / "experiments" / "study.yaml"))
    assert [rundir.read_json(s.run_dir / "summary.json")["test/acc"] for s in serial] == [
        rundir.read_json(s.run_dir / "summary.json")["test/acc"] for s in specs
    ]
    assert all(rundir.read_json(s.run_dir / "summary.json")["threads"] == 1 for s in specs)


def test_without_ray_the_backend_exits_2_naming_the_extra(monkeypatch, tiny_config, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    study = _study(tmp_path, tiny_config, "noray")
    result = CliRunner().invoke(app, ["compare", str(study), "--backend", "ray"])
    assert result.exit_code == 2
    assert result.output.strip() == RAY_EXTRA
    assert not (tmp_path / "noray" / "runs").exists()


def test_address_errors_are_one_line_before_anything_runs(tiny_config, tmp_path):
    import socket

    study = _study(tmp_path, tiny_config, "address")
    local = CliRunner().invoke(app, ["compare", str(study), "--address", "auto"])
    assert local.exit_code == 2
    assert local.output.strip() == "error: --address joins a Ray cluster: use it with --backend ray"
    with socket.socket() as free:  # a port nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    nobody = CliRunner().invoke(app, ["compare", str(study), "--backend", "ray", "--address", f"127.0.0.1:{port}"])
    assert nobody.exit_code == 2 and time.monotonic() - started < 30
    assert nobody.output.splitlines()[-1].startswith(
        f"error: could not connect to the Ray cluster at 127.0.0.1:{port}: "
    )
    assert not (tmp_path / "address" / "runs").exists()


def test_suite_checks_its_backend_as_compare_does(monkeypatch, tiny_config, tmp_path):
    study = _study(tmp_path, tiny_config, "suite")
    local = CliRunner().invoke(app, ["suite", str(study), "--address", "auto"])
    assert local.exit_code == 2
    assert local.output.strip() == "error: --address joins a Ray cluster: use it with --backend ray"
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    noray = CliRunner().invoke(app, ["suite", str(study), "--backend", "ray"])
    assert noray.exit_code == 2
    assert noray.output.strip() == RAY_EXTRA
    assert not (tmp_path / "suite" / "runs").exists()


def test_a_retried_task_waits_for_its_dead_attempts_lock_but_leaves_other_holders_busy(
    tiny_config, tmp_path, monkeypatch
):
    # The task's body, called in this process (no Ray needed): on a network file system the lock
    # of a task lost with its node stays held until the server expires the lease.
    import threading

    from mlp_lab.execution import ray_executor as executors_ray

    monkeypatch.setattr(executors_ray, "RETRY_LOCK_WAIT_S", 60.0)
    spec = plan(load_study(_study(tmp_path, tiny_config, "retry")))[0]
    stop_path = str(tmp_path / "no-stop")
    with rundir.RunLock(spec.run_dir, note="another-task"):
        busy = executors_ray._ray_task(spec, RunContext(**quiet), False, 1, stop_path, "this-task")
    assert (busy.status, busy.action) == (RunStatus.BUSY, "none")

    dead_attempt = rundir.RunLock(spec.run_dir, note="this-task").acquire()
    assert dead_attempt.peek() == (True, "this-task")
    released = threading.Timer(1.5, dead_attempt.release)
    released.start()
    started = time.monotonic()
    outcome = executors_ray._ray_task(spec, RunContext(**quiet), False, 1, stop_path, "this-task")
    released.join()
    assert time.monotonic() - started >= 1.5
    assert (outcome.status, outcome.action) == (RunStatus.DONE, "trained")
    assert rundir.RunLock(spec.run_dir).peek() == (False, "this-task")


@pytest.mark.slow
def test_a_study_on_two_nodes_equals_the_local_executor_and_stops_resumably(
    cluster, tiny_config, bigger_data, tmp_path
):
    exp = load_study(_study(tmp_path, tiny_config, "ray", epochs=16, overrides=LONG))
    specs = plan(exp)
    # Stop once some run has a checkpoint: what runs then saves last.pt, the rest never starts.
    stop = lambda: any((s.run_dir / rundir.LAST_CHECKPOINT).exists() for s in specs)  # noqa: E731
    executor = RayExecutor(threads=1)
    assert executor.jobs == 2  # two nodes of one CPU each
    first = compare(exp, executor=executor, stop=stop, **quiet)
    assert first.interrupted and all(o.action in ("interrupted", "trained") for o in first.outcomes), first.outcomes
    assert any(o.action == "interrupted" and o.status == RunStatus.PARTIAL for o in first.outcomes)
    assert not list(exp.output_dir.glob(".mlp-lab-stop-*"))
    second = compare(exp, executor=executor, **quiet)
    assert len(second.outcomes) == 4 and all(o.status == RunStatus.DONE for o in second.outcomes)
    assert any(o.action == "resumed" for o in second.outcomes)
    reference = _serial_reference(tmp_path, tiny_config, epochs=16, overrides=LONG)
    assert {s.label: metrics_without_timing(s.run_dir) for s in specs} == reference


# The tiny CNN (one conv block, BatchNorm, channel dropout) on pixels in a fixed shuffled order:
# what the cluster must train exactly as this machine does.
CNN = {
    "model.kind": "cnn",
    "model.conv": {"channels": [4], "kernel_size": 3, "padding": 1, "batch_norm": True, "dropout": 0.2},
    "model.hidden_sizes": [16],
    "data.permute_pixels": True,
}


@pytest.mark.slow
def test_a_cnn_study_on_the_cluster_equals_the_local_executor(cluster, tiny_config, tmp_path):
    from mlp_lab.models.cnn import ParameterizedCNN
    from mlp_lab.training.checkpoint import load_model

    exp = load_study(_study(tmp_path, tiny_config, "ray-cnn", epochs=2, overrides=CNN))
    specs = plan(exp)
    outcomes = compare(exp, executor=RayExecutor(threads=1), **quiet).outcomes
    assert len(outcomes) == 4 and all(o.status == RunStatus.DONE for o in outcomes), outcomes
    assert all(isinstance(load_model(s.run_dir).model, ParameterizedCNN) for s in specs)
    reference = _serial_reference(tmp_path, tiny_config, epochs=2, overrides=CNN)
    assert {s.label: metrics_without_timing(s.run_dir) for s in specs} == reference


@pytest.mark.slow
def test_a_user_model_study_on_nodes_without_the_users_file_equals_jobs_1(cluster, tiny_config, tmp_path, monkeypatch):
    """The user's code reaches the workers with the tasks: the file is moved out of its place
    before the study runs, into a folder only this driver searches (its $MLP_LAB_CODE_DIRS,
    set after the cluster started, so no worker has it)."""
    from user_code_helpers import write_user_net, write_user_study

    from mlp_lab.execution.ray_executor import code_cache

    base = tiny_config()
    studies = {}
    for name in ("serial", "ray"):
        folder = tmp_path / name
        write_user_net(folder, str(tmp_path))
        studies[name] = load_study(write_user_study(folder, base, folder / "runs", epochs=1))
    compare(studies["serial"], executor=SerialExecutor(threads=1, context=RunContext(**quiet)), **quiet)
    net = tmp_path / "ray" / "models" / "my_net.py"
    moved = tmp_path / "driver-only" / net.name
    moved.parent.mkdir()
    net.rename(moved)
    monkeypatch.setenv("MLP_LAB_CODE_DIRS", str(moved.parent))
    outcomes = compare(studies["ray"], executor=RayExecutor(threads=1), **quiet).outcomes
    assert [o.status for o in outcomes] == [RunStatus.DONE] * 4, outcomes
    sha = studies["ray"].arms[0].config.model.code_sha256
    assert (code_cache() / sha / net.name).read_bytes() == moved.read_bytes()
    ran = {s.label: metrics_without_timing(s.run_dir) for s in plan(studies["ray"])}
    reference = {s.label: metrics_without_timing(s.run_dir) for s in plan(studies["serial"])}
    assert ran == reference and len(ran) == 4


def _worker_children(raylet_pid: int) -> list[int]:
    """The processes the raylet started (its core workers), read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == raylet_pid:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return children


@pytest.mark.slow
def test_a_node_killed_mid_study_loses_nothing(cluster, tiny_config, bigger_data, tmp_path):
    epochs = 12
    exp = load_study(
        _study(
            tmp_path,
            tiny_config,
            "ray",
            epochs=epochs,
            overrides=LONG,
            arms={"none": {"model.dropout": 0.0}, "half": {"model.dropout": 0.5}},
        )
    )
    specs = plan(exp)
    killed = {}

    def kill_a_node_mid_run() -> bool:
        # The stop callable is polled by the driver's loop: use it to act at the right moment.
        if killed:
            return False
        for spec in specs:
            if not (spec.run_dir / rundir.LAST_CHECKPOINT).exists() or (spec.run_dir / "summary.json").exists():
                continue
            held, _ = rundir.RunLock(spec.run_dir).peek()
            text = rundir.lock_path(spec.run_dir).read_text().split()
            if not held or not text:
                continue
            worker = int(text[0])
            node = next(
                (
                    n
                    for n in cluster.worker_nodes
                    if worker in _worker_children(n.all_processes["raylet"][0].process.pid)
                ),
                None,
            )
            if node is None:
                continue
            raylet = node.all_processes["raylet"][0].process.pid
            # A lost machine takes its workers with it: the raylet and every process it started, by pid.
            for pid in [raylet, *_worker_children(raylet)]:
                os.kill(pid, signal.SIGKILL)
            killed.update(run=spec.label, node=node, epochs_done=len(rundir.read_metrics(spec.run_dir)))
            return False
        return False

    outcomes = {}
    RayExecutor(threads=1).run(specs, outcomes.__setitem__, stop=kill_a_node_mid_run)
    assert killed, "no run was caught mid-run"
    try:
        assert 0 < killed["epochs_done"] < epochs
        # Every run reported once, done; the one on the lost node continued from its last.pt.
        assert sorted(outcomes) == [0, 1, 2, 3]
        assert all(o.status == RunStatus.DONE for o in outcomes.values()), [
            (o.label, o.status, o.action, o.error) for o in outcomes.values() if o.status != RunStatus.DONE
        ]
        by_label = {o.label: o for o in outcomes.values()}
        assert by_label[killed["run"]].action == "resumed"
        assert not list(exp.output_dir.glob("*/*.old-*"))
        reference_exp = load_study(
            _study(
                tmp_path,
                tiny_config,
                "serial",
                epochs=epochs,
                overrides=LONG,
                arms={"none": {"model.dropout": 0.0}, "half": {"model.dropout": 0.5}},
            )
        )
        compare(reference_exp, executor=SerialExecutor(threads=1, context=RunContext(**quiet)), **quiet)
        reference = {s.label: metrics_without_timing(s.run_dir) for s in plan(reference_exp)}
        assert {s.label: metrics_without_timing(s.run_dir) for s in specs} == reference
    finally:
        # Give the cluster its second node back for the tests after this one (a new node sets a
        # SIGTERM handler of its own, as the fixture's did: kept out of the tests after it).
        with signal_handlers_kept():
            try:
                cluster.remove_node(killed["node"], allow_graceful=False)
            except Exception:  # noqa: BLE001 - its processes are already dead
                pass
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()


@pytest.mark.slow
def test_the_storage_check_fails_on_a_directory_the_tasks_cannot_see(cluster, tiny_config, tmp_path, monkeypatch):
    # /proc/self/cwd names each process's own working directory: the same path is a different
    # directory for this driver and for the workers (started elsewhere), as an output directory
    # on a laptop's local disk is for the machines of a cluster.
    monkeypatch.chdir(tmp_path)
    private = Path("/proc/self/cwd/private-out")
    with pytest.raises(MLPLabError) as caught:
        check_shared_storage(private, timeout=60)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("/proc/self/cwd/private-out is not shared between this driver and the Ray workers: node ")
    assert "cannot read" in message and "put output.dir on a file system every node mounts" in message
    assert not list((tmp_path / "private-out").iterdir())  # the driver cleaned its token up
    check_shared_storage(tmp_path / "shared-out")  # a directory both see passes

    exp = load_study(_study(tmp_path, tiny_config, "private"))
    specs = [
        dataclasses.replace(s, run_dir=private / s.run_dir.relative_to(tmp_path / "private" / "runs"))
        for s in plan(exp)
    ]
    outcomes = {}
    with pytest.raises(MLPLabError, match="is not shared"):
        RayExecutor(threads=1).run(specs, outcomes.__setitem__)
    assert outcomes == {} and not list((tmp_path / "private-out").glob("*/seed-*"))


@pytest.mark.slow
def test_a_search_on_the_cluster_prunes_and_its_trials_share_one_study(cluster, tiny_config, tmp_path):
    optuna = pytest.importorskip("optuna")
    from test_search import write_search

    from mlp_lab.search.driver import run_search
    from mlp_lab.search.spec import load_search

    path = write_search(
        tmp_path,
        tiny_config,
        epochs=6,
        trials=2,
        pruner={"name": "median", "startup_trials": 1, "warmup_epochs": 0},
        params={"train.optimizer.lr": {"type": "float", "low": 1e-7, "high": 1e-2, "log": True}},
        enqueue=[{"train.optimizer.lr": 5e-3}, {"train.optimizer.lr": 1e-7}],
    )
    # One trial at a time, as the local pruning test: the median needs the first trial finished.
    first = run_search(load_search(path), executor=RayExecutor(threads=1, jobs=1), log=lambda _: None)
    out = tmp_path / "runs" / "tiny_search"
    good, bad = (rundir.read_json(out / f"trial-{n}" / "trial.json") for n in (0, 1))
    assert first.finished == 2 and good["state"] == "complete" and good["epochs_run"] == 6
    assert bad["state"] == "pruned" and bad["epochs_run"] == 1, bad  # pruned from inside its Ray worker
    # Then two trials at a time, one per node, reporting into the one journal.
    more = run_search(load_search(path), trials=4, executor=RayExecutor(threads=1), log=lambda _: None)
    assert more.finished == 4
    study = optuna.load_study(
        study_name="tiny_search",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))),
    )
    assert len(study.trials) == 4 and all(t.intermediate_values for t in study.trials)
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-{n}" for n in range(4)]


@pytest.mark.slow
def test_a_tracked_search_on_the_cluster_logs_each_trial_once_nested_under_the_search(
    cluster, tiny_config, tmp_path, monkeypatch
):
    """MLflow logging from Ray tasks: the store made by the driver, each trial's run logged live
    from its task on another node, nested under the search's run."""
    pytest.importorskip("optuna")
    pytest.importorskip("mlflow")
    from test_search import write_search

    from mlp_lab.search.driver import run_search
    from mlp_lab.search.spec import load_search
    from mlp_lab.service.context import run_context
    from mlp_lab.tracking.store import client_for, store_for
    from mlp_lab.tracking.workflows import track_search

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_search(tmp_path, tiny_config, epochs=2, trials=2)
    search = track_search(load_search(path))
    # The context the CLI and the API give their executors: its logger factories include MLflow's.
    context = run_context(threads=1, log=lambda _: None)
    result = run_search(search, executor=RayExecutor(threads=1, context=context), log=lambda _: None)
    assert result.finished == 2
    client = client_for(store_for(search.base_config.output.dir))
    exp = client.get_experiment_by_name("tiny_search")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'search'")
    trials = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'run'")
    assert sorted(r.data.tags["trial"] for r in trials) == ["0", "1"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id and r.info.status == "FINISHED" for r in trials)
    assert all(sorted(m.step for m in client.get_metric_history(r.info.run_id, "val/loss")) == [1, 2] for r in trials)


@pytest.mark.slow
def test_a_tracked_suite_on_the_cluster_logs_each_run_once_and_its_report(cluster, tiny_config, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlp_lab.tracking.store import client_for, store_for

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = _study(tmp_path, tiny_config, "suite", epochs=2)
    result = CliRunner().invoke(app, ["suite", str(study), "--backend", "ray", "--threads", "1", "--track"])
    assert result.exit_code == 0, result.output
    assert "[4/4 done, 0 left]" in result.output and (tmp_path / "suite" / "runs" / "index.md").is_file()
    client = client_for(store_for(tmp_path / "suite" / "runs"))
    exp = client.get_experiment_by_name("study")
    runs = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'run'")
    assert sorted((r.data.tags["arm"], r.data.tags["seed"]) for r in runs) == [
        ("half", "0"),
        ("half", "1"),
        ("none", "0"),
        ("none", "1"),
    ]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'report'")) == 1


@pytest.mark.slow
def test_a_ray_session_leaves_the_signal_handlers_as_it_found_them():
    """ray.init installs a SIGTERM handler that calls sys.exit and ray.shutdown leaves it; inside
    the session the caller's handlers (compare's graceful stop) stay, and after it too."""
    from mlp_lab.core.interrupt import graceful_stop
    from mlp_lab.execution.ray_executor import ray_session

    with graceful_stop() as stop:
        ours = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        with ray_session(num_cpus=1):
            assert {sig: signal.getsignal(sig) for sig in ours} == ours
            os.kill(os.getpid(), signal.SIGTERM)  # a stop request, not sys.exit
            _wait_until(stop, 5, "the stop flag")
        assert {sig: signal.getsignal(sig) for sig in ours} == ours and stop.signum == signal.SIGTERM
