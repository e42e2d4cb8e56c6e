"""Ablations on synthetic data: arm checks, hash-based skipping, continuing, parallel = serial."""

from pathlib import Path

import pytest
import yaml
from conftest import metrics_without_timing, write_study

from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.core.interrupt import StopFlag
from mlp_lab.execution.procedure import run_one
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.studies.ablation import compare, load_study, plan
from mlp_lab.training.context import RunContext

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_loads_and_says_how_to_run(path):
    study = load_study(path)
    assert study.reference in [arm.name for arm in study.arms]
    assert study.description, "a study says what question it answers"
    assert path.read_text().startswith(f"# Run: mlp-lab compare {path.stem}")
    assert len(plan(study)) == len(study.arms) * len(study.seeds)


def test_loads_arms_and_plans_every_arm_and_seed(tiny_config, tmp_path):
    exp = load_study(write_study(tmp_path, tiny_config))
    assert [a.name for a in exp.arms] == ["none", "half"]
    assert exp.arm("half").config.model.dropout == 0.5
    specs = plan(exp)
    assert [(s.arm, s.seed) for s in specs] == [("none", 0), ("none", 1), ("half", 0), ("half", 1)]
    assert specs[3].run_dir == tmp_path / "runs" / "study" / "half" / "seed-1"
    assert specs[3].config.seed == 1
    assert load_study(write_study(tmp_path, tiny_config), seeds=[7]).seeds == [7]


def test_arm_changing_a_key_outside_its_factor_is_named(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config, arms={"none": {}, "sneaky": {"model.dropout": 0.1, "train.epochs": 9}})
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert info.value.errors == [f"{path}: arms.sneaky: key 'train.epochs' is outside the factor (model.dropout)"]


def test_every_arm_config_is_validated_and_reference_must_exist(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config, arms={"none": {}, "bad": {"model.dropout": 1.5}}, reference="missing")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    text = "\n".join(info.value.errors)
    assert "reference: 'missing' is not one of the arms" in text
    assert f"{path}: arms.bad: model.dropout:" in text


def test_unknown_experiment_name_lists_known_ones(tmp_path, tiny_config):
    write_study(tmp_path, tiny_config)
    with pytest.raises(MLPLabError, match="known: study"):
        load_study("nope", studies_dir=tmp_path / "experiments")


@pytest.mark.slow
def test_second_compare_trains_nothing_and_changed_config_reruns(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config)
    first = compare(load_study(path), log=lambda _: None)
    assert [o.action for o in first.outcomes] == ["trained"] * 4
    second = compare(load_study(path), log=lambda _: None)
    assert [o.action for o in second.outcomes] == ["skipped"] * 4
    assert [o.summary for o in second.outcomes] == [o.summary for o in first.outcomes]
    changed = write_study(tmp_path, tiny_config, overrides={"train.optimizer.lr": 0.002})
    third = compare(load_study(changed), log=lambda _: None)
    assert [o.action for o in third.outcomes] == ["trained"] * 4
    assert len(list((tmp_path / "runs" / "study" / "none").glob("seed-0.old-*"))) == 1  # kept, not deleted


def test_partial_run_is_continued_to_the_same_result(tiny_config, tmp_path):
    exp = load_study(write_study(tmp_path, tiny_config))
    spec = plan(exp)[0]
    stop = StopFlag()
    calls = {"n": 0}

    def stop_after_twenty_steps():
        calls["n"] += 1
        if calls["n"] > 20:
            stop.signum = 15
        return stop()

    outcome = run_one(spec, RunContext(stop=stop_after_twenty_steps, log=lambda _: None))
    assert outcome.action == "interrupted" and outcome.status == spec.status() == RunStatus.PARTIAL
    result = compare(exp, log=lambda _: None)
    assert result.outcomes[0].action == "resumed" and result.outcomes[0].status == RunStatus.DONE
    reference = tmp_path / "reference"
    from mlp_lab.training.trainer import train

    expected = train(spec.config, reference)
    assert result.outcomes[0].summary["test/acc"] == expected["test/acc"]
    assert metrics_without_timing(spec.run_dir) == metrics_without_timing(reference)


