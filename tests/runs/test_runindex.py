"""The runs index: listing through it is listing every run directory, only faster.

Real runs trained on tiny synthetic data (done, diverged, interrupted and resumed), copied into
trees shaped like studies and searches; real processes listing at once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import write_idx_dataset

from mlp_lab.app import models
from mlp_lab.app import runs as app_runs
from mlp_lab.config.load import validate_config
from mlp_lab.core.errors import MLPLabError
from mlp_lab.execution.procedure import resume_run, start_run
from mlp_lab.runs import rundir, runindex
from mlp_lab.training.context import RunContext
from mlp_lab.training.trainer import TrainingInterrupted


def tiny(root: Path, name: str, **train):
    return validate_config(
        {
            "name": name,
            "data": {"dataset": "mnist", "root": str(root / "data"), "download": False, "val_fraction": 0.2},
            "model": {"hidden_sizes": [16]},
            "train": {"epochs": 3, "batch_size": 64, "device": "cpu", **train},
            "output": {"dir": str(root / "runs"), "tensorboard": False},
        },
        f"{name}.yaml",
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished, one diverged and one interrupted (resumable) run, trained once per module."""
    root = tmp_path_factory.mktemp("trained")
    data = [str(write_idx_dataset(root / "idx", n_train=300, n_test=100))]
    done = start_run(tiny(root, "done"), RunContext(data_dirs=tuple(data), threads=1)).run_dir
    with pytest.raises(MLPLabError, match="diverged"):
        start_run(
            tiny(root, "diverged", optimizer={"name": "sgd", "lr": 1e6}), RunContext(data_dirs=tuple(data), threads=1)
        )
    epochs: list[dict] = []
    with pytest.raises(TrainingInterrupted):
        start_run(
            tiny(root, "partial"),
            RunContext(data_dirs=tuple(data), threads=1, on_epoch=epochs.append, stop=lambda: len(epochs) >= 1),
        )
    runs = root / "runs"
    # The lock names the process that trained it, this one: a pid that has ended says "not running" anywhere.
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    rundir.lock_path(runs / "partial").write_text(str(ended.pid))
    return SimpleNamespace(done=done, diverged=runs / "diverged", partial=runs / "partial", data=data)


def copy_run(source: Path, target: Path) -> Path:
    """A run directory copied with its lock file beside it, as `cp -a` of a runs tree would."""
    shutil.copytree(source, target)
    lock = rundir.lock_path(source)
    if lock.exists():
        shutil.copy2(lock, rundir.lock_path(target))
    return target


def every_directory_read(runs: Path) -> list[app_runs.RunInfo]:
    """The listing without an index: each <runs>/**/config.yaml's directory read from its files."""
    configs = sorted(runs.rglob(rundir.CONFIG_FILE))
    return [
        app_runs.describe_run(config.parent, runs)
        for config in configs
        if not any(part.startswith(".") for part in config.parent.relative_to(runs).parts)
    ]


@pytest.fixture
def runs(trained, tmp_path) -> Path:
    """A runs tree of every kind of run: a study's arms and seeds, a search's trials, a lone run,
    an unreadable summary and config, app bookkeeping and a hidden copy that are not runs."""
    runs = tmp_path / "runs"
    for arm in ("none", "half"):
        for seed in (0, 1):
            copy_run(trained.done, runs / "study" / arm / f"seed-{seed}")
    copy_run(trained.diverged, runs / "search" / "trial-0")
    copy_run(trained.partial, runs / "search" / "trial-1")
    copy_run(trained.done, runs / "search" / "trial-10")
    copy_run(trained.done, runs / "baseline")
    copy_run(trained.done, runs / "baseline-2")
    (copy_run(trained.done, runs / "torn") / rundir.SUMMARY_FILE).write_text('{"status": "compl')
    (copy_run(trained.done, runs / "bad-yaml") / rundir.CONFIG_FILE).write_text("model: [unclosed\n")
    copy_run(trained.done, runs / ".app" / "launched")
    copy_run(trained.done, runs / "study" / ".trash" / "old")
    return runs


