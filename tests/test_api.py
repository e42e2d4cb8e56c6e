"""The Python API (`mlp_lab.run`, `compare`, `search`, `load_model`, `load_config`) on tiny
synthetic data: what each returns matches the files the run wrote, nothing is printed unless
asked, the process is left as found; and the example notebook docs/notebook.ipynb, executed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import write_config, write_study
from PIL import Image

import mlp_lab
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import load_study

REPO = Path(__file__).resolve().parents[1]


def process_state() -> dict:
    """What a library call must leave as it found it."""
    return {
        "threads": torch.get_num_threads(),
        "sigint": signal.getsignal(signal.SIGINT),
        "sigterm": signal.getsignal(signal.SIGTERM),
        # pytest's own variable names the test's phase (setup, call): it changes between the two
        "environ": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "fill_uninitialized_memory": torch.utils.deterministic.fill_uninitialized_memory,
    }


@pytest.fixture
def watched(monkeypatch):
    """A process state a run would change: 1 torch thread, our own SIGINT handler, no
    CUBLAS_WORKSPACE_CONFIG (the trainer sets it); the RNGs seeded. Yields the state before."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def handler(signum, frame):  # never called: only its identity is compared
        raise AssertionError("not expected")

    previous = signal.signal(signal.SIGINT, handler)
    torch.manual_seed(1234)
    np.random.seed(1234)
    try:
        yield process_state()
    finally:
        signal.signal(signal.SIGINT, previous)
        torch.set_num_threads(previous_threads)


def assert_left_as_found(before: dict) -> None:
    after = process_state()
    assert after == before
    # The RNG streams continue as if nothing had drawn from them.
    torch_next, numpy_next = torch.rand(1).item(), np.random.rand()
    torch.manual_seed(1234)
    np.random.seed(1234)
    assert (torch_next, numpy_next) == (torch.rand(1).item(), np.random.rand())


