"""MLflow tracking and registry against real MLflow (no mocks): a SQLite store in tmp_path, and
real `mlflow server` subprocesses on free 127.0.0.1 ports for the HTTP tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, synthetic_images, wait_for_health, write_config, write_study
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import load_config
from mlp_lab.execution.procedure import start_run
from mlp_lab.runs import rundir
from mlp_lab.training import trainer
from mlp_lab.training.context import RunContext
from mlp_lab.training.trainer import TrainingInterrupted

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from mlp_lab.tracking.export import export_run  # noqa: E402
from mlp_lab.tracking.logger import RUN_FILE, mlflow_logger  # noqa: E402
from mlp_lab.tracking.store import STORE_FILE, client_for, prepare_store, store_for  # noqa: E402

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty SQLite store, migrated once per session: a fresh one takes ~10 s to create."""
    root = tmp_path_factory.mktemp("store-template")
    prepare_store(root)
    return root / STORE_FILE


@pytest.fixture
def store(tmp_path, migrated_store, monkeypatch) -> Path:
    """tmp_path/runs/mlflow.db, the default store of `tiny_config`; no MLFLOW_TRACKING_URI."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "runs").mkdir(exist_ok=True)
    shutil.copy(migrated_store, tmp_path / "runs" / STORE_FILE)
    return tmp_path / "runs"


def client_of(output_dir: Path) -> MlflowClient:
    return client_for(store_for(output_dir))


def steps(client: MlflowClient, run_id: str, key: str = "val/loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def mlp_runs(client: MlflowClient, study: str):
    exp = client.get_experiment_by_name(study)
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'run'")


def train(config, run_dir, *, context: RunContext | None = None, **options):
    """The trainer given MLflow's logger factory, as the service layer hands it to every run."""
    context = (context or RunContext()).but(loggers=(mlflow_logger,))
    return trainer.train(config, run_dir, context=context, **options)


def tracked(tiny_config, epochs: int = 3, **output):
    return tiny_config(
        train={"epochs": epochs, "batch_size": 32, "device": "cpu"},
        output={"tensorboard": False, "mlflow": True, **output},
    )


