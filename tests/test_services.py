"""mlp-lab against real services as a user meets them: one real `mlflow server` taking several
tracked commands in one process, a store that does not answer, the servers `mlp-lab ui` and
`mlp-lab app` start and must stop with them, and a real `ray start --head` cluster joined by
address with Ray's token authentication on.

Every server here binds 127.0.0.1 and is stopped by its pid or process group (never by name;
never `ray stop`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import free_port, wait_for_health, write_config, write_study
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.training.trainer import train

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402
from test_tracking import mlflow_server, mlp_runs, steps, tracked  # noqa: E402

from mlp_lab.tracking.store import STORE_FILE  # noqa: E402

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
THREE_ARMS = {"none": {"model.dropout": 0.0}, "some": {"model.dropout": 0.2}, "half": {"model.dropout": 0.5}}


def env_with_repo(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra}
    return env


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, read from /proc (children of children included)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real `mlflow server` for the module: the tests share it, as a team shares one."""
    with mlflow_server(tmp_path_factory.mktemp("server")) as (uri, _):
        yield uri


@pytest.fixture
def user_store(server, monkeypatch):
    """The user's MLFLOW_TRACKING_URI pointing at the server; the registry unset."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return server


def named_study(tmp_path: Path, tiny_config, name: str) -> Path:
    """A 3-arm, one-seed study file named `name` (its MLflow experiment's name) over tiny data."""
    path = write_study(tmp_path, tiny_config, arms=THREE_ARMS, seeds=[0])
    return path.rename(path.with_name(f"{name}.yaml"))


# -- every tracked run reaches the user's store, once ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_tracked_study_puts_every_run_once_in_the_users_server(jobs, tiny_config, tmp_path, user_store, monkeypatch):
    name = f"dropout_jobs{jobs}"
    named_study(tmp_path, tiny_config, name)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", name, "--jobs", str(jobs), "--track"])
    assert result.exit_code == 0, result.output
    assert f"MLflow: runs go to {user_store}" in result.output
    client = MlflowClient(user_store)
    runs = mlp_runs(client, name)
    assert sorted(r.data.tags["arm"] for r in runs) == ["half", "none", "some"]
    assert all(r.info.status == "FINISHED" and steps(client, r.info.run_id) == [1, 2, 3] for r in runs)
    exp = client.get_experiment_by_name(name)
    assert len(client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'report'")) == 1
    assert len(client.search_logged_models([exp.experiment_id])) == 3
    # Nothing went to the embedded store, and the user's setting is as it was.
    assert not (tmp_path / "runs" / STORE_FILE).exists()
    assert os.environ["MLFLOW_TRACKING_URI"] == user_store and "MLFLOW_REGISTRY_URI" not in os.environ


@pytest.mark.slow
def test_track_twice_and_register_go_to_the_users_server_and_add_nothing_the_second_time(
    tiny_config, tmp_path, user_store, monkeypatch
):
    run_dir = tmp_path / "runs" / "tiny"
    train(tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}), run_dir)
    named_study(tmp_path, tiny_config, "exported")
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["compare", "exported"]).exit_code == 0  # untracked: exported afterwards
    first = runner.invoke(app, ["track", str(run_dir), "exported"])
    assert first.exit_code == 0 and first.output.count("(exported)") == 4, first.output
    client = MlflowClient(user_store)

    def counts() -> tuple[int, ...]:
        exps = [client.get_experiment_by_name(n) for n in ("tiny", "exported")]
        ids = [e.experiment_id for e in exps]
        return (len(client.search_runs(ids)), len(client.search_logged_models(ids)))

    before = counts()
    assert before == (1 + 3 + 1, 4)  # the run, the study's three and its report; four models
    second = runner.invoke(app, ["track", str(run_dir), "exported"])
    assert second.exit_code == 0 and second.output.count("(already there)") == 4, second.output
    assert counts() == before
    # A run directory that was never exported registers the first time, in the same store.
    fresh = tmp_path / "runs" / "fresh"
    train(tiny_config(name="fresh", train={"epochs": 1, "batch_size": 32, "device": "cpu"}), fresh)
    made = runner.invoke(app, ["register", str(fresh), "--name", "fresh-mlp", "--alias", "champion"])
    assert made.exit_code == 0 and "models:/fresh-mlp/1, alias champion" in made.output, made.output
    assert client.get_model_version_by_alias("fresh-mlp", "champion").version == "1"
    assert not (tmp_path / "runs" / STORE_FILE).exists()
    assert os.environ["MLFLOW_TRACKING_URI"] == user_store and "MLFLOW_REGISTRY_URI" not in os.environ


