"""Ablations on synthetic data: arm checks, hash-based skipping, continuing, parallel = serial."""

from pathlib import Path

import pytest
import yaml

from mlp_lab import rundir
from mlp_lab.ablation import compare, load_experiment, plan, run_one, run_status
from mlp_lab.config import ConfigError, MLPLabError, config_to_dict
from mlp_lab.interrupt import StopFlag


def write_study(tmp_path: Path, tiny_config, arms=None, **fields) -> Path:
    base = tmp_path / "configs" / "tiny.yaml"
    base.parent.mkdir(exist_ok=True)
    base.write_text(yaml.safe_dump(config_to_dict(tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu"}))))
    study = {
        "description": "dropout on the tiny problem",
        "base": "../configs/tiny.yaml",
        "factor": "model.dropout",
        "reference": "none",
        "seeds": [0, 1],
        "arms": arms or {"none": {"model.dropout": 0.0}, "half": {"model": {"dropout": 0.5}}},
        **fields,
    }
    path = tmp_path / "experiments" / "study.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("# Run: mlp-lab compare study\n" + yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_experiment_loads_and_says_how_to_run(path):
    exp = load_experiment(path)
    assert exp.reference in [a.name for a in exp.arms] and exp.description
    assert path.read_text().splitlines()[0].startswith(f"# Run: mlp-lab compare {path.stem}")


def test_loads_arms_and_plans_every_arm_and_seed(tiny_config, tmp_path):
    exp = load_experiment(write_study(tmp_path, tiny_config))
    assert [a.name for a in exp.arms] == ["none", "half"]
    assert exp.arm("half").config.model.dropout == 0.5
    specs = plan(exp)
    assert [(s.arm, s.seed) for s in specs] == [("none", 0), ("none", 1), ("half", 0), ("half", 1)]
    assert specs[3].run_dir == tmp_path / "runs" / "study" / "half" / "seed-1"
    assert specs[3].config.seed == 1
    assert load_experiment(write_study(tmp_path, tiny_config), seeds=[7]).seeds == [7]


def test_arm_changing_a_key_outside_its_factor_is_named(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config, arms={"none": {}, "sneaky": {"model.dropout": 0.1, "train.epochs": 9}})
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.errors == [f"{path}: arms.sneaky: key 'train.epochs' is outside the factor (model.dropout)"]


def test_every_arm_config_is_validated_and_reference_must_exist(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config, arms={"none": {}, "bad": {"model.dropout": 1.5}}, reference="missing")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = "\n".join(info.value.errors)
    assert "reference: 'missing' is not one of the arms" in text
    assert f"{path}: arms.bad: model.dropout:" in text


def test_unknown_experiment_name_lists_known_ones(tmp_path, tiny_config):
    write_study(tmp_path, tiny_config)
    with pytest.raises(MLPLabError, match="known: study"):
        load_experiment("nope", experiments_dir=tmp_path / "experiments")


def test_second_compare_trains_nothing_and_changed_config_reruns(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config)
    first = compare(load_experiment(path), log=lambda _: None)
    assert [o["status"] for o in first.outcomes] == ["trained"] * 4
    second = compare(load_experiment(path), log=lambda _: None)
    assert [o["status"] for o in second.outcomes] == ["skipped"] * 4
    assert [o["summary"] for o in second.outcomes] == [o["summary"] for o in first.outcomes]
    changed = write_study(tmp_path, tiny_config, overrides={"train.optimizer.lr": 0.002})
    third = compare(load_experiment(changed), log=lambda _: None)
    assert [o["status"] for o in third.outcomes] == ["trained"] * 4
    assert len(list((tmp_path / "runs" / "study" / "none").glob("seed-0.old-*"))) == 1  # kept, not deleted


def test_partial_run_is_continued_to_the_same_result(tiny_config, tmp_path):
    exp = load_experiment(write_study(tmp_path, tiny_config))
    spec = plan(exp)[0]
    stop = StopFlag()
    calls = {"n": 0}

    def stop_after_twenty_steps():
        calls["n"] += 1
        if calls["n"] > 20:
            stop.signum = 15
        return stop()

    outcome = run_one(config_to_dict(spec.config), str(spec.run_dir), spec.label, stop=stop_after_twenty_steps)
    assert outcome["status"] == "interrupted" and run_status(spec) == "partial"
    result = compare(exp, log=lambda _: None)
    assert result.outcomes[0]["status"] == "resumed"
    reference = tmp_path / "reference"
    from mlp_lab.train import train

    expected = train(spec.config, reference)
    assert result.outcomes[0]["summary"]["test/acc"] == expected["test/acc"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(rundir.read_metrics(spec.run_dir)) == strip(rundir.read_metrics(reference))


def test_parallel_jobs_give_the_same_results_as_serial(tiny_config, tmp_path):
    # CPU float results depend on the torch thread count, so both sides use one thread per run.
    path = write_study(tmp_path, tiny_config)
    serial = compare(load_experiment(path), jobs=1, threads=1, log=lambda _: None)
    assert [o["status"] for o in serial.outcomes] == ["trained"] * 4
    # The same study into a second output directory, in two worker processes.
    base = tmp_path / "configs" / "tiny.yaml"
    raw = yaml.safe_load(base.read_text())
    raw["output"]["dir"] = str(tmp_path / "runs-parallel")
    base.write_text(yaml.safe_dump(raw))
    parallel = compare(load_experiment(path), jobs=2, threads=1, log=lambda _: None)
    assert [o["status"] for o in parallel.outcomes] == ["trained"] * 4
    for a, b in zip(serial.outcomes, parallel.outcomes):
        assert a["label"] == b["label"]
        assert a["summary"]["test/acc"] == b["summary"]["test/acc"]
        assert a["summary"]["test/loss"] == b["summary"]["test/loss"]
        assert a["summary"]["threads"] == b["summary"]["threads"] == 1
    runs = lambda root: sorted(p.relative_to(root) for p in root.glob("study/*/seed-*"))  # noqa: E731
    assert runs(tmp_path / "runs") == runs(tmp_path / "runs-parallel")
    for run in runs(tmp_path / "runs"):
        strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
        assert strip(rundir.read_metrics(tmp_path / "runs" / run)) == strip(rundir.read_metrics(tmp_path / "runs-parallel" / run))


def test_failed_run_is_reported_and_others_continue(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config, factor="train.optimizer",
                       arms={"none": {}, "explode": {"train.optimizer": {"name": "sgd", "lr": 1.0e6}}})
    result = compare(load_experiment(path), log=lambda _: None)
    statuses = [o["status"] for o in result.outcomes]
    assert statuses[:2] == ["trained", "trained"] and statuses[2:] == ["failed", "failed"]
    assert "diverged" in result.failures[0]["error"]
    from mlp_lab.report import build_report

    report = build_report(load_experiment(path))
    explode = report["arms"][1]
    assert explode["failed_seeds"] == [0, 1] and explode["test_acc_mean"] is None
    assert explode["verdict"] == "no shared seeds"
    assert "`explode`: seeds 0, 1 failed" in (tmp_path / "runs" / "study" / "report.md").read_text()
