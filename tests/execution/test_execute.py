"""run_one, the executors, and the library's start-run path: outcomes, locks, and no global state left."""

import signal
import threading

import pytest
import torch
from conftest import metrics_without_timing, write_study

from mlp_lab.core.errors import MLPLabError
from mlp_lab.execution.executors import ProcessPoolExecutor, SerialExecutor, local_executor
from mlp_lab.execution.procedure import RunOutcome, RunSpec, resume_run, run_one, start_run
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.studies.ablation import load_study, plan
from mlp_lab.training.context import RunContext
from mlp_lab.training.trainer import TrainingInterrupted

quiet = RunContext(log=lambda _: None)


def test_a_run_locked_by_another_process_is_left_to_it(tiny_config, tmp_path):
    spec = plan(load_study(write_study(tmp_path, tiny_config)))[0]
    # flock conflicts between two open file descriptions, as between two processes.
    with rundir.RunLock(spec.run_dir):
        outcome = run_one(spec, quiet)
    assert outcome.status == RunStatus.BUSY and outcome.action == "none" and "process" in outcome.error
    assert spec.status() == RunStatus.NEW
    done = run_one(spec, quiet)
    assert (done.status, done.action) == (RunStatus.DONE, "trained") and spec.status() == RunStatus.DONE
    assert done.describe().startswith("none seed 0: done (trained; test/acc ")


def test_status_vocabulary_follows_the_run_directory(tiny_config, tmp_path):
    spec = plan(load_study(write_study(tmp_path, tiny_config)))[0]
    assert spec.status() == RunStatus.NEW and str(RunStatus.NEW) == "new"
    run_one(spec, quiet)
    assert spec.status() == RunStatus.DONE == "done"
    assert rundir.run_status(spec.run_dir, "not-its-hash") == RunStatus.STALE
    assert rundir.run_status(spec.run_dir) == RunStatus.DONE  # no config to compare with: its own


def _numerics_1_hash(config) -> str:
    """The config hash as mlp-lab computed it before the numerics version was part of it."""
    import hashlib
    import json

    from mlp_lab.config.schema import config_to_dict

    payload = config_to_dict(config)
    payload.pop("name")
    payload.pop("output")
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_a_run_finished_under_older_numerics_is_rerun_not_reused(tiny_config, tmp_path):
    from mlp_lab.config.engines import numerics_version

    spec = plan(load_study(write_study(tmp_path, tiny_config)))[0]
    version = numerics_version(spec.config)
    first = run_one(spec, quiet)
    assert first.summary["numerics_version"] == version
    # Turn the finished run into one the previous trainer wrote: its summary has that code's
    # hash and no numerics_version.
    summary_path = spec.run_dir / rundir.SUMMARY_FILE
    old = {k: v for k, v in rundir.read_json(summary_path).items() if k != "numerics_version"}
    old["config_hash"] = _numerics_1_hash(spec.config)
    rundir.write_json(summary_path, old)
    assert spec.status() == RunStatus.STALE
    again = run_one(spec, quiet)
    assert (again.status, again.action) == (RunStatus.DONE, "trained")
    assert rundir.read_json(summary_path)["numerics_version"] == version
    assert [p.name.split(".old-")[0] for p in spec.run_dir.parent.glob("*.old-*")] == [spec.run_dir.name]


def test_serial_executor_reports_in_order_and_restores_the_thread_count(tiny_config, tmp_path):
    specs = plan(load_study(write_study(tmp_path, tiny_config)))
    before = torch.get_num_threads()
    seen: list[tuple[int, RunOutcome]] = []
    executor = SerialExecutor(threads=1, context=quiet)
    executor.run(specs, lambda i, o: seen.append((i, o)))
    assert [i for i, _ in seen] == [0, 1, 2, 3] and all(o.summary["threads"] == 1 for _, o in seen)
    assert torch.get_num_threads() == before
    stopped: list = []
    executor.run(specs, lambda i, o: stopped.append(i), stop=lambda: True)
    assert stopped == []


def test_local_executor_picks_serial_or_a_pool_with_the_cores_split():
    assert isinstance(local_executor(1, 3), SerialExecutor) and local_executor(1, 3).threads == 3
    pool = local_executor(2, None)
    assert isinstance(pool, ProcessPoolExecutor) and pool.jobs == 2 and pool.threads >= 1


