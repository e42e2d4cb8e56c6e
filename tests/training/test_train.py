"""Trainer on a small synthetic problem: learning, early stopping, best weights, determinism, resume."""

import math

import pytest
import torch
from conftest import assert_resumes_identically, metrics_without_timing

from mlp_lab.config.schema import SchedulerConfig
from mlp_lab.data.load import load_data
from mlp_lab.models.mlp import ParameterizedMLP
from mlp_lab.runs import rundir
from mlp_lab.training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from mlp_lab.training.context import RunContext
from mlp_lab.training.early_stopping import EarlyStopping
from mlp_lab.training.engines.autograd import weight_penalty
from mlp_lab.training.evaluate import evaluate
from mlp_lab.training.runtime import seed_everything
from mlp_lab.training.schedules import Plateau, lr_at
from mlp_lab.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted, train


def test_loss_falls_and_run_directory_describes_itself(tiny_config, tmp_path):
    cfg = tiny_config()
    summary = train(cfg, tmp_path / "run")
    rows = rundir.read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert summary["test/acc"] > 0.8  # the synthetic classes are easy
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    on_disk = rundir.read_json(tmp_path / "run" / "summary.json")
    assert on_disk == summary
    for key in (
        "best_epoch",
        "best/val_acc",
        "best/val_loss",
        "test/loss",
        "test/acc",
        "epochs_run",
        "stopped_early",
        "num_parameters",
        "wall_time_s",
        "seed",
        "device",
        "torch_version",
    ):
        assert key in summary, key
    assert summary["num_parameters"] == 784 * 32 + 32 + 32 * 10 + 10
    assert (summary["engine"], summary["numerics_version"]) == ("hand", 4)  # what ran, with its numerics


def test_same_seed_gives_identical_metrics(tiny_config, tmp_path):
    cfg = tiny_config()
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    assert metrics_without_timing(tmp_path / "a") == metrics_without_timing(tmp_path / "b")
    other = train(tiny_config(seed=1), tmp_path / "c")
    assert metrics_without_timing(tmp_path / "c") != metrics_without_timing(tmp_path / "a")
    assert other["seed"] == 1


def test_early_stopping_stops_patience_epochs_after_the_last_improvement(tiny_config, tmp_path):
    # min_delta is so large that only the first epoch counts as an improvement.
    cfg = tiny_config(
        train={"epochs": 10, "batch_size": 32, "device": "cpu", "early_stopping": {"patience": 2, "min_delta": 100.0}}
    )
    summary = train(cfg, tmp_path / "run")
    assert summary["best_epoch"] == 1
    assert summary["epochs_run"] == 3
    assert summary["stopped_early"] is True
    assert len(rundir.read_metrics(tmp_path / "run")) == 3


def test_early_stopping_counter():
    stopper = EarlyStopping(patience=2, min_delta=0.1, mode="min")
    improved = [stopper.update(v, e) for e, v in enumerate([1.0, 0.95, 0.85, 0.9, 0.8], start=1)]
    assert improved == [True, False, True, False, False]
    assert stopper.best_epoch == 3 and stopper.should_stop
    acc = EarlyStopping(patience=None, min_delta=0.0, mode="max")
    assert [acc.update(v, 1) for v in (0.5, 0.6, 0.6)] == [True, True, False]
    assert not acc.should_stop


def _test_metrics_with(run_dir, checkpoint, data):
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    return evaluate(model_from_checkpoint(load_checkpoint(path, checkpoint), path), data.test)


@pytest.mark.parametrize("restore_best", [True, False])
def test_test_split_uses_the_best_weights(tiny_config, tmp_path, restore_best):
    cfg = tiny_config(
        train={
            "epochs": 4,
            "batch_size": 32,
            "device": "cpu",
            "restore_best": restore_best,
            "optimizer": {"lr": 0.01},
            "early_stopping": {"min_delta": 100.0},
        }
    )
    run = tmp_path / "run"
    summary = train(cfg, run)
    assert summary["best_epoch"] == 1
    data = load_data(cfg.data)
    best, last = _test_metrics_with(run, "best", data), _test_metrics_with(run, "last", data)
    assert best != last
    expected = best if restore_best else last
    assert (summary["test/loss"], summary["test/acc"]) == pytest.approx(expected, rel=1e-9)
    assert summary["test_weights"] == ("best" if restore_best else "last")