def test_import_is_cheap_and_the_names_come_on_first_use():
    code = (
        "import sys, mlp_lab\n"
        "assert 'torch' not in sys.modules and 'mlp_lab.api' not in sys.modules and 'pydantic' not in sys.modules\n"
        "print(sorted(n for n in mlp_lab.API_NAMES if n in dir(mlp_lab)) == sorted(mlp_lab.API_NAMES))\n"
        "run = mlp_lab.run\n"
        "import mlp_lab.api, mlp_lab.search.spec\n"
        "print(run is mlp_lab.api.run, callable(mlp_lab.search), mlp_lab.search.spec.__name__, mlp_lab.__version__)\n"
        "print('torch' in sys.modules)\n"  # the API loads torch when it trains, not on import
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True", "mlp_lab.search.spec", mlp_lab.__version__, "False"]
    with pytest.raises(AttributeError, match="no attribute 'runn'"):
        mlp_lab.runn  # noqa: B018


def test_cli_help_does_not_import_torch():
    code = "import sys\nfrom mlp_lab.cli import app\nprint('torch' in sys.modules, 'mlp_lab.api' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_load_config_takes_a_name_a_path_or_a_config(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config()
    (tmp_path / "configs").mkdir()
    path = write_config(tmp_path / "configs", cfg)
    monkeypatch.chdir(tmp_path)
    by_name = mlp_lab.load_config("tiny", ["train.epochs=2"])
    by_path = mlp_lab.load_config(path, {"train.epochs": 2})
    by_object = mlp_lab.load_config(cfg, {"train": {"epochs": 2}})  # nested keys mean their dotted ones
    assert by_name == by_path == by_object
    assert by_name.train.epochs == 2 and cfg.train.epochs == 4
    assert mlp_lab.load_config(cfg) is cfg
    assert mlp_lab.load_config(
        path, {"model.hidden_sizes": [16, 8], "train.optimizer.name": "sgd"}
    ).model.hidden_sizes == [
        16,
        8,
    ]
    with pytest.raises(ConfigError) as bad:
        mlp_lab.load_config(cfg, {"train.epochs": 0, "model.dropuot": 0.1})
    assert any("train.epochs" in e for e in bad.value.errors) and any("dropuot" in e for e in bad.value.errors)
    with pytest.raises(MLPLabError, match="no config named 'tiy'.*did you mean 'tiny'"):
        mlp_lab.load_config("tiy")
    with pytest.raises(MLPLabError, match="expected a name, a path or a Config"):
        mlp_lab.load_config(42)


def test_run_returns_what_the_run_wrote_silently_and_leaves_the_process_as_found(tiny_config, tmp_path, capfd, watched):
    result = mlp_lab.run(tiny_config(), {"train.epochs": 2}, run_dir=tmp_path / "mine", threads=2)
    assert capfd.readouterr() == ("", "")
    assert_left_as_found(watched)
    assert result.run_dir == tmp_path / "mine"
    assert result.summary == rundir.read_json(result.run_dir / rundir.SUMMARY_FILE)
    assert result.history == rundir.read_metrics(result.run_dir) and len(result.history) == 2
    assert result.config.train.epochs == 2 and result.summary["status"] == "completed"
    frame = result.to_pandas()
    assert list(frame["epoch"]) == [1, 2] and frame["val/acc"].tolist() == [r["val/acc"] for r in result.history]


def test_progress_goes_to_log_or_stdout_only_when_asked(tiny_config, tmp_path, capfd):
    lines: list[str] = []
    mlp_lab.run(tiny_config(train={"epochs": 1}), run_dir=tmp_path / "a", log=lines.append)
    assert capfd.readouterr() == ("", "")
    # The per-epoch line is the CLI's (service.context.epoch_line), after the run's name.
    assert lines[0] == f"run tiny -> {tmp_path / 'a'}" and lines[2].startswith("done:")
    assert lines[1].startswith("tiny  epoch   1/1  train/loss ") and " val/acc " in lines[1]
    mlp_lab.run(tiny_config(train={"epochs": 1}), run_dir=tmp_path / "b", verbose=True)
    printed = capfd.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["run", "tiny", "done:"]


def test_a_refused_run_raises_the_library_error_and_leaves_the_process_as_found(tiny_config, tmp_path, watched):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(MLPLabError, match="already exists and is not empty"):
        mlp_lab.run(tiny_config(), run_dir=tmp_path / "taken")
    assert_left_as_found(watched)


def test_compare_reports_each_arm_as_report_json_does(tiny_config, tmp_path, monkeypatch, capfd, watched):
    write_study(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    report = mlp_lab.compare("study", seeds=[0], overrides={"train.epochs": 1}, threads=1)
    assert capfd.readouterr() == ("", "")
    assert_left_as_found(watched)
    on_disk = rundir.read_json(report.output_dir / "report.json")
    assert report.arms == on_disk["arms"] and [a["arm"] for a in report.arms] == ["none", "half"]
    assert (report.study, report.reference, report.seeds, report.factor) == ("study", "none", [0], ["model.dropout"])
    assert report.overrides == ["train.epochs=1"] and report.runs == on_disk["runs"]
    assert [(o.label, o.action) for o in report.outcomes] == [("none seed 0", "trained"), ("half seed 0", "trained")]
    assert report.failures == [] and report.to_pandas()["arm"].tolist() == ["none", "half"]

    # A loaded Study is taken as it is; its runs are finished, so nothing trains again.
    study = load_study("study", [0], overrides=["train.epochs=1"])
    again = mlp_lab.compare(study, threads=1)
    assert [o.action for o in again.outcomes] == ["skipped", "skipped"] and again.arms == report.arms
    # Seeds and overrides on a loaded Study reload it from its file: the factor stays protected.
    with pytest.raises(ConfigError, match="model.dropout is this study's factor"):
        mlp_lab.compare(study, overrides={"model.dropout": 0.3})


def test_compare_refuses_an_unknown_backend_and_an_address_without_ray(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config)
    with pytest.raises(MLPLabError, match="backend 'slurm': choose local or ray"):
        mlp_lab.compare(path, backend="slurm")
    with pytest.raises(MLPLabError, match="use it with backend='ray'"):
        mlp_lab.compare(path, address="auto")


@pytest.mark.slow
def test_compare_with_worker_processes_prints_nothing(tiny_config, tmp_path, capfd, watched):
    path = write_study(tmp_path, tiny_config)
    report = mlp_lab.compare(path, seeds=[0], overrides=["train.epochs=1"], jobs=2, threads=1)
    assert capfd.readouterr() == ("", "")
    assert_left_as_found(watched)
    assert sorted(o.status for o in report.outcomes) == ["done", "done"]


def test_load_model_predicts_as_mlp_lab_predict_does(tiny_config, tmp_path):
    from mlp_lab.inspect.predict import predict_files
    from mlp_lab.training.checkpoint import load_model as load_run

    result = mlp_lab.run(tiny_config(train={"epochs": 1}), run_dir=tmp_path / "run")
    model = mlp_lab.load_model(result.run_dir)
    assert model.config == result.config and model.classes == [str(k) for k in range(10)]
    assert model.checkpoint == result.summary.get("test_weights", "best")
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    files = []
    for i, picture in enumerate(pictures):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(picture).save(files[-1])
    predictions = model.predict(files, top_k=2)
    expected = predict_files(load_run(result.run_dir), files, top_k=2)
    assert predictions.top == [e["top"] for e in expected]
    assert predictions.labels == [e["top"][0]["class"] for e in expected]
    assert predictions.probabilities.shape == (3, 10)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.predict(pictures[0]).top[0] == model.predict([files[0]], top_k=3).top[0]  # one picture, not a list
    frame = predictions.to_pandas()
    assert frame["class"].tolist() == predictions.labels and list(frame.columns[2:]) == model.classes
    assert mlp_lab.RunResult.load_model(result).run_dir == result.run_dir


def test_load_model_errors_are_the_librarys(tmp_path):
    with pytest.raises(MLPLabError, match="not a run directory"):
        mlp_lab.load_model(tmp_path)
    with pytest.raises(MLPLabError, match="expected models:/NAME@ALIAS or models:/NAME/VERSION"):
        mlp_lab.load_model("models:/no-alias")


def test_to_pandas_without_pandas_says_what_to_install(tiny_config, tmp_path, monkeypatch):
    result = mlp_lab.run(tiny_config(train={"epochs": 1}), run_dir=tmp_path / "run")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"to_pandas\(\) needs pandas, which is not installed: pip install pandas"):
        result.to_pandas()


def write_search(tmp_path: Path, tiny_config) -> Path:
    base = tmp_path / "configs" / "tiny.yaml"
    base.parent.mkdir(exist_ok=True)
    base.write_text(yaml.safe_dump(config_to_dict(tiny_config(train={"epochs": 2}))))
    spec = {
        "base": "../configs/tiny.yaml",
        "metric": "val/acc",
        "trials": 2,
        "sampler": "random",
        "pruner": "none",
        "params": {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    }
    path = tmp_path / "searches" / "tiny_search.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("# Run: mlp-lab search tiny_search\n" + yaml.safe_dump(spec, sort_keys=False))
    return path


def test_search_returns_its_report_and_its_trials(tiny_config, tmp_path, monkeypatch, capfd, watched):
    pytest.importorskip("optuna")
    write_search(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    import mlp_lab.search.driver  # noqa: F401  (sets the subpackage as mlp_lab.search: still the API's search)

    report = mlp_lab.search("tiny_search", trials=2, overrides={"train.epochs": 1}, threads=1)
    assert capfd.readouterr() == ("", "")
    assert_left_as_found(watched)
    on_disk = rundir.read_json(report.output_dir / "search.json")
    assert report.trials == on_disk["trials"] and report.best == on_disk["best"]
    assert (report.finished, report.target, report.counts["complete"]) == (2, 2, 2)
    assert report.overrides == ["train.epochs=1"] and report.best_config == report.output_dir / "best.yaml"
    assert isinstance(mlp_lab.load_config(report.best_config), Config)
    assert report.to_pandas()["trial"].tolist() == [t["trial"] for t in report.trials]


def test_search_without_optuna_names_the_extra(tiny_config, tmp_path, monkeypatch):
    path = write_search(tmp_path, tiny_config)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MLPLabError, match=r"needs the \[search\] extra"):
        mlp_lab.search(path)


def execute_notebook(path: Path, cwd: Path, timeout: int = 900):
    """Run every cell of a notebook in a fresh Jupyter kernel (nbclient), as `Run All` does."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


@pytest.mark.slow
def test_the_example_notebook_runs(tmp_path):
    """docs/notebook.ipynb on real FashionMNIST in an empty directory holding configs/ and
    experiments/ (a checkout, or `mlp-lab init`): every cell runs, and what it shows is real."""
    from mlp_lab.data.load import load_data
    from mlp_lab.data.source import DataError

    try:
        load_data(mlp_lab.load_config(REPO / "configs" / "baseline.yaml", ["data.download=false"]).data)
    except DataError as exc:
        if os.environ.get("MLP_LAB_REQUIRE_REAL_DATA") == "1":
            raise
        pytest.skip(f"real FashionMNIST not available: {exc}")
    for folder in ("configs", "experiments"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    notebook = execute_notebook(REPO / "docs" / "notebook.ipynb", tmp_path)
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "error" not in text.lower(), text
    summary = rundir.read_json(tmp_path / "runs" / "notebook" / rundir.SUMMARY_FILE)
    assert summary["status"] == "completed" and summary["epochs_run"] == 1 and summary["test/acc"] > 0.7
    report = rundir.read_json(tmp_path / "runs" / "dropout" / "report.json")
    assert [a["arm"] for a in report["arms"]] == ["p0.0", "p0.2", "p0.5"] and report["seeds"] == [0]


@pytest.fixture
def local_store(tmp_path, monkeypatch):
    """The MLflow store mlp-lab makes by itself: SQLite under the runs' output.dir, no server."""
    pytest.importorskip("mlflow")
    from mlp_lab.tracking.store import store_for

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    store = store_for(tmp_path / "runs")
    assert store.uri.startswith("sqlite:///") and store.uri.endswith(str(tmp_path / "runs" / "mlflow.db"))
    return store


@pytest.mark.slow
def test_track_exports_a_finished_run_to_mlflow_once_and_leaves_the_process_as_found(
    tiny_config, tmp_path, local_store, watched
):
    from mlflow.tracking import MlflowClient

    result = mlp_lab.run(tiny_config(train={"epochs": 2}), run_dir=tmp_path / "runs" / "tiny")
    lines: list[str] = []
    (exported,) = mlp_lab.track(result.run_dir, log=lines.append)
    assert (exported.run_dir, exported.created) == (result.run_dir, True)
    assert lines == [
        f"MLflow: runs go to {tmp_path / 'runs' / 'mlflow.db'} (browse them: mlp-lab ui)",
        exported.describe(),
    ]
    client = MlflowClient(local_store.uri)
    assert client.get_run(exported.run_id).data.metrics["test/acc"] == result.summary["test/acc"]
    assert [m.value for m in client.get_metric_history(exported.run_id, "val/acc")] == [
        row["val/acc"] for row in result.history
    ]
    (again,) = mlp_lab.track([str(result.run_dir)])  # as `mlp-lab track` twice: nothing added
    assert (again.run_id, again.created) == (exported.run_id, False)
    assert_left_as_found(watched)
    with pytest.raises(MLPLabError, match="expected run directories or study names"):
        mlp_lab.track([result])


def test_a_run_whose_config_asks_for_mlflow_logs_live_through_the_api(tiny_config, tmp_path, local_store):
    # The MLflow logger is the tracking layer's; the service hands it to every run it starts.
    from mlflow.tracking import MlflowClient

    from mlp_lab.tracking.logger import run_record

    result = mlp_lab.run(tiny_config(train={"epochs": 2}, output={"mlflow": True}))
    run_id = run_record(result.run_dir, local_store)["run_id"]
    history = MlflowClient(local_store.uri).get_metric_history(run_id, "val/acc")
    assert [m.value for m in history] == [row["val/acc"] for row in result.history]
