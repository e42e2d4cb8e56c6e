"""Reliability: interruption, kill -9 and corrupt files lose nothing (bad input: test_errors.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_config, write_idx_dataset, write_study
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.load import validate_config
from mlp_lab.execution.procedure import run_one
from mlp_lab.models.mlp import ParameterizedMLP
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import load_study, plan
from mlp_lab.training.checkpoint import load_checkpoint
from mlp_lab.training.context import RunContext
from mlp_lab.training.trainer import train

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


# Bad input (every verb, every kind of file, --set, CLI arguments) is the matrix in test_errors.py.


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One tiny finished run, shared by the tests that need a run directory."""
    base = tmp_path_factory.mktemp("finished")
    idx = write_idx_dataset(base / "idx")
    cfg = validate_config(
        {
            "name": "tiny",
            "data": {"dataset": "mnist", "root": str(base / "data"), "download": False},
            "model": {"hidden_sizes": [16]},
            "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
            "output": {"dir": str(base), "tensorboard": False},
        },
        "tiny",
    )
    train(cfg, base / "run", context=RunContext(data_dirs=(str(idx),)))
    return base / "run"


# -- corrupt or hostile checkpoints ------------------------------------------------------------


def _copy_run(source: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(source, dest)
    return dest


def test_truncated_checkpoint(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    (run / "summary.json").unlink()  # make it resumable
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    result = runner.invoke(app, ["run", "--resume", str(run)])
    assert result.exit_code == 2 and "not a readable mlp-lab checkpoint" in result.stderr
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    (run / "summary.json").write_text('{"test_weights": "best"}')
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 2 and "best.pt" in result.stderr


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_and_hostile_checkpoints_are_refused(finished_run, tmp_path):
    import pickle

    run = _copy_run(finished_run, tmp_path / "run")
    (run / "summary.json").unlink()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, run / "checkpoints" / "last.pt")
    result = runner.invoke(app, ["run", "--resume", str(run)])
    assert result.exit_code == 2 and "not an mlp-lab last checkpoint" in result.stderr

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(run / "checkpoints" / "last.pt", "wb") as f:
        pickle.dump(Exploit(), f)
    result = runner.invoke(app, ["run", "--resume", str(run)])
    assert result.exit_code == 2 and "not a readable mlp-lab checkpoint" in result.stderr
    assert not marker.exists(), "weights_only=True must never run code from a checkpoint"


def test_wrong_architecture_checkpoint(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    (run / "summary.json").unlink()
    path = run / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = ParameterizedMLP(784, [99], 10).state_dict()
    torch.save(ckpt, path)
    result = runner.invoke(app, ["run", "--resume", str(run)])
    assert result.exit_code == 2 and "weights do not fit this model" in result.stderr


def test_diverged_run_exits_2_and_records_the_failure(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu", "optimizer": {"name": "sgd", "lr": 1e6}})
    path = write_config(tmp_path, cfg, "c.yaml")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "diverged" in result.stderr and "Traceback" not in result.output
    summary = rundir.read_json(tmp_path / "runs" / "tiny" / "summary.json")
    assert summary["status"] == "diverged" and summary["failed_epoch"] == 1


# -- interruption, kill -9 and resume, with real processes -------------------------------------

EPOCHS = 6


@pytest.fixture(scope="module")
def signal_setup(tmp_path_factory):
    """A config big enough that an epoch takes a noticeable fraction of a second, and its
    uninterrupted result (metrics without timing, final weights) to compare against."""
    base = tmp_path_factory.mktemp("signals")
    idx = write_idx_dataset(base / "idx", n_train=3000, n_test=300)
    raw = {
        "name": "sig",
        "seed": 3,
        "data": {"dataset": "mnist", "root": str(base / "data"), "download": False, "val_fraction": 0.1},
        "model": {"hidden_sizes": [256, 256], "dropout": 0.3},
        "train": {"epochs": EPOCHS, "batch_size": 16, "device": "cpu", "scheduler": {"name": "cosine"}},
        "output": {"dir": str(base / "runs"), "tensorboard": True},
    }
    config_path = base / "sig.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    cfg = validate_config(raw, str(config_path))
    reference = base / "reference"
    summary = train(cfg, reference, context=RunContext(data_dirs=(str(idx),)))
    return {"base": base, "idx": idx, "config": config_path, "reference": reference, "summary": summary}


def _metrics(run_dir: Path):
    return [{k: v for k, v in row.items() if k not in rundir.TIMING_COLUMNS} for row in rundir.read_metrics(run_dir)]


def _weights(run_dir: Path):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt", "last")["model"]


def _start(setup, *args) -> subprocess.Popen:
    env = {**os.environ, "MLP_LAB_DATA": str(setup["idx"]), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mlp_lab", "run", *args],
        cwd=setup["base"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_epochs(run_dir: Path, epochs: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "metrics.csv").exists() and len(rundir.read_metrics(run_dir)) >= epochs:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("training did not progress")


def _assert_same_as_reference(setup, run_dir: Path) -> None:
    assert _metrics(run_dir) == _metrics(setup["reference"])
    a, b = _weights(run_dir), _weights(setup["reference"])
    assert all(torch.equal(a[k], b[k]) for k in a), "final weights differ"
    assert rundir.read_json(run_dir / "summary.json")["test/acc"] == setup["summary"]["test/acc"]


@pytest.mark.slow  # spawns training processes
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_at_a_batch_boundary_and_resume_is_identical(signal_setup, sig, code):
    setup = signal_setup
    run_dir = setup["base"] / "runs" / f"sig-{sig.name}"
    process = _start(setup, str(setup["config"]), "--set", f"name=sig-{sig.name}")
    _wait_for_epochs(run_dir, 1, process)
    time.sleep(random.uniform(0.0, 0.3))
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert f"Resume with: mlp-lab run --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    resumed = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    _assert_same_as_reference(setup, run_dir)


@pytest.mark.slow  # spawns training processes
def test_kill_9_at_random_moments_loses_nothing(signal_setup):
    setup = signal_setup
    rng = random.Random(1234)
    for trial in range(3):
        name = f"kill-{trial}"
        run_dir = setup["base"] / "runs" / name
        process = _start(setup, str(setup["config"]), "--set", f"name={name}")
        _wait_for_epochs(run_dir, rng.randint(1, EPOCHS - 2), process)
        time.sleep(rng.uniform(0.0, 0.4))
        process.kill()
        process.communicate()
        # Each checkpoint is the previous or the new complete file, never a torn one.
        for kind in ("last", "best"):
            path = run_dir / "checkpoints" / f"{kind}.pt"
            if path.exists():
                load_checkpoint(path, kind)
        resumed = runner.invoke(app, ["run", "--resume", str(run_dir)])
        assert resumed.exit_code == 0, resumed.output
        _assert_same_as_reference(setup, run_dir)


# -- concurrency --------------------------------------------------------------------------------


def test_lock_of_a_live_process_is_respected_and_a_dead_ones_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom mlp_lab.runs.rundir import RunLock\n"
            f"RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(rundir.RunLocked) as info:
        rundir.RunLock(run_dir).acquire()
    assert info.value.pid == holder.pid
    holder.kill()
    holder.wait()
    lock = rundir.RunLock(run_dir).acquire()  # stale: its process is dead
    lock.release()


def _action(done_line: str) -> str:
    """'[2/6 done, 4 left] none seed 0: done (trained; test/acc 0.91)' -> 'trained'."""
    return done_line.split("(", 1)[1].split(";")[0].rstrip(")")


@pytest.mark.slow  # spawns training processes
def test_two_compares_never_train_the_same_run_twice(tiny_config, tmp_path):
    path = write_study(tmp_path, tiny_config, seeds=[0, 1, 2])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mlp_lab", "compare", str(path)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    done_lines = [line for out, _ in outputs for line in out.splitlines() if " done, " in line]
    trained = [line.split("] ")[1].split(":")[0] for line in done_lines if _action(line) == "trained"]
    assert sorted(trained) == sorted(set(trained)), "a run was trained twice"
    exp = load_study(path)
    # A run one process found busy was being trained by the other, which finished it.
    assert len(trained) == len(plan(exp))
    again = [run_one(s, RunContext(log=lambda _: None)).action for s in plan(exp)]
    assert again == ["skipped"] * len(plan(exp))
    for spec in plan(exp):
        assert len(rundir.read_metrics(spec.run_dir)) == 3


@pytest.mark.slow  # spawns training processes
@pytest.mark.parametrize(
    "jobs, sig, code",
    [(1, signal.SIGINT, 130), (2, signal.SIGTERM, 143)],
    ids=["jobs1-SIGINT", "jobs2-SIGTERM-to-parent-only"],
)
def test_interrupted_compare_finishes_only_what_was_left(tiny_config, tmp_path, jobs, sig, code):
    path = write_study(tmp_path, tiny_config, seeds=[0, 1, 2])
    base = tmp_path / "configs" / "tiny.yaml"
    raw = yaml.safe_load(base.read_text())
    raw["train"]["epochs"] = 12  # long enough runs that the signal lands mid-run
    base.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "mlp_lab", "compare", str(path), "--jobs", str(jobs)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in process.stdout:
        if " done, " in line:  # one run finished: the others are pending or mid-way
            first_label = line.split("] ")[1].split(":")[0]
            break
    process.send_signal(sig)  # the parent alone: it must stop its workers itself
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "partial ones resume" in stderr
    first_spec = next(spec for spec in plan(load_study(path)) if spec.label == first_label)
    first = rundir.read_json(first_spec.run_dir / "summary.json")
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    statuses = [_action(line) for line in again.stdout.splitlines() if " done, " in line]
    assert len(statuses) == 6 and "skipped" in statuses and set(statuses) <= {"skipped", "resumed", "trained"}
    assert statuses.count("skipped") < 6, "the interrupted compare had nothing left to do"
    # What was finished before the signal is kept as it was, not trained again.
    assert rundir.read_json(first_spec.run_dir / "summary.json") == first