@pytest.mark.slow  # spawns worker processes
def test_parallel_jobs_give_the_same_results_as_serial(tiny_config, tmp_path):
    # CPU float results depend on the torch thread count, so both sides use one thread per run.
    path = write_study(tmp_path, tiny_config)
    serial = compare(load_study(path), jobs=1, threads=1, log=lambda _: None)
    assert [o.action for o in serial.outcomes] == ["trained"] * 4
    # The same study into a second output directory, in two worker processes.
    base = tmp_path / "configs" / "tiny.yaml"
    raw = yaml.safe_load(base.read_text())
    raw["output"]["dir"] = str(tmp_path / "runs-parallel")
    base.write_text(yaml.safe_dump(raw))
    parallel = compare(load_study(path), jobs=2, threads=1, log=lambda _: None)
    assert [o.action for o in parallel.outcomes] == ["trained"] * 4
    for a, b in zip(serial.outcomes, parallel.outcomes):
        assert a.label == b.label
        assert a.summary["test/acc"] == b.summary["test/acc"]
        assert a.summary["test/loss"] == b.summary["test/loss"]
        assert a.summary["threads"] == b.summary["threads"] == 1
    runs = lambda root: sorted(p.relative_to(root) for p in root.glob("study/*/seed-*"))  # noqa: E731
    assert runs(tmp_path / "runs") == runs(tmp_path / "runs-parallel")
    for run in runs(tmp_path / "runs"):
        assert metrics_without_timing(tmp_path / "runs" / run) == metrics_without_timing(
            tmp_path / "runs-parallel" / run
        )


def test_failed_run_is_reported_and_others_continue(tiny_config, tmp_path):
    path = write_study(
        tmp_path,
        tiny_config,
        factor="train.optimizer",
        arms={"none": {}, "explode": {"train.optimizer": {"name": "sgd", "lr": 1.0e6}}},
    )
    result = compare(load_study(path), log=lambda _: None)
    assert [o.status for o in result.outcomes] == [RunStatus.DONE] * 2 + [RunStatus.FAILED] * 2
    assert "diverged" in result.failures[0].error and result.failures[0].summary["status"] == "diverged"
    from mlp_lab.studies.report import build_report

    report = build_report(load_study(path))
    explode = report["arms"][1]
    assert explode["failed_seeds"] == [0, 1] and explode["test_acc_mean"] is None
    assert explode["verdict"] == "no shared seeds"
    assert "`explode`: seeds 0, 1 failed" in (tmp_path / "runs" / "study" / "report.md").read_text()


def test_set_applies_to_every_arm_changes_the_hash_and_is_in_the_report(tiny_config, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlp_lab.cli import app
    from mlp_lab.config.hashing import config_hash

    path = write_study(tmp_path, tiny_config)
    plain = load_study(path)
    quick = load_study(path, overrides=["train.epochs=1", "train.batch_size=64"])
    for arm, before in zip(quick.arms, plain.arms):
        assert arm.config.train.epochs == 1 and arm.config.train.batch_size == 64
        assert arm.config.model.dropout == before.config.model.dropout  # the arms' own changes stay
        assert config_hash(arm.config) != config_hash(before.config)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["compare", "study", "--seeds", "0", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "study" / "half" / "seed-0"
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 2  # header + 1 epoch
    report = (tmp_path / "runs" / "study" / "report.md").read_text()
    assert "- Runs differ from the study file in (a --set): `train.epochs=1`." in report
    assert yaml.safe_load((tmp_path / "runs" / "study" / "report.json").read_text())["overrides"] == ["train.epochs=1"]


def test_set_is_validated_like_run_and_may_not_change_the_factor(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config)
    with pytest.raises(ConfigError) as info:
        load_study(path, overrides=["train.epochs=0", "model.dropout=0.3", "seed.x=1"])
    lines = info.value.errors
    assert any(line.startswith("--set train.epochs=0: train.epochs:") for line in lines)
    assert any("--set model.dropout=0.3: model.dropout is this study's factor" in line for line in lines)
    assert any(line.startswith("--set seed.x=1: seed: is a int") for line in lines)
    assert len(lines) == 3  # said once, not once per arm


def test_suite_applies_set_to_every_study(tiny_config, tmp_path):
    from mlp_lab.studies.overview import load_studies

    write_study(tmp_path, tiny_config)
    [study] = load_studies(["study"], studies_dir=tmp_path / "experiments", overrides=["train.epochs=1"])
    assert all(arm.config.train.epochs == 1 for arm in study.arms) and study.overrides == ("train.epochs=1",)
