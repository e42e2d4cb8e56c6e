"""Run directories' file primitives: atomic writers under concurrent writers, the lock file."""

from __future__ import annotations

import os
import threading

import pytest

from mlp_lab.runs import rundir


def test_threads_writing_one_file_at_once_never_fail_or_leave_it_half_written(tmp_path):
    # The app's browser sessions are threads of one process: they may rewrite the runs index at once.
    path, errors = tmp_path / "shared.json", []
    contents = [str(n) * 4096 for n in range(6)]

    def write(text: str) -> None:
        try:
            for _ in range(25):
                rundir.atomic_write_text(path, text)
        except OSError as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(text,)) for text in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert path.read_text() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]  # no temporary file left behind


def test_a_write_that_cannot_land_leaves_no_temporary_file(tmp_path):
    (tmp_path / "summary.json").mkdir()  # a directory where the file goes
    with pytest.raises(OSError):
        rundir.write_json(tmp_path / "summary.json", {"status": "completed"})
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_lock_file_sits_beside_the_run_and_a_failed_start_removes_it(tmp_path):
    run_dir = tmp_path / "runs" / "baseline"
    lock = rundir.RunLock(run_dir, note="task-7").acquire()
    assert lock.path == rundir.lock_path(run_dir) == tmp_path / "runs" / ".baseline.lock"
    assert rundir.lock_path(run_dir).read_text().split() == [str(os.getpid()), "task-7"]
    # A run that failed before making its directory leaves only the lock file: removed too.
    assert rundir.remove_if_empty(run_dir) and not rundir.lock_path(run_dir).exists()
    lock.release()
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{}")
    rundir.RunLock(run_dir).acquire().release()
    # A directory that holds what the run wrote is kept, and so is its lock file.
    assert not rundir.remove_if_empty(run_dir) and rundir.lock_path(run_dir).exists()