def test_find_run_dirs_finds_what_a_recursive_glob_finds(tmp_path):
    runs = tmp_path / "runs"
    for relative in (
        "a/config.yaml",
        "a-c/config.yaml",
        "a/b/config.yaml",
        "a/b/c/d/config.yaml",
        "z/config.yaml",
        ".app/x/config.yaml",
        "s/.hidden/config.yaml",
        "s/t/config.yaml/u/config.yaml",
    ):
        (runs / relative).parent.mkdir(parents=True, exist_ok=True)
        (runs / relative).write_text("name: x\n")  # s/t/config.yaml: a directory, and a run is inside it
    (runs / "broken").mkdir()
    (runs / "broken" / "config.yaml").symlink_to(runs / "nowhere.yaml")  # not there: not a run
    (runs / "linked").symlink_to(runs / "a", target_is_directory=True)  # a glob does not follow it
    expected = [
        config.parent
        for config in sorted(runs.rglob(rundir.CONFIG_FILE))
        if not any(part.startswith(".") for part in config.parent.relative_to(runs).parts)
    ]
    assert runindex.find_run_dirs(runs) == expected
    assert [p.relative_to(runs).as_posix() for p in expected] == [
        "a/b/c/d",
        "a/b",
        "a",
        "a-c",
        "s/t",
        "s/t/config.yaml/u",
        "z",
    ]
    assert runindex.find_run_dirs(tmp_path / "absent") == []


def test_listing_through_the_index_lists_what_reading_every_directory_lists(runs):
    expected = every_directory_read(runs)
    assert {info.status for info in expected} == {"done", "failed", "partial", "stale"}
    assert len(expected) == 11 and not any(".app" in info.label or ".trash" in info.label for info in expected)
    assert not (runs / runindex.INDEX_FILE).exists()
    assert app_runs.list_runs(runs) == expected  # cold: reads every run, writes the index
    index = rundir.read_json(runs / runindex.INDEX_FILE)
    assert index["version"] == runindex.INDEX_VERSION and len(index["runs"]) == len(expected)
    assert app_runs.list_runs(runs) == expected  # warm: from the index
    assert models.finished_runs(runs) == [info for info in expected if info.status == "done"]
    assert [info.label for info in expected][:3] == ["bad-yaml", "baseline", "baseline-2"]
    # `mlp-lab app --runs runs/baseline`: the runs directory is itself the one run.
    assert app_runs.list_runs(runs / "baseline") == every_directory_read(runs / "baseline")
    assert [info.label for info in app_runs.list_runs(runs / "baseline")] == ["."]


def test_a_warm_listing_reads_only_the_runs_whose_files_changed(runs, monkeypatch):
    app_runs.list_runs(runs)
    read = []
    original = runindex.read_facts
    monkeypatch.setattr(runindex, "read_facts", lambda run_dir: read.append(run_dir) or original(run_dir))
    stamp = (runs / runindex.INDEX_FILE).stat().st_mtime_ns
    app_runs.list_runs(runs)
    assert read == [] and (runs / runindex.INDEX_FILE).stat().st_mtime_ns == stamp  # nothing read, nothing written
    # Rewritten as every writer of a run's files does (a new file renamed in), to the same size
    # and with its old mtime put back: only the inode tells.
    path = runs / "baseline" / rundir.SUMMARY_FILE
    before, summary = path.stat(), rundir.read_json(path)
    parameters = summary["num_parameters"]
    rundir.atomic_write_text(
        path, path.read_text().replace(f'"num_parameters": {parameters}', f'"num_parameters": {parameters + 1}')
    )
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    (listed,) = [info for info in app_runs.list_runs(runs) if info.label == "baseline"]
    assert read == [runs / "baseline"] and listed.parameters == parameters + 1


