"""Hyperparameter search on synthetic data: search-file checks, trials as run directories,
pruning, the report and best.yaml, resuming after kill -9, parallel workers, the missing extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.load import load_config
from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.runs import rundir
from mlp_lab.search.driver import run_search
from mlp_lab.search.spec import load_search

REPO = Path(__file__).resolve().parents[2]
optuna = pytest.importorskip("optuna")


def write_search(tmp_path: Path, tiny_config, epochs: int = 3, **fields) -> Path:
    """searches/tiny_search.yaml over configs/tiny.yaml; `fields` replace the file's keys."""
    base = tmp_path / "configs" / "tiny.yaml"
    base.parent.mkdir(exist_ok=True)
    base.write_text(
        yaml.safe_dump(tiny_config(train={"epochs": epochs, "batch_size": 32, "device": "cpu"}).model_dump(mode="json"))
    )
    spec = {
        "base": "../configs/tiny.yaml",
        "metric": "val/acc",
        "trials": 4,
        "sampler": "random",
        "pruner": "none",
        "params": {
            "train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
        },
        **fields,
    }
    path = tmp_path / "searches" / "tiny_search.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("# Run: mlp-lab search tiny_search\n" + yaml.safe_dump(spec, sort_keys=False))
    return path


def quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("path", sorted((REPO / "searches").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_search_loads_and_says_how_to_run(path):
    search = load_search(path)
    assert path.read_text().startswith(f"# Run: mlp-lab search {path.stem}")
    assert search.metric.startswith("val/")
    assert search.description, "a search says what it looks for"


BAD_SEARCHES = [
    ({"metirc": "val/acc"}, "metirc: unknown key, did you mean 'metric'?"),
    ({"metric": "test/acc"}, "metric: 'test/acc' is refused: a search must never select on test data"),
    ({"metric": "val/accuracy"}, "is not a validation metric (val/acc or val/loss); did you mean 'val/acc'?"),
    ({"direction": "minimize"}, "direction: minimize val/acc would pick the worst config; use maximize"),
    (
        {"params": {"train.optimizer.lrr": {"type": "float", "low": 0.1, "high": 0.2}}},
        "params.train.optimizer.lrr: not a config key, did you mean 'train.optimizer.lr'?",
    ),
    (
        {"params": {"model.dropout": {"type": "float", "low": 0.4, "high": 0.1}}},
        "params.model.dropout: low (0.4) is above high (0.1)",
    ),
    (
        {"params": {"train.optimizer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
        "params.train.optimizer.lr: log: a log scale needs low > 0",
    ),
    (
        {"params": {"model.dropout": {"type": "float", "low": 0.0, "high": 1.5}}},
        "params.model.dropout: value 1.5: Input should be less than 1",
    ),
    (
        {"params": {"train.epochs": {"type": "int", "low": 2, "high": 8, "step": 1.5}}},
        "params.train.epochs: step: an int parameter needs whole numbers",
    ),
    (
        {"params": {"model.dropout": {"type": "categorical"}}},
        "params.model.dropout: choices: a categorical parameter needs at least one choice",
    ),
    (
        {"params": {"model.dropout": {"type": "float", "lo": 0.0, "high": 0.5}}},
        "params.model.dropout.lo: unknown key, did you mean 'params.model.dropout.low'?",
    ),
    (
        {"sampler": "grid", "params": {"model.dropout": {"type": "float", "low": 0.0, "high": 0.5}}},
        "params.model.dropout: the grid sampler needs every parameter categorical",
    ),
    (
        {"params": {"data.split_seed": {"type": "int", "low": 0, "high": 3}}},
        "params.data.split_seed: cannot be searched: it would change the data or the validation split",
    ),
    ({"params": {"seed": {"type": "int", "low": 0, "high": 3}}}, "params.seed: cannot be searched"),
    ({"enqueue": [{"model.width": 64}]}, "enqueue[0].model.width: not one of the searched params"),
    ({"confirm": {"overrides": {"train.epocs": 40}}}, "train.epocs: unknown key, did you mean 'train.epochs'?"),
    ({"confirm": {"overrides": {"train.epochs": 0}}}, "train.epochs: Input should be greater than 0"),
    ({"confirm": {"seeds": [0, 1]}}, "confirm.seeds: unknown key"),
]


@pytest.mark.parametrize("fields, message", BAD_SEARCHES, ids=[m.split(":")[0] for _, m in BAD_SEARCHES])
def test_bad_search_file_is_refused_naming_file_and_key(tiny_config, tmp_path, fields, message):
    path = write_search(tmp_path, tiny_config, **fields)
    with pytest.raises(ConfigError) as info:
        load_search(path)
    assert any(line.startswith(f"{path}: ") and message in line for line in info.value.errors), info.value.errors


def test_every_problem_is_reported_at_once(tiny_config, tmp_path):
    path = write_search(
        tmp_path,
        tiny_config,
        metric="test/acc",
        params={
            "model.dropout": {"type": "float", "low": 0.4, "high": 0.1},
            "train.optimizer.lrr": {"type": "float", "low": 0.1, "high": 0.2},
        },
    )
    with pytest.raises(ConfigError) as info:
        load_search(path)
    assert len(info.value.errors) == 3


def test_architectures_are_searched_as_depth_and_width_or_as_lists(tiny_config, tmp_path):
    search = load_search(
        write_search(
            tmp_path,
            tiny_config,
            params={
                "model.depth": {"type": "int", "low": 1, "high": 3},
                "model.width": {"type": "categorical", "choices": [16, 64]},
            },
        )
    )
    assert search.trial_config({"model.depth": 3, "model.width": 64}, "t").model.hidden_sizes == [64, 64, 64]
    search = load_search(
        write_search(
            tmp_path,
            tiny_config,
            sampler="grid",
            params={"model.hidden_sizes": {"type": "categorical", "choices": [[64, 32], [16]]}},
        )
    )
    assert search.grid_size() == 2
    study = optuna.create_study(
        sampler=optuna.samplers.GridSampler({"model.hidden_sizes": search.params[0].grid_values()})
    )
    sampled = {tuple(search.params[0].suggest(study.ask())) for _ in range(2)}
    assert sampled == {(64, 32), (16,)}


@pytest.mark.slow
def test_four_trial_search_end_to_end_and_best_yaml_reproduces_the_best_trial(tiny_config, tmp_path):
    search = load_search(write_search(tmp_path, tiny_config))
    result = run_search(search, log=quiet)
    out = tmp_path / "runs" / "tiny_search"
    assert result.finished == 4 and not result.interrupted
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-0", "trial-1", "trial-2", "trial-3"]
    for n in range(4):  # each trial is a normal run directory that says which trial it was
        trial = rundir.read_json(out / f"trial-{n}" / "trial.json")
        assert trial["number"] == n and trial["state"] == "complete" and trial["epochs_run"] == 3
        assert rundir.run_status(out / f"trial-{n}") == rundir.RunStatus.DONE
    report = json.loads((out / "search.json").read_text())
    assert report["counts"]["complete"] == 4
    values = [t["val/acc"] for t in report["trials"]]
    assert report["best"]["value"] == max(values)
    md = (out / "search.md").read_text()
    assert "## Best trial" in md and "optimistic" in md and "| 3 | complete |" in md
    assert len((out / "search.csv").read_text().splitlines()) == 5
    for png in ("history.png", "importances.png", "parallel.png", "slice.png"):
        assert (out / png).stat().st_size > 1000, png
    assert "test/acc" not in json.dumps(report["trials"]), "the search reads validation metrics only"

    # best.yaml is a complete, valid run config that trains to the same validation score.
    best = load_config(out / "best.yaml")
    from mlp_lab.training.trainer import train

    summary = train(best, tmp_path / "again")
    assert summary["best/val_acc"] == report["best"]["value"]

    # A second call with the same budget trains nothing; a larger one adds trials.
    again = run_search(search, log=quiet)
    assert again.outcomes == [] and again.finished == 4
    more = run_search(search, trials=5, log=quiet)
    assert more.finished == 5 and (out / "trial-4" / "trial.json").exists()
    params = [rundir.read_json(out / f"trial-{n}" / "trial.json")["params"] for n in range(5)]
    assert params[4] not in params[:4], "a continued search must not replay the first call's random points"


def test_an_invalid_sampled_config_is_a_failed_trial_not_a_crash(tiny_config, tmp_path):
    # min_lr must stay below the learning rate under a cosine schedule: a cross-field rule.
    path = write_search(
        tmp_path,
        tiny_config,
        epochs=1,
        sampler="grid",
        overrides={"train.scheduler.name": "cosine"},
        params={"train.scheduler.min_lr": {"type": "categorical", "choices": [0.0, 0.5]}},
    )
    result = run_search(load_search(path), log=quiet)
    report = json.loads((tmp_path / "runs" / "tiny_search" / "search.json").read_text())
    states = {t["train.scheduler.min_lr"]: (t["state"], t["error"]) for t in report["trials"]}
    assert result.finished == 2
    assert states[0.0] == ("complete", None)
    assert states[0.5][0] == "fail" and "train.scheduler.min_lr: must be below train.optimizer.lr" in states[0.5][1]


def test_enqueued_architectures_are_tried_first(tiny_config, tmp_path):
    path = write_search(
        tmp_path,
        tiny_config,
        epochs=1,
        trials=2,
        params={"model.hidden_sizes": {"type": "categorical", "choices": [[8], [16, 8]]}},
        enqueue=[{"model.hidden_sizes": [16, 8]}, {"model.hidden_sizes": [8]}],
    )
    result = run_search(load_search(path), log=quiet)
    assert result.finished == 2
    out = tmp_path / "runs" / "tiny_search"
    tried = [yaml.safe_load((out / f"trial-{n}" / "config.yaml").read_text())["model"]["hidden_sizes"] for n in (0, 1)]
    assert tried == [[16, 8], [8]]


def test_a_clearly_worse_trial_is_pruned_early(tiny_config, tmp_path):
    path = write_search(
        tmp_path,
        tiny_config,
        epochs=6,
        trials=2,
        pruner={"name": "median", "startup_trials": 1, "warmup_epochs": 0},
        params={"train.optimizer.lr": {"type": "float", "low": 1e-7, "high": 1e-2, "log": True}},
        enqueue=[{"train.optimizer.lr": 5e-3}, {"train.optimizer.lr": 1e-7}],
    )
    run_search(load_search(path), log=quiet)
    out = tmp_path / "runs" / "tiny_search"
    good, bad = (rundir.read_json(out / f"trial-{n}" / "trial.json") for n in (0, 1))
    assert good["state"] == "complete" and good["epochs_run"] == 6
    assert bad["state"] == "pruned" and bad["epochs_run"] == 1, bad
    assert (out / "trial-1" / "checkpoints" / "last.pt").exists()
    assert "saved 5 (42%)" in (out / "search.md").read_text()


def test_without_optuna_the_command_exits_2_naming_the_extra(monkeypatch, tiny_config, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` fail
    monkeypatch.chdir(tmp_path)
    write_search(tmp_path, tiny_config)
    result = CliRunner().invoke(app, ["search", "tiny_search"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: mlp-lab search needs the [search] extra: pip install 'mlp-lab[search]' "
        "(in a checkout: pip install -e '.[search]')"
    )


def test_help_imports_neither_torch_nor_optuna():
    code = (
        "import sys\nfrom mlp_lab.cli import app\n"
        "import mlp_lab.search.confirm, mlp_lab.search.driver, mlp_lab.search.report, mlp_lab.search.study\n"
        "print('torch' in sys.modules, 'optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "False"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "MLP_LAB_DATA": str(tmp_path / "idx")}


def _search(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mlp_lab", "search", str(tmp_path / "searches" / "tiny_search.yaml"), *args]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow  # spawns search processes
def test_kill_9_mid_trial_then_the_same_command_reaches_exactly_n_trials(tiny_config, tmp_path):
    write_search(tmp_path, tiny_config, epochs=6, trials=3)
    out = tmp_path / "runs" / "tiny_search"
    process = subprocess.Popen(
        _search(tmp_path), cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(out / "trial-1" / "metrics.csv", process)  # trial 1 has trained an epoch: mid-trial
    process.kill()
    process.wait()
    assert not (out / "trial-1" / "trial.json").exists(), "killed before trial 1 ended"
    again = subprocess.run(
        _search(tmp_path), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert "3/3 trials finished" in again.stdout
    assert "trial 1: was interrupted; continuing it from last.pt" in again.stdout
    study = optuna.load_study(
        study_name="tiny_search",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))),
    )
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) == 3
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-0", "trial-1", "trial-2"]
    assert [rundir.read_json(out / f"trial-{n}" / "trial.json")["number"] for n in range(3)] == [0, 1, 2]
    assert len(rundir.read_metrics(out / "trial-1")) == 6


@pytest.mark.slow  # spawns worker processes
def test_two_workers_share_the_study(tiny_config, tmp_path):
    write_search(
        tmp_path, tiny_config, epochs=2, trials=4, pruner={"name": "median", "startup_trials": 1, "warmup_epochs": 0}
    )
    done = subprocess.run(
        _search(tmp_path, "--jobs", "2"), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "tiny_search"
    report = json.loads((out / "search.json").read_text())
    assert len(report["trials"]) == 4 and report["counts"]["running"] == 0
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-{n}" for n in range(4)]
    # Both workers reported intermediate values into the one journal.
    study = optuna.load_study(
        study_name="tiny_search",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))),
    )
    assert all(t.intermediate_values for t in study.trials)


def test_a_second_driver_on_the_same_search_is_refused(tiny_config, tmp_path):
    search = load_search(write_search(tmp_path, tiny_config))
    search.output_dir.mkdir(parents=True)
    with rundir.RunLock(search.output_dir):
        with pytest.raises(MLPLabError, match="another mlp-lab search"):
            run_search(search, log=quiet)


def test_confirm_needs_a_finished_search(tiny_config, tmp_path):
    from mlp_lab.search.confirm import confirmation_study

    with pytest.raises(MLPLabError, match="no best trial yet; run: mlp-lab search tiny_search"):
        confirmation_study(load_search(write_search(tmp_path, tiny_config)))


@pytest.mark.slow
def test_confirm_retrains_best_and_base_over_seeds_through_the_ablation_report(tiny_config, tmp_path):
    from mlp_lab.search.confirm import confirm

    search = load_search(write_search(tmp_path, tiny_config, epochs=1, trials=2))
    run_search(search, log=quiet)
    result, lines = confirm(search, seeds=[0, 1], log=quiet)
    out = tmp_path / "runs" / "tiny_search" / "confirm"
    assert len(result.outcomes) == 4 and not result.failures
    assert sorted(p.name for p in (out / "best").glob("seed-*")) == ["seed-0", "seed-1"]
    report = json.loads((out / "report.json").read_text())
    assert [row["arm"] for row in report["arms"]] == ["base", "best"]
    assert report["arms"][1]["paired_seeds"] == 2 and report["arms"][1]["ci_low"] is not None
    assert lines[0].startswith("base: test/acc ") and lines[2].startswith("best - base: ")
    assert "95% paired t-interval" in (tmp_path / "runs" / "tiny_search" / "confirm.md").read_text()


def test_confirm_runs_the_confirmation_study_it_is_given(tiny_config, tmp_path):
    """The seam a tracking caller uses: it builds the study, tracks it, and confirm runs that one."""
    from mlp_lab.search.confirm import confirm, confirmation_study

    search = load_search(write_search(tmp_path, tiny_config, epochs=1, trials=2))
    run_search(search, log=quiet)
    given = confirmation_study(search, seeds=[3])
    result, lines = confirm(search, seeds=[0, 1], study=given, log=quiet)
    assert [o.label for o in result.outcomes] == ["base seed 3", "best seed 3"] and not result.failures
    assert [p.name for p in (search.output_dir / "confirm" / "best").glob("seed-*")] == ["seed-3"]
    assert lines[0].startswith("base: test/acc ") and "over 1 seed(s)" in lines[0]


def test_confirm_overrides_retrain_both_arms_alike_and_the_report_says_so(tiny_config, tmp_path):
    from mlp_lab.search.confirm import confirm

    search = load_search(
        write_search(tmp_path, tiny_config, epochs=1, trials=2, confirm={"overrides": {"train.epochs": 2}})
    )
    run_search(search, log=quiet)
    assert yaml.safe_load((search.output_dir / "best.yaml").read_text())["train"]["epochs"] == 1  # the trial's own
    result, _ = confirm(search, seeds=[0], log=quiet)
    assert not result.failures
    for arm in ("base", "best"):
        run = search.output_dir / "confirm" / arm / "seed-0"
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2
        assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert "Both arms with train.epochs=2" in (search.output_dir / "confirm" / "report.md").read_text()


def test_trial_directories_without_their_study_are_never_reused(tiny_config, tmp_path):
    search = load_search(write_search(tmp_path, tiny_config))
    (search.output_dir / "trial-0").mkdir(parents=True)
    with pytest.raises(MLPLabError, match="holds trial-0 but its study"):
        run_search(search, log=quiet)


@pytest.mark.slow
def test_set_reaches_every_trial_and_both_confirm_arms_and_cannot_change_between_calls(tiny_config, tmp_path):
    from mlp_lab.search.confirm import confirm

    path = write_search(tmp_path, tiny_config, epochs=3, trials=2)
    with pytest.raises(ConfigError, match="--set model.dropout=0.1: model.dropout is searched"):
        load_search(path, overrides=["model.dropout=0.1"])
    search = load_search(path, overrides=["train.epochs=1"])
    assert search.base_config.train.epochs == 1
    run_search(search, log=quiet)
    for trial in sorted(search.output_dir.glob("trial-*")):
        assert yaml.safe_load((trial / "config.yaml").read_text())["train"]["epochs"] == 1
    assert "Every trial with `train.epochs=1` (--set)." in (search.output_dir / "search.md").read_text()
    with pytest.raises(MLPLabError, match="was started with --set train.epochs=1; give the same"):
        run_search(load_search(path, overrides=["train.epochs=2"]), trials=3, log=quiet)
    result, _ = confirm(load_search(path, overrides=["train.epochs=1"]), seeds=[0], log=quiet)
    assert not result.failures
    for arm in ("base", "best"):
        config = yaml.safe_load((search.output_dir / "confirm" / arm / "seed-0" / "config.yaml").read_text())
        assert config["train"]["epochs"] == 1
    assert "Both arms with train.epochs=1 (--set)." in (search.output_dir / "confirm" / "report.md").read_text()


@pytest.mark.slow
def test_a_search_over_a_user_models_arguments(tiny_config, tmp_path):
    """model.args.NAME are searchable keys of a user's model; each trial is a run of that model
    with the sampled arguments, and best.yaml names the target with the best trial's arguments."""
    from user_code_helpers import user_raw_config, write_user_net

    net = write_user_net(tmp_path, "search")
    base = tmp_path / "configs" / "tiny.yaml"
    base.parent.mkdir()
    base.write_text(yaml.safe_dump(user_raw_config(tiny_config(), f"{net}:Net", epochs=1, hidden=8)))
    spec = {
        "base": "../configs/tiny.yaml",
        "metric": "val/acc",
        "trials": 2,
        "sampler": "random",
        "pruner": "none",
        "params": {"model.args.hidden": {"type": "int", "low": 4, "high": 16}},
    }
    path = tmp_path / "searches" / "user.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec))
    result = run_search(load_search(path), log=quiet)
    assert result.finished == 2
    out = tmp_path / "runs" / "user"
    hidden = [rundir.read_json(out / f"trial-{n}" / "trial.json")["params"]["model.args.hidden"] for n in range(2)]
    for n, width in enumerate(hidden):
        trained = load_config(out / f"trial-{n}" / "config.yaml")
        assert trained.model.kind == "user" and trained.model.args == {"hidden": width}
    best = load_config(out / "best.yaml")
    assert best.model.target == f"{net}:Net" and best.model.args["hidden"] in hidden

    path.write_text(yaml.safe_dump({**spec, "params": {"model.args": {"type": "int", "low": 4, "high": 16}}}))
    with pytest.raises(ConfigError, match="params.model.args: not a config key"):
        load_search(path)