def test_start_run_picks_a_fresh_directory_and_leaves_no_global_state(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"})
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    started = []
    first = start_run(cfg, RunContext(threads=1), on_start=lambda d, renamed: started.append((d, renamed)))
    second = start_run(cfg, RunContext(threads=1), on_start=lambda d, renamed: started.append((d, renamed)))
    runs = tmp_path / "runs"
    assert started == [(runs / "tiny", False), (runs / "tiny-2", True)]
    assert (first.run_dir, second.run_dir) == (runs / "tiny", runs / "tiny-2")
    assert first.summary == rundir.read_json(runs / "tiny" / "summary.json") and first.summary["threads"] == 1
    assert metrics_without_timing(first.run_dir) == metrics_without_timing(second.run_dir)
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.utils.deterministic.fill_uninitialized_memory == fill


def test_start_run_works_off_the_main_thread(tiny_config, tmp_path):
    # A Streamlit script or a Ray task does not run on the main thread, where signals live.
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    results, errors = [], []

    def target():
        try:
            results.append(start_run(cfg, RunContext(threads=1)))
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever happened
            errors.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    worker.join(timeout=120)
    assert not errors and results[0].summary["status"] == "completed"


def test_a_run_that_fails_before_writing_leaves_no_directory(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    monkeypatch.setenv("MLP_LAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(MLPLabError, match="mnist"):
        start_run(cfg)
    assert not (tmp_path / "runs" / "tiny").exists() and not rundir.lock_path(tmp_path / "runs" / "tiny").exists()


def test_an_interrupted_start_resumes_to_the_same_result(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu"})
    calls = {"n": 0}

    def stop_mid_run():
        calls["n"] += 1
        return calls["n"] > 20

    with pytest.raises(TrainingInterrupted):
        start_run(cfg, RunContext(stop=stop_mid_run), run_dir=tmp_path / "runs" / "cut")
    assert rundir.run_status(tmp_path / "runs" / "cut") == RunStatus.PARTIAL
    resumed = resume_run(tmp_path / "runs" / "cut")
    whole = start_run(cfg, run_dir=tmp_path / "runs" / "whole")
    assert resumed.summary["test/acc"] == whole.summary["test/acc"]
    assert metrics_without_timing(resumed.run_dir) == metrics_without_timing(whole.run_dir)


class StopAfterFirstEpoch:
    """An epoch hook as a search trial carries one: sees each epoch, asks to stop after the first."""

    def __init__(self):
        self.epochs = []

    def on_epoch(self, record):
        self.epochs.append(record["epoch"])

    def should_stop(self):
        return bool(self.epochs)


def test_a_hook_halts_its_run_and_the_executor_carries_on(tiny_config, tmp_path):
    import dataclasses

    specs = plan(load_study(write_study(tmp_path, tiny_config)))[:2]
    hook = StopAfterFirstEpoch()
    specs[0] = dataclasses.replace(specs[0], hook=hook)
    outcomes = {}
    SerialExecutor(1, quiet).run(specs, outcomes.__setitem__)
    assert (outcomes[0].status, outcomes[0].action) == (RunStatus.PARTIAL, "halted")
    assert hook.epochs == [1] and len(rundir.read_metrics(specs[0].run_dir)) == 1
    assert (outcomes[1].status, outcomes[1].action) == (RunStatus.DONE, "trained")


def _left_on_disk(run_dir):
    """What a path left: the run directory's files (None: no directory) and whether its lock file is there."""
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()) if run_dir.exists() else None
    return files, rundir.lock_path(run_dir).exists()


@pytest.mark.parametrize("case", ["busy", "diverges", "no data"])
def test_mlp_lab_run_and_compare_treat_a_busy_or_failing_run_alike(tiny_config, tmp_path, monkeypatch, case):
    # mlp-lab run goes through start_run, compare (and search, Ray) through run_one: one
    # procedure under both, so the same directory gets the same verdict and the same files.
    train = {"epochs": 2, "batch_size": 32, "device": "cpu"}
    if case == "diverges":
        train["optimizer"] = {"name": "sgd", "lr": 1e6}
    cfg = tiny_config(train=train)
    if case == "no data":
        monkeypatch.setenv("MLP_LAB_DATA", str(tmp_path / "nowhere"))
    by_run, by_compare = tmp_path / "runs" / "by-run", tmp_path / "runs" / "by-compare"
    holders = []
    if case == "busy":  # another process is about to train into each (flock conflicts within one process too)
        for run_dir in (by_run, by_compare):
            run_dir.mkdir(parents=True)
            holders.append(rundir.RunLock(run_dir).acquire())
    try:
        with pytest.raises(MLPLabError) as raised:
            start_run(cfg, RunContext(threads=1), run_dir=by_run)
        outcome = run_one(RunSpec("tiny seed 0", cfg, by_compare), quiet)
    finally:
        for holder in holders:
            holder.release()
    expected = RunStatus.BUSY if case == "busy" else RunStatus.FAILED
    assert outcome.status == expected and isinstance(raised.value, rundir.RunLocked) == (case == "busy")
    if case == "busy":
        assert outcome.error == f"being trained by process {raised.value.pid}"
    else:
        assert outcome.error == str(raised.value).replace(str(by_run), str(by_compare)) and not outcome.fault
    assert _left_on_disk(by_run) == _left_on_disk(by_compare)
    expected_files = {"busy": ([], True), "diverges": (["config.yaml", "summary.json"], True), "no data": (None, False)}
    assert _left_on_disk(by_run) == expected_files[case]