# -- without the extra ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["track", "runs/x"],
        ["models"],
        ["ui"],
        ["register", "runs/x", "--name", "m"],
        ["run", "CONFIG", "--track"],
        ["evaluate", "models:/m@champion"],
    ],
)
def test_without_mlflow_a_tracking_command_exits_2_naming_the_extra(args, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    path = write_config(tmp_path, tiny_config())
    result = runner.invoke(app, [str(path) if a == "CONFIG" else a for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("error: ")
        and "needs the [track] extra: pip install 'mlp-lab[track]' (in a checkout: pip install -e '.[track]')"
        in lines[0]
    )


def test_without_mlflow_an_untracked_run_trains_as_before(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    summary = train(tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}), tmp_path / "run")
    assert summary["status"] == "completed" and not (tmp_path / "run" / RUN_FILE).exists()


def test_help_imports_neither_torch_nor_mlflow():
    code = (
        "import sys\nfrom mlp_lab.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert "track" in result.stdout and "register" in result.stdout and result.stdout.strip().endswith("[]")


def test_output_mlflow_does_not_change_the_config_hash(tiny_config):
    assert config_hash(tiny_config(output={"mlflow": True})) == config_hash(tiny_config(output={"mlflow": False}))


# -- live logging to the SQLite store ---------------------------------------------------------


def test_a_tracked_run_logs_params_epochs_summary_tags_files_and_model(tiny_config, tmp_path, store):
    cfg = tracked(tiny_config)
    run_dir = tmp_path / "runs" / "tiny"
    # Through the one procedure that runs a run, which draws curves.png before MLflow copies it.
    summary = start_run(cfg, RunContext(loggers=(mlflow_logger,)), run_dir=run_dir).summary
    client = client_of(store)
    (run,) = mlp_runs(client, "tiny")
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "3" and run.data.params["model.hidden_sizes"] == "[32]"
    assert not any(k.startswith("output.") for k in run.data.params)
    assert steps(client, run.info.run_id) == steps(client, run.info.run_id, "lr") == [1, 2, 3]
    assert run.data.metrics["test/acc"] == summary["test/acc"]
    assert run.data.tags["config_hash"] == summary["config_hash"] and run.data.tags["seed"] == "0"
    assert run.data.tags["run_dir"] == str(run_dir.resolve()) and run.data.tags["dataset"] == "mnist"
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.csv", "summary.json", "curves.png"} <= files
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.source_run_id == run.info.run_id
    assert json.loads((run_dir / RUN_FILE).read_text())[store_for(store).uri]["run_id"] == run.info.run_id


def test_a_resumed_run_continues_its_mlflow_run_without_gaps_or_duplicates(tiny_config, tmp_path, store):
    cfg = tracked(tiny_config, epochs=4)
    run_dir = tmp_path / "runs" / "tiny"
    calls = {"n": 0}

    def stop_in_epoch_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 2 * 15 + 4  # 15 steps per epoch

    with pytest.raises(TrainingInterrupted):
        train(cfg, run_dir, context=RunContext(stop=stop_in_epoch_three))
    client = client_of(store)
    (run,) = mlp_runs(client, "tiny")
    assert run.info.status == "KILLED" and steps(client, run.info.run_id) == [1, 2]
    train(cfg, run_dir, resume=True)
    (again,) = mlp_runs(client, "tiny")
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    for key in ("val/loss", "train/acc", "lr"):
        assert steps(client, run.info.run_id, key) == [1, 2, 3, 4]


def test_an_unreachable_store_costs_one_warning_and_nothing_else(tiny_config, tmp_path, store, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    summary = train(tracked(tiny_config), tmp_path / "runs" / "tiny")
    assert summary["status"] == "completed"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "MLflow tracking stopped" in line]
    assert len(warnings) == 1 and "mlp-lab track" in warnings[0]
    # Later, to the default store: the whole run, once.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    exported = export_run(tmp_path / "runs" / "tiny")
    assert exported.created and steps(client_of(store), exported.run_id) == [1, 2, 3]


def test_export_is_idempotent(tiny_config, tmp_path, store):
    run_dir = tmp_path / "runs" / "tiny"
    train(tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}), run_dir)
    first = runner.invoke(app, ["track", str(run_dir)])
    second = runner.invoke(app, ["track", str(run_dir)])
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert "(exported)" in first.output and "(already there)" in second.output
    client = client_of(store)
    (run,) = mlp_runs(client, "tiny")
    assert steps(client, run.info.run_id) == [1, 2] and run.data.metrics["test/acc"] > 0
    assert len(client.search_logged_models([run.info.experiment_id])) == 1
    assert len(client.search_runs([run.info.experiment_id])) == 1


# -- the registry ---------------------------------------------------------------------------


def raw_test_images(n: int = 12) -> np.ndarray:
    images, _ = synthetic_images(n, np.random.default_rng(7))
    return images[:, 0]  # uint8 N x 28 x 28, as the dataset stores them