def test_a_run_added_deleted_or_resumed_is_seen_at_the_next_listing(runs, trained):
    app_runs.list_runs(runs)
    copy_run(trained.done, runs / "search" / "trial-2")
    assert "search/trial-2" in [info.label for info in app_runs.list_runs(runs)]
    shutil.rmtree(runs / "study" / "half")
    assert not any(info.label.startswith("study/half") for info in app_runs.list_runs(runs))
    (before,) = [info for info in app_runs.list_runs(runs) if info.label == "search/trial-1"]
    assert (before.status, before.epochs_run, before.test_acc) == ("partial", 1, None)
    resume_run(runs / "search" / "trial-1", RunContext(data_dirs=tuple(trained.data), threads=1))
    (after,) = [info for info in app_runs.list_runs(runs) if info.label == "search/trial-1"]
    assert (after.status, after.epochs_run) == ("done", 3) and after.test_acc is not None
    assert app_runs.list_runs(runs) == every_directory_read(runs)
    assert set(rundir.read_json(runs / runindex.INDEX_FILE)["runs"]) == {
        info.label for info in app_runs.list_runs(runs)
    }


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"version": 1, "runs": {"baseline"',
        b"\xff\xfe not json",
        b"[]",
        b'{"version": 0, "runs": {}}',
        b'{"version": 1, "runs": []}',
    ],
    ids=["empty", "torn", "not-utf8", "a-list", "old-version", "runs-not-a-mapping"],
)
def test_a_corrupt_or_foreign_index_is_rebuilt(runs, content):
    (runs / runindex.INDEX_FILE).write_bytes(content)
    assert app_runs.list_runs(runs) == every_directory_read(runs)
    assert len(rundir.read_json(runs / runindex.INDEX_FILE)["runs"]) == 11


def test_an_entry_that_does_not_match_its_files_is_read_again(runs):
    app_runs.list_runs(runs)
    index = rundir.read_json(runs / runindex.INDEX_FILE)
    index["runs"]["baseline"]["facts"]["test_acc"] = 0.01  # a stamp that is right, facts that lie: trusted
    index["runs"]["baseline-2"]["stamp"][2] = None  # a stamp that is wrong: read again
    index["runs"]["torn"]["facts"] = {"status": "done"}  # facts of another shape: read again
    rundir.write_json(runs / runindex.INDEX_FILE, index)
    listed = {info.label: info for info in app_runs.list_runs(runs)}
    expected = {info.label: info for info in every_directory_read(runs)}
    assert listed["baseline"].test_acc == 0.01  # the index is believed while the files are unchanged
    assert listed["baseline-2"] == expected["baseline-2"] and listed["torn"] == expected["torn"]


def test_an_index_that_cannot_be_written_still_lists_everything(runs):
    (runs / runindex.INDEX_FILE).mkdir()  # a directory where the index file goes
    assert app_runs.list_runs(runs) == every_directory_read(runs)
    assert app_runs.list_runs(runs) == every_directory_read(runs)
    assert not [p for p in runs.iterdir() if ".tmp-" in p.name]


def test_facts_json_cannot_carry_are_listed_but_not_indexed(runs):
    config = runs / "baseline" / rundir.CONFIG_FILE
    config.write_text(config.read_text().replace("dataset: mnist", "dataset: 2020-01-01"))  # YAML: a date
    expected = every_directory_read(runs)
    assert [info.dataset for info in expected if info.label == "baseline"][0].year == 2020
    assert app_runs.list_runs(runs) == expected
    assert "baseline" not in rundir.read_json(runs / runindex.INDEX_FILE)["runs"]
    written = (runs / runindex.INDEX_FILE).stat()
    assert app_runs.list_runs(runs) == expected
    after = (runs / runindex.INDEX_FILE).stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # not rewritten each time


LISTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mlp_lab.runs import runindex
    from mlp_lab.app import runs as app_runs
    runs = Path(sys.argv[1])
    for n in range(30):
        if n % 3 == 0:
            (runs / runindex.INDEX_FILE).unlink(missing_ok=True)
        labels = [info.label for info in app_runs.list_runs(runs)]
        assert labels == sys.argv[2].split(","), labels
    print("ok")
""")


def test_two_processes_listing_and_refreshing_at_once_agree(runs):
    expected = every_directory_read(runs)
    labels = ",".join(info.label for info in expected)
    listers = [
        subprocess.Popen(
            [sys.executable, "-c", LISTER, str(runs), labels],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        for _ in range(2)
    ]
    results = [lister.communicate(timeout=300) for lister in listers]
    assert [lister.returncode for lister in listers] == [0, 0], results
    assert [out for out, _ in results] == ["ok\n", "ok\n"]
    if (runs / runindex.INDEX_FILE).exists():  # the last writer's whole index, never a torn one
        assert len(json.loads((runs / runindex.INDEX_FILE).read_text())["runs"]) == len(expected)
    assert app_runs.list_runs(runs) == expected
    assert not [p for p in runs.iterdir() if ".tmp-" in p.name]