@pytest.mark.parametrize(
    "model, chunk",
    [({}, None), ({"input_dropout": 0.2, "hidden_sizes": [16, 8]}, 4), ({"batch_norm": True}, None)],
    ids=["hand-step", "hand-step-mask-chunks-of-4", "autograd-batchnorm"],
)
@pytest.mark.slow
def test_interrupted_run_resumes_to_the_identical_result(tiny_config, tmp_path, model, chunk, monkeypatch):
    if chunk:  # the interrupt then falls inside a later chunk of dropout masks than the first
        monkeypatch.setattr("mlp_lab.training.engines.hand.CHUNK_STEPS", chunk)
    cfg = tiny_config(
        model={**{"hidden_sizes": [32], "dropout": 0.1}, **model},
        train={"epochs": 3, "batch_size": 32, "device": "cpu", "scheduler": {"name": "cosine"}},
    )
    assert_resumes_identically(cfg, tmp_path)


def test_refuses_to_train_over_an_existing_run(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    train(cfg, tmp_path / "run")
    with pytest.raises(Exception, match="already holds a run"):
        train(cfg, tmp_path / "run")
    # resuming a finished run returns its summary without training
    assert train(cfg, tmp_path / "run", resume=True)["epochs_run"] == 1


def test_resume_with_another_config_is_refused(tiny_config, tmp_path):
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(), tmp_path / "run", context=RunContext(stop=lambda: True))
    with pytest.raises(CheckpointError, match="different config"):
        train(tiny_config(seed=5), tmp_path / "run", resume=True)


def test_resuming_a_run_interrupted_under_older_numerics_is_refused_with_the_reason(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"})
    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "run", context=RunContext(stop=lambda: True))
    # What an interrupted run of the previous trainer left: the same config, another hash.
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["config_hash"] = "0123456789abcdef"
    del ckpt["numerics_version"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="numerics version 1, this mlp-lab's hand engine trains under version 4"):
        train(cfg, tmp_path / "run", resume=True)


def test_divergence_is_recorded_and_stops(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu", "optimizer": {"name": "sgd", "lr": 1e6}})
    with pytest.raises(TrainingDiverged, match="diverged"):
        train(cfg, tmp_path / "run")
    summary = rundir.read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "diverged" and summary["failed_epoch"] >= 1


def test_l1_l2_penalties_on_weights_only():
    w = [torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0]])]
    assert weight_penalty(w, 0.0, 0.0) is None
    assert weight_penalty(w, 0.5, 0.0).item() == pytest.approx(0.5 * 6)
    assert weight_penalty(w, 0.0, 0.1).item() == pytest.approx(0.1 * 14)
    model = ParameterizedMLP(4, [3], 2, batch_norm=True)
    assert all(p.dim() == 2 for p in model.penalized_weights())


def test_l2_shrinks_weights(tiny_config, tmp_path):
    plain = tiny_config()
    strong = tiny_config(train={"epochs": 4, "batch_size": 32, "device": "cpu", "l2": 0.05})
    train(plain, tmp_path / "plain")
    train(strong, tmp_path / "l2")

    def norm(run):
        state = load_checkpoint(run / "checkpoints" / "last.pt", "last")["model"]
        return sum(v.pow(2).sum().item() for k, v in state.items() if k.endswith("weight"))

    assert norm(tmp_path / "l2") < 0.5 * norm(tmp_path / "plain")