@pytest.mark.slow
def test_registry_round_trip_in_a_fresh_process_matches_mlp_lab_predict(tiny_config, tmp_path, store, monkeypatch):
    import torch
    from PIL import Image

    from mlp_lab.data.normalise import to_features
    from mlp_lab.inspect.predict import predict_files
    from mlp_lab.training.checkpoint import load_model

    run_dir = tmp_path / "runs" / "tiny"
    train(tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}), run_dir)
    monkeypatch.chdir(tmp_path)  # the CLI's default store: ./runs/mlflow.db
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    result = runner.invoke(app, ["register", "runs/tiny", "--name", "tiny-mlp", "--alias", "champion"])
    assert result.exit_code == 0 and "models:/tiny-mlp/1, alias champion" in result.output, result.output
    # Registering must not leave this store as the registry of everything after it in the process.
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    listed = runner.invoke(app, ["models"])
    assert "tiny-mlp" in listed.output and "champion" in listed.output, listed.output

    images = raw_test_images()
    np.save(tmp_path / "images.npy", images)
    pngs = []
    for i, image in enumerate(images):
        pngs.append(tmp_path / f"{i}.png")
        Image.fromarray(image, mode="L").save(pngs[-1])
    ours = np.array(
        [
            [t["probability"] for t in sorted(r["top"], key=lambda t: t["index"])]
            # Images already in the dataset's format: no recipe, no inverting, as the pyfunc.
            for r in predict_files(load_model(run_dir), pngs, top_k=10, invert=False, normalise="plain")
        ]
    )
    # Already-normalised rows, as mlp-lab's own features: the other input form of the pyfunc.
    meta = load_model(run_dir).data_meta
    rows = to_features(torch.from_numpy(images).unsqueeze(1), meta["mean"], meta["std"]).numpy()
    np.save(tmp_path / "rows.npy", rows)
    code = (
        "import sys, numpy as np, mlflow\n"
        "model = mlflow.pyfunc.load_model('models:/tiny-mlp@champion')\n"
        "np.save(sys.argv[2], model.predict(np.load(sys.argv[1])))\n"
        "np.save(sys.argv[3], model.predict(np.load(sys.argv[4])))\n"
        "assert 'mlp_lab.cli' not in sys.modules\n"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / STORE_FILE}",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(tmp_path / "images.npy"),
            str(tmp_path / "probs.npy"),
            str(tmp_path / "probs_rows.npy"),
            str(tmp_path / "rows.npy"),
        ],
        env=env,
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    theirs = np.load(tmp_path / "probs.npy")
    assert theirs.shape == (12, 10)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "probs_rows.npy"), ours, rtol=0, atol=1e-6)
    # The same version by number, through mlp-lab's own predict.
    by_version = runner.invoke(
        app,
        [
            "predict",
            "models:/tiny-mlp/1",
            str(pngs[0]),
            "--top-k",
            "10",
            "--json",
            "--no-invert",
            "--normalise",
            "plain",
        ],
    )
    assert by_version.exit_code == 0, by_version.output
    top = json.loads(by_version.stdout)[0]["top"]
    assert max(abs(t["probability"] - ours[0][t["index"]]) for t in top) < 1e-6
    # Registering the same run again reuses its version.
    again = runner.invoke(app, ["register", "runs/tiny", "--name", "tiny-mlp"])
    assert "models:/tiny-mlp/1" in again.output


# -- a real server --------------------------------------------------------------------------