@pytest.mark.slow
def test_a_tracked_search_puts_its_parent_and_every_trial_in_the_users_server(
    tiny_config, tmp_path, user_store, monkeypatch
):
    pytest.importorskip("optuna")
    from test_search import write_search

    write_search(tmp_path, tiny_config, epochs=2, trials=3)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["search", "tiny_search", "--track", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(user_store)
    exp = client.get_experiment_by_name("tiny_search")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'search'")
    trials = mlp_runs(client, "tiny_search")
    assert sorted(r.data.tags["trial"] for r in trials) == ["0", "1", "2"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert not (tmp_path / "runs" / STORE_FILE).exists()
    assert os.environ["MLFLOW_TRACKING_URI"] == user_store


def test_logging_a_model_leaves_mlflows_process_wide_uris_and_the_environment_as_they_were(
    tiny_config, tmp_path, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # MLflow's telemetry client keeps its session id in the environment once it starts (unless
    # telemetry is off, as in CI): MLflow's doing, on any use of it, so left out of the comparison.
    own = {"_MLFLOW_TELEMETRY_SESSION_ID"}
    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    train(tracked(tiny_config, epochs=1), tmp_path / "runs" / "tiny")  # logs its run and model live
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (tracking_uri, registry_uri)
    environ = {k: v for k, v in os.environ.items() if k not in own}
    result = runner.invoke(app, ["register", str(tmp_path / "runs" / "tiny"), "--name", "m"])
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in os.environ.items() if k not in own} == environ
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (tracking_uri, registry_uri)


# -- a store that does not answer ---------------------------------------------------------


class SilentServer:
    """A TCP port on 127.0.0.1 that accepts connections and never answers."""

    def __enter__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def __exit__(self, *exc):
        self.socket.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_store_is_one_line_and_exit_2_within_15_s_before_any_training(kind, tiny_config, tmp_path):
    config = write_config(tmp_path, tiny_config())
    with SilentServer() as silent:
        uri = silent if kind == "silent" else f"http://127.0.0.1:{free_port()}"
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "mlp_lab", "run", str(config), "--track"],
            cwd=tmp_path,
            env=env_with_repo(MLFLOW_TRACKING_URI=uri),
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: MLflow at {uri}: "), result.stderr
    assert elapsed < 15, elapsed
    assert not (tmp_path / "runs" / "tiny").exists()  # nothing trained, nothing half-written


# -- servers stop with their command ------------------------------------------------------


def start_and_wait(command: list[str], cwd: Path, health: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env_with_repo(), stdout=out, stderr=subprocess.STDOUT)
    wait_for_health(health, process, log, " ".join(command[2:4]))
    return process


def assert_stops_with_everything_it_started(process: subprocess.Popen, sig: int, ports: list[int]) -> None:
    children = descendants(process.pid)
    assert children, "the command started no server process"
    process.send_signal(sig)
    assert process.wait(timeout=10) == 128 + sig
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) or any(listening(port) for port in ports):
        assert time.monotonic() < deadline, (
            [pid for pid in children if alive(pid)],
            [port for port in ports if listening(port)],
        )
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_ui_stops_its_mlflow_server_on_a_signal(sig, tmp_path):
    port = free_port()
    process = start_and_wait(
        [sys.executable, "-m", "mlp_lab", "ui", "--port", str(port)],
        tmp_path,
        f"http://127.0.0.1:{port}/health",
        tmp_path / "ui.log",
    )
    try:
        assert_stops_with_everything_it_started(process, sig, [port])
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_app_with_mlflow_stops_both_servers_on_a_signal(sig, tmp_path):
    pytest.importorskip("streamlit")
    port, mlflow_port = free_port(), free_port()
    process = start_and_wait(
        [sys.executable, "-m", "mlp_lab", "app", "--port", str(port), "--mlflow", "--mlflow-port", str(mlflow_port)],
        tmp_path,
        f"http://127.0.0.1:{port}/_stcore/health",
        tmp_path / "app.log",
    )
    try:
        wait_for_health(f"http://127.0.0.1:{mlflow_port}/health", process, tmp_path / "app.log", "the MLflow UI")
        assert_stops_with_everything_it_started(process, sig, [port, mlflow_port])
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    "args", [["ui", "--port", "{port}"], ["app", "--port", "{port}"], ["app", "--mlflow", "--mlflow-port", "{port}"]]
)
def test_a_taken_port_is_one_line_and_exit_2_before_anything_is_printed(args, tmp_path, monkeypatch):
    if args[0] == "app":
        pytest.importorskip("streamlit")
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mlp_lab", *[a.format(port=port) for a in args]],
            cwd=tmp_path,
            env=env_with_repo(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --") and f"127.0.0.1:{port} is already in use" in lines[0]


# -- a Ray cluster as users start it ----------------------------------------------------------


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head --block` on 127.0.0.1 with Ray's defaults, on a machine (a HOME) that
    holds a token, so that Ray turns token authentication on as it does for users. Stopped by
    the pid of the `ray start` process, which stops the processes it started."""
    pytest.importorskip("ray")
    home = tmp_path_factory.mktemp("head-home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("f" * 32)
    # Ray's session directory holds unix sockets: a short path (the limit is 107 bytes).
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    port = free_port()
    env = {**os.environ, "HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    for key in ("RAY_AUTH_MODE", "RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)  # the cluster's workers know nothing of the driver's settings
    log = tmp_path_factory.mktemp("head-log") / "ray-start.log"
    with open(log, "wb") as out:
        head = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                "--head",
                "--port",
                str(port),
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "2",
                "--include-dashboard",
                "false",
                "--temp-dir",
                str(temp),
                "--block",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        assert "Token authentication is enabled" in log.read_text()
        yield {"address": f"127.0.0.1:{port}", "home": home, "token": "f" * 32}
    finally:
        started = descendants(head.pid)
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        finally:
            for pid in started:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        leftover = [pid for pid in started if alive(pid)]
        assert not leftover, leftover


def ray_compare(
    tmp_path: Path, tiny_config, address: str, home: Path, *args: str, **env: str
) -> subprocess.CompletedProcess:
    study = write_study(tmp_path, tiny_config, seeds=[0])
    run_env = env_with_repo(HOME=str(home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", **env)
    run_env.pop("RAY_AUTH_MODE", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mlp_lab",
            "compare",
            str(study),
            "--backend",
            "ray",
            "--address",
            address,
            "--threads",
            "1",
            *args,
        ],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # with tests/execution/test_executors_ray.py: one Ray at a time
def test_compare_joins_a_ray_start_head_cluster_by_address_with_the_machines_token(
    ray_head, server, tiny_config, tmp_path
):
    home = tmp_path / "driver-home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(ray_head["token"])
    # Tracked, to the driver's server: the cluster's workers must log there too.
    result = ray_compare(tmp_path, tiny_config, ray_head["address"], home, "--track", MLFLOW_TRACKING_URI=server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "report:" in result.stdout
    assert len(list((tmp_path / "runs" / "study").glob("*/seed-0/summary.json"))) == 2
    client = MlflowClient(server)
    assert sorted(r.data.tags["arm"] for r in mlp_runs(client, "study")) == ["half", "none"]
    assert not (tmp_path / "runs" / STORE_FILE).exists()


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # with tests/execution/test_executors_ray.py: one Ray at a time
def test_a_cluster_that_refuses_the_driver_is_one_line_saying_where_the_token_goes(ray_head, tiny_config, tmp_path):
    home = tmp_path / "no-token-home"
    home.mkdir()
    result = ray_compare(tmp_path, tiny_config, ray_head["address"], home)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "~/.ray/auth_token" in errors[0] and "ray get-auth-token" in errors[0], result.stderr
    assert not list((tmp_path / "runs").glob("study/*/seed-0/summary.json"))