def test_label_smoothing_changes_training_but_not_the_reported_loss(tiny_config, tmp_path):
    smoothing = 0.5
    plain = train(tiny_config(), tmp_path / "plain")
    smooth = train(
        tiny_config(train={"epochs": 4, "batch_size": 32, "device": "cpu", "label_smoothing": smoothing}),
        tmp_path / "smooth",
    )
    assert metrics_without_timing(tmp_path / "smooth") != metrics_without_timing(tmp_path / "plain")
    assert smooth["test/acc"] > 0.8
    # The smoothed loss can never fall below the entropy of the smoothed targets; the plain
    # cross-entropy, which is what train/loss reports, can and does on this easy problem.
    k = 10
    target = torch.full((k,), smoothing / k)
    target[0] += 1 - smoothing
    floor = -(target * target.log()).sum().item()
    rows = rundir.read_metrics(tmp_path / "smooth")
    assert rows[-1]["train/loss"] < floor
    assert plain["test/acc"] > 0.8


def test_lr_schedules():
    cosine = SchedulerConfig(name="cosine", min_lr=0.0)
    assert lr_at(cosine, 1.0, 0, 10, 10) == 1.0
    assert lr_at(cosine, 1.0, 50, 10, 10) == pytest.approx(0.5)
    assert lr_at(cosine, 1.0, 99, 10, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    warm = SchedulerConfig(name="cosine", warmup_epochs=1)
    assert [lr_at(warm, 1.0, s, 4, 5) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    step = SchedulerConfig(name="step", step_size=2, gamma=0.5)
    assert [lr_at(step, 1.0, e * 10, 10, 6) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert lr_at(SchedulerConfig(), 0.3, 123, 10, 20) == 0.3


def test_lr_is_logged_every_epoch(tiny_config, tmp_path):
    cfg = tiny_config(
        train={
            "epochs": 4,
            "batch_size": 32,
            "device": "cpu",
            "scheduler": {"name": "step", "step_size": 2, "gamma": 0.1},
        }
    )
    train(cfg, tmp_path / "run")
    lrs = [r["lr"] for r in rundir.read_metrics(tmp_path / "run")]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def test_plateau_scales_after_more_than_patience_bad_epochs():
    plateau = Plateau(factor=0.5, patience=2, mode="min")
    for value in (1.0, 0.9):  # improving: no change
        plateau.update(value)
    assert plateau.scale == 1.0 and plateau.best == 0.9
    for value in (0.95, 0.9):  # two epochs without improvement (equal is not better): patience not exceeded
        plateau.update(value)
    assert plateau.scale == 1.0 and plateau.bad_epochs == 2
    plateau.update(0.91)  # the third: halve, and count again from zero
    assert plateau.scale == 0.5 and plateau.bad_epochs == 0
    for value in (0.92, 0.93, 0.94):
        plateau.update(value)
    assert plateau.scale == 0.25
    plateau.update(0.5)  # a new best resets the count, the scale stays
    assert plateau.scale == 0.25 and plateau.bad_epochs == 0 and plateau.best == 0.5


def test_plateau_in_max_mode_and_state_round_trip():
    plateau = Plateau(factor=0.1, patience=0, mode="max")
    plateau.update(0.8)
    plateau.update(0.7)  # worse for an accuracy: patience 0 reduces at once
    assert plateau.scale == pytest.approx(0.1)
    copy = Plateau(factor=0.1, patience=0, mode="max")
    copy.load_state_dict(plateau.state_dict())
    assert copy == plateau


def test_plateau_reduces_the_lr_in_training_and_respects_min_lr(tiny_config, tmp_path):
    # Monitor val/acc on an easy problem: it reaches 1.0 and stalls, so the LR must fall, but
    # never below min_lr.
    cfg = tiny_config(
        train={
            "epochs": 8,
            "batch_size": 32,
            "device": "cpu",
            "optimizer": {"lr": 0.01},
            "early_stopping": {"monitor": "val/acc"},
            "scheduler": {"name": "plateau", "patience": 0, "factor": 0.5, "min_lr": 0.003},
        }
    )
    summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    lrs = [r["lr"] for r in rundir.read_metrics(tmp_path / "run")]
    assert lrs[0] == 0.01 and min(lrs) == pytest.approx(0.003)
    assert all(b <= a for a, b in zip(lrs, lrs[1:])), "the plateau scale only ever shrinks"


def test_the_trainer_takes_the_hand_step_for_a_plain_mlp_and_autograd_otherwise(tiny_config, tmp_path):
    assert Trainer(tiny_config(), tmp_path / "a").engine.name == "hand"
    assert Trainer(tiny_config(model={"hidden_sizes": []}), tmp_path / "b").engine.name == "hand"
    assert Trainer(tiny_config(model={"batch_norm": True}), tmp_path / "c").engine.name == "autograd"
    assert Trainer(tiny_config(model={"activation": "gelu"}), tmp_path / "d").engine.name == "autograd"
    assert Trainer(tiny_config(train={"engine": "autograd"}), tmp_path / "e").engine.name == "autograd"


@pytest.mark.parametrize(
    "model",
    [{"hidden_sizes": [32, 16], "dropout": 0.2, "input_dropout": 0.1}, {"batch_norm": True, "dropout": 0.2}],
    ids=["hand-step", "autograd-batchnorm"],
)
def test_no_step_reads_memory_it_never_wrote(tiny_config, tmp_path, model, monkeypatch):
    # seed_everything turns off torch's NaN fill of new tensors (a pass over every output); a run
    # with the fill back on must give the same numbers, or some op reads uninitialised memory.
    cfg = tiny_config(model=model, train={"epochs": 2, "batch_size": 32, "device": "cpu"})
    train(cfg, tmp_path / "without-fill")

    def seed_with_fill(s: int) -> None:
        seed_everything(s)
        torch.utils.deterministic.fill_uninitialized_memory = True

    monkeypatch.setattr("mlp_lab.training.trainer.seed_everything", seed_with_fill)
    train(cfg, tmp_path / "with-fill")
    assert metrics_without_timing(tmp_path / "with-fill") == metrics_without_timing(tmp_path / "without-fill")


@pytest.mark.parametrize("model", [{"dropout": 0.1}, {"batch_norm": True}], ids=["hand-step", "autograd-batchnorm"])
def test_batches_sliced_from_a_several_batch_gather_train_as_batches_gathered_one_by_one(
    tiny_config, tmp_path, model, monkeypatch
):
    # 100 rows per gather at batch size 32: three batches a gather, and the split's last group and
    # last batch both partial. The same batches must train to the same numbers as one per gather.
    cfg = tiny_config(model={"hidden_sizes": [16], **model}, train={"epochs": 2, "batch_size": 32, "device": "cpu"})
    monkeypatch.setattr("mlp_lab.training.epoch.GATHER_ROWS", 100)
    train(cfg, tmp_path / "grouped")
    monkeypatch.setattr("mlp_lab.training.epoch.GATHER_ROWS", 1)
    train(cfg, tmp_path / "one-by-one")
    assert metrics_without_timing(tmp_path / "grouped") == metrics_without_timing(tmp_path / "one-by-one")


def test_an_epochs_train_loss_and_accuracy_count_every_example_once(tiny_config, tmp_path):
    # Batches of 50 over the 480 training examples, so the last holds 30. With steps too small to
    # move a float32 weight, the epoch's train/loss and train/acc (summed once per epoch from the
    # steps' losses and logits) are the model's own over the train split, each example weighed once.
    cfg = tiny_config(
        model={"hidden_sizes": [16], "dropout": 0.0},
        train={
            "epochs": 1,
            "batch_size": 50,
            "device": "cpu",
            "optimizer": {"name": "sgd", "lr": 1e-12, "momentum": 0.0},
        },
    )
    trainer = Trainer(cfg, tmp_path / "run")
    assert len(trainer.data.train) % 50 != 0
    before = [p.detach().clone() for p in trainer.model.parameters()]
    record = trainer.train_epoch(None)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    loss, acc = evaluate(trainer.model, trainer.data.train)
    assert record["train/loss"] == pytest.approx(loss, rel=1e-6)
    assert record["train/acc"] == acc