@contextmanager
def mlflow_server(root: Path, port: int | None = None):
    """`mlflow server` on 127.0.0.1 over a SQLite store in `root` (created here first); yields
    (uri, process); stopped by its process group."""
    root.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{root / STORE_FILE}"
    MlflowClient(store, store).search_registered_models()  # the schema, before the server's workers open it
    port = port or free_port()
    log = open(root / f"server-{port}.log", "ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            store,
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(f"{uri}/health", process, root / f"server-{port}.log", "mlflow server", poll=0.3)
        yield uri, process
    finally:
        stop_server(process)
        log.close()


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.slow
def test_a_run_logs_over_http_to_a_real_server(tiny_config, tmp_path, monkeypatch):
    with mlflow_server(tmp_path / "server") as (uri, _):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        summary = train(tracked(tiny_config, epochs=2), tmp_path / "runs" / "tiny")
        client = MlflowClient(uri)
        (run,) = mlp_runs(client, "tiny")
        assert run.info.status == "FINISHED" and steps(client, run.info.run_id) == [1, 2]
        assert run.data.metrics["test/acc"] == summary["test/acc"]
        assert "summary.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert not (tmp_path / "runs" / STORE_FILE).exists()  # nothing went to the default store


@pytest.mark.slow
def test_a_server_killed_mid_run_costs_nothing_and_track_completes_the_run_later(
    tiny_config, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "runs" / "tiny"
    port = free_port()
    with mlflow_server(tmp_path / "server", port) as (uri, process):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

        def kill_after_epoch_two(record):
            if record["epoch"] == 2:
                stop_server(process)

        summary = train(tracked(tiny_config, epochs=4), run_dir, context=RunContext(on_epoch=kill_after_epoch_two))
    assert summary["status"] == "completed" and len(rundir.read_metrics(run_dir)) == 4
    warnings = [line for line in capsys.readouterr().err.splitlines() if "MLflow tracking stopped" in line]
    assert len(warnings) == 1
    # The same server again (same store, same address): the export continues the same run.
    with mlflow_server(tmp_path / "server", port) as (uri, _):
        exported = export_run(run_dir)
        client = MlflowClient(uri)
        (run,) = mlp_runs(client, "tiny")
        assert not exported.created or exported.run_id == run.info.run_id
        assert run.info.status == "FINISHED" and steps(client, run.info.run_id) == [1, 2, 3, 4]
        assert run.data.metrics["test/acc"] == summary["test/acc"]


# -- studies --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tracked_search_is_one_parent_run_with_every_trial_nested_under_it(tiny_config, tmp_path, store, monkeypatch):
    pytest.importorskip("optuna")
    from test_search import write_search

    write_search(tmp_path, tiny_config, epochs=2, trials=2)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["search", "tiny_search", "--track"])
    assert result.exit_code == 0, result.output
    client = client_of(tmp_path / "runs")
    exp = client.get_experiment_by_name("tiny_search")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'search'")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["metric"] == "val/acc" and "space.train.optimizer.lr" in parent.data.params
    report = json.loads((tmp_path / "runs" / "tiny_search" / "search.json").read_text())
    assert parent.data.metrics["best/val/acc"] == pytest.approx(report["best"]["value"])
    assert {"search.md", "search.csv", "best.yaml"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    trials = mlp_runs(client, "tiny_search")
    assert sorted(r.data.tags["trial"] for r in trials) == ["0", "1"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert all(r.info.status == "FINISHED" and steps(client, r.info.run_id) == [1, 2] for r in trials)
    assert load_config(tmp_path / "runs" / "tiny_search" / "trial-0" / rundir.CONFIG_FILE).output.mlflow
    # Continuing the search continues its parent run.
    again = runner.invoke(app, ["search", "tiny_search", "--track", "--trials", "3"])
    assert again.exit_code == 0, again.output
    parents = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'search'")
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    trials = mlp_runs(client, "tiny_search")
    assert sorted(r.data.tags["trial"] for r in trials) == ["0", "1", "2"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)


@pytest.mark.slow
def test_a_tracked_confirmation_is_an_experiment_of_its_own_with_its_report(tiny_config, tmp_path, store, monkeypatch):
    pytest.importorskip("optuna")
    from test_search import write_search

    write_search(tmp_path, tiny_config, epochs=1, trials=2)
    monkeypatch.chdir(tmp_path)
    searched = runner.invoke(app, ["search", "tiny_search"])
    assert searched.exit_code == 0, searched.output
    client = client_of(tmp_path / "runs")
    assert client.get_experiment_by_name("tiny_search") is None  # the search itself was not tracked
    result = runner.invoke(app, ["search", "tiny_search", "--confirm", "--seeds", "0", "--track"])
    assert result.exit_code == 0, result.output
    runs = mlp_runs(client, "tiny_search-confirm")
    assert sorted(r.data.tags["arm"] for r in runs) == ["base", "best"]
    assert all(r.info.status == "FINISHED" and steps(client, r.info.run_id) == [1] for r in runs)
    exp = client.get_experiment_by_name("tiny_search-confirm")
    assert exp.tags["mlflow.note.content"].startswith("# ")
    (report,) = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'report'")
    assert "report.md" in {a.path for a in client.list_artifacts(report.info.run_id)}


@pytest.mark.slow
def test_compare_with_two_jobs_logs_every_run_once_to_a_fresh_store(tiny_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_study(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "runs" / STORE_FILE).exists()
    result = runner.invoke(app, ["compare", "study", "--jobs", "2", "--track"])
    assert result.exit_code == 0, result.output
    client = client_of(tmp_path / "runs")
    runs = mlp_runs(client, "study")
    assert sorted((r.data.tags["arm"], r.data.tags["seed"]) for r in runs) == [
        ("half", "0"),
        ("half", "1"),
        ("none", "0"),
        ("none", "1"),
    ]
    assert all(r.info.status == "FINISHED" and steps(client, r.info.run_id) == [1, 2, 3] for r in runs)
    exp = client.get_experiment_by_name("study")
    assert exp.tags["mlflow.note.content"].startswith("# ")
    (report,) = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'report'")
    assert "report.md" in {a.path for a in client.list_artifacts(report.info.run_id)}
    again = runner.invoke(app, ["track", "study"])
    assert again.exit_code == 0 and again.output.count("(already there)") == 4, again.output
    assert len(mlp_runs(client, "study")) == 4


@pytest.mark.slow
def test_a_tracked_suite_logs_every_study_as_compare_does_and_attaches_each_report(
    tiny_config, tmp_path, store, monkeypatch
):
    study = write_study(tmp_path, tiny_config)
    shutil.copy(study, study.with_name("other.yaml"))
    monkeypatch.chdir(tmp_path)
    command = ["suite", "study", "other", "--seeds", "0", "--set", "train.epochs=1", "--track"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert result.output.count("MLflow: runs go to") == 1  # both studies share one store: said once
    client = client_of(store)
    for name in ("study", "other"):
        runs = mlp_runs(client, name)
        assert sorted((r.data.tags["arm"], r.data.tags["seed"]) for r in runs) == [("half", "0"), ("none", "0")]
        assert all(r.info.status == "FINISHED" and steps(client, r.info.run_id) == [1] for r in runs)
        exp = client.get_experiment_by_name(name)
        assert exp.tags["mlflow.note.content"].startswith("# ")
        (report,) = client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'report'")
        assert "report.md" in {a.path for a in client.list_artifacts(report.info.run_id)}
    # Again: every run is skipped as done, nothing is logged twice, the report run is reused.
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and again.output.count(": done (skipped;") == 4, again.output
    assert len(mlp_runs(client, "study")) == 2
    exp = client.get_experiment_by_name("study")
    assert len(client.search_runs([exp.experiment_id], "tags.`mlp_lab.kind` = 'report'")) == 1


def test_an_untracked_suite_makes_no_store(tiny_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_study(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["suite", "study", "--seeds", "0", "--set", "train.epochs=1"])
    assert result.exit_code == 0 and "MLflow" not in result.output, result.output
    assert not (tmp_path / "runs" / STORE_FILE).exists() and not list((tmp_path / "runs").rglob(RUN_FILE))


@pytest.mark.slow
def test_ui_serves_the_default_store_on_localhost(tiny_config, tmp_path, store):
    train(tracked(tiny_config, epochs=1), tmp_path / "runs" / "tiny")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlp_lab", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    try:
        assert process.stdout.readline().startswith(f"MLflow UI: http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
        client = MlflowClient(f"http://127.0.0.1:{port}")
        assert [r.info.run_name for r in mlp_runs(client, "tiny")] == ["tiny"]
        # Stopped as a user stops it: SIGTERM reaches `mlp-lab ui`, which stops its server (its
        # own process group, out of reach of a SIGKILL to ours).
        process.terminate()
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        stop_server(process)


def test_track_register_list_and_report_see_a_study_run_with_compare_s_set(tiny_config, tmp_path, store, monkeypatch):
    """After `compare study --seeds 0 --set train.epochs=1`, every verb sees the runs report shows:
    track exports them and names the setting, register finds the arm's run, list does not call
    them stale; with the same --set nothing differs."""
    write_study(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    made = runner.invoke(app, ["compare", "study", "--seeds", "0", "--set", "train.epochs=1"])
    assert made.exit_code == 0, made.output
    reported = runner.invoke(app, ["report", "study"])
    assert reported.exit_code == 0 and "2 of 4 runs of study were made with train.epochs=1" in reported.output
    assert "add --set train.epochs=1" in reported.output
    listed = runner.invoke(app, ["list", "--json"])
    (entry,) = [s for s in json.loads(listed.stdout)["studies"] if s["name"] == "study"]
    assert entry["state"] == "partial" and "2/4 runs done" in entry["detail"], entry  # seed 1 never ran
    assert "2 made with train.epochs=1" in entry["detail"] and "stale" not in entry["detail"]
    tracked = runner.invoke(app, ["track", "study"])
    assert tracked.exit_code == 0 and tracked.output.count("exported") == 2, tracked.output
    assert "made with train.epochs=1" in tracked.output
    client = client_of(tmp_path / "runs")
    assert sorted(r.data.tags["arm"] for r in mlp_runs(client, "study")) == ["half", "none"]
    registered = runner.invoke(app, ["register", "study", "--arm", "half", "--name", "m", "--set", "train.epochs=1"])
    assert registered.exit_code == 0 and "study/half/seed-0 -> models:/m/1" in registered.output, registered.output
    again = runner.invoke(app, ["track", "study", "--set", "train.epochs=1"])
    assert again.exit_code == 0 and "note:" not in again.output, again.output  # as compare ran them
    bad = runner.invoke(app, ["track", "runs/study/half/seed-0", "--set", "train.epochs=1"])
    assert bad.exit_code == 2 and "--set applies to a study only" in bad.stderr
