"""Run directories: the files a run writes, written atomically, and read back.

A run directory describes itself: ``config.yaml`` (resolved), ``metrics.csv`` (one row per
epoch), ``summary.json`` (the outcome), ``checkpoints/{best,last}.pt`` and TensorBoard events.
Everything a report shows is rebuilt from these files alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from enum import Enum
from pathlib import Path
from typing import Any

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import validate_config
from mlp_lab.core.errors import ConfigError, MLPLabError, clip_repr, os_fault
from mlp_lab.config.metrics import METRICS_CSV_COLUMNS
from mlp_lab.core.yamlfile import read_yaml_mapping

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = f"{CHECKPOINT_DIR}/best.pt"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/last.pt"

# Columns that measure time and so differ between otherwise identical runs.
TIMING_COLUMNS = ("seconds",)
# The largest JSON or CSV file read back: a summary is a few KB and metrics.csv a line an epoch;
# a file far bigger is not one the tool wrote, and reading it whole would only spend memory.
MAX_READ_BYTES = 64 << 20
# The numbers a report, a listing and the registry read from a completed run's summary.json.
SUMMARY_NUMBERS = (
    "test/acc",
    "test/loss",
    "best/val_acc",
    "best/val_loss",
    "best_epoch",
    "epochs_run",
    "num_parameters",
    "wall_time_s",
)


class UnreadableFile(MLPLabError, ValueError):
    """A file the tool wrote and reads back is damaged (truncated, garbage, the wrong shape, a
    directory, far too big): one line naming it. A ValueError too, so a reader that treats a torn
    file as absent (a run not finished yet, a cache to rebuild) catches it as it did a JSON error."""


class RunStatus(str, Enum):
    """Where a run directory stands: the one vocabulary of `compare`, `list`, reports and the app."""

    NEW = "new"  # nothing trained yet
    PARTIAL = "partial"  # checkpoints/last.pt of this config: resumable
    DONE = "done"  # summary.json says completed
    FAILED = "failed"  # summary.json records a failure (diverged), or the run raised
    STALE = "stale"  # made with another config
    BUSY = "busy"  # another live process holds the run's lock

    def __str__(self) -> str:
        return self.value


def not_a_run_directory(path: str | Path) -> MLPLabError:
    """The error for a path without a config.yaml; a study's folder (runs/<study>/<arm>/seed-N)
    is recognised, and the message names one of its runs and the study's report."""
    path = Path(path)
    runs = sorted(path.glob(f"*/seed-*/{CONFIG_FILE}")) if path.is_dir() else []
    if runs:
        return MLPLabError(
            f"{path}: a study's folder, not a run directory; give one of its runs, e.g. {runs[0].parent}, "
            f"or see the study: mlp-lab report {path.name}"
        )
    return MLPLabError(f"{path}: not a run directory (no {CONFIG_FILE})")


def run_status(run_dir: str | Path, want_hash: str | None = None) -> RunStatus:
    """The status of `run_dir`, read from its files. With `want_hash`, a run made with another
    config is STALE; without it, whatever config the directory holds is taken as its own."""
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY_FILE
    if summary_path.exists():
        try:
            summary = read_summary(run_dir)
        except (OSError, ValueError):
            return RunStatus.STALE  # not a finished run: compare moves it aside and trains again
        if want_hash is not None and summary.get("config_hash") != want_hash:
            return RunStatus.STALE
        return RunStatus.DONE if summary.get("status") == "completed" else RunStatus.FAILED
    config_path = run_dir / CONFIG_FILE
    if (run_dir / LAST_CHECKPOINT).exists() and config_path.exists():
        if want_hash is None:
            return RunStatus.PARTIAL
        try:
            recorded = validate_config(read_yaml_mapping(config_path), str(config_path), machine=False)
        except ConfigError:
            return RunStatus.STALE
        return RunStatus.PARTIAL if config_hash(recorded) == want_hash else RunStatus.STALE
    return RunStatus.STALE if run_dir.exists() and any(run_dir.iterdir()) else RunStatus.NEW


def fresh_run_dir(output_dir: str | Path, name: str) -> tuple[Path, bool]:
    """A run directory under `output_dir` that does not exist yet: `name`, else `name-2`, ...

    Returns the path and whether the name had to change. The directory is created here, so
    two processes asking at once cannot get the same one.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise MLPLabError(f"output.dir: {output_dir} is a file, expected a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_fault(exc, key="output.dir") from None
    candidate, n = output_dir / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate, n > 1
        except FileExistsError:
            n += 1
            candidate = output_dir / f"{name}-{n}"
        except OSError as exc:
            raise os_fault(exc, key="output.dir") from None


def lock_path(run_dir: str | Path) -> Path:
    """The lock file of a run directory: the sibling `.<name>.lock` (see `RunLock`)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def remove_if_empty(run_dir: str | Path) -> bool:
    """Remove a run directory (and its lock file) that a failed start left empty or never made;
    True if removed."""
    run_dir = Path(run_dir)
    try:
        run_dir.rmdir()
    except FileNotFoundError:
        pass  # the run failed before making it: only the lock file is left to remove
    except OSError:
        return False  # not empty: it holds what the run wrote, e.g. a diverged run's summary
    try:
        lock_path(run_dir).unlink(missing_ok=True)
    except OSError:
        pass  # called while a failure propagates: a lock file left over must not replace it
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that a reader (or a crash) sees either the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temporary file per writer: the app's sessions are threads of one process, and two of
    # them writing the same file (the runs index) must not truncate each other's temporary file.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # A full disk or a signal mid-write: leave the old file, not a partial temporary beside it.
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write() names no file; the message must
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same directory, fsync, then rename over `path`."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty-printed JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_bytes(path: str | Path, limit: int = MAX_READ_BYTES) -> bytes:
    """A file the tool wrote, read whole; a directory, a dangling link or a file over `limit`
    bytes is an UnreadableFile, a file that is not there a FileNotFoundError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except IsADirectoryError:
        raise UnreadableFile(f"{path}: is a directory, expected a file") from None
    except FileNotFoundError:
        if path.is_symlink():
            raise UnreadableFile(f"{path}: a symbolic link to a missing file") from None
        raise
    if len(data) > limit:
        raise UnreadableFile(f"{path}: larger than {limit >> 20} MiB, not a file mlp-lab wrote")
    return data


def read_json(path: str | Path, limit: int = MAX_READ_BYTES) -> Any:
    """Read a JSON file; damage of any kind is one UnreadableFile line naming it."""
    data = read_bytes(path, limit)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        what = "empty" if not data.strip() else f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise UnreadableFile(f"{path}: not valid JSON ({what})") from None
    except RecursionError:
        raise UnreadableFile(f"{path}: not valid JSON (nested too deeply)") from None


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run's summary.json, checked for the shape the tool wrote: a mapping whose status (if
    any) is text and whose SUMMARY_NUMBERS are numbers (all there, for a completed run). Damage
    is an UnreadableFile (its readers count the run as not finished); a missing file a
    FileNotFoundError."""
    path = Path(run_dir) / SUMMARY_FILE
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise UnreadableFile(f"{path}: expected a JSON object, got {type(summary).__name__}")
    if not isinstance(summary.get("status", ""), str):
        raise UnreadableFile(f"{path}: status: expected text, got {clip_repr(summary['status'])}")
    for key in SUMMARY_NUMBERS:
        value = summary.get(key)
        required = summary.get("status") == "completed"
        if (value is not None or required) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UnreadableFile(f"{path}: {key}: expected a number, got {clip_repr(value)}")
    return summary


def metrics_csv_text(history: list[dict[str, Any]]) -> str:
    """The per-epoch history as CSV text with metrics.csv's columns (METRICS_CSV_COLUMNS)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRICS_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """metrics.csv as a list of rows with numeric values (epoch as int); damage (a row cut short,
    text where a number belongs, garbage) is one UnreadableFile line naming the file and row."""
    path = Path(run_dir) / METRICS_FILE
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as exc:
        raise UnreadableFile(f"{path}: not readable CSV ({exc})") from None
    if not reader.fieldnames:
        raise UnreadableFile(f"{path}: empty, not even its header line")
    if "epoch" not in reader.fieldnames:
        raise UnreadableFile(f"{path}: no epoch column in its header; not a metrics file mlp-lab wrote")
    parsed = []
    for line, row in enumerate(rows, 2):
        if None in row or None in row.values():
            raise UnreadableFile(f"{path}: line {line}: not as many values as the header has columns")
        try:
            parsed.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()})
        except ValueError:
            bad = next(k for k, v in row.items() if not _is_number(v, k == "epoch"))
            raise UnreadableFile(f"{path}: line {line}: {bad}: expected a number, got {clip_repr(row[bad])}") from None
    return parsed


def _is_number(text: str, integer: bool) -> bool:
    try:
        int(text) if integer else float(text)
    except ValueError:
        return False
    return True


def run_record(run_dir: str | Path) -> dict[str, Any]:
    """A finished run as one JSON-able dict (`run --json`): its directory, summary.json as it is
    and metrics.csv as a list of per-epoch rows."""
    run_dir = Path(run_dir)
    return {
        "run_dir": str(run_dir),
        "summary": read_summary(run_dir),
        "history": read_metrics(run_dir),
    }


class RunLocked(MLPLabError):
    """Another live process holds the run directory's lock."""

    def __init__(self, run_dir: Path, pid: int):
        self.run_dir, self.pid = run_dir, pid
        super().__init__(f"{run_dir}: another process (pid {pid}) is training into this run directory")


class RunLock:
    """An exclusive lock on one run directory, held while a process trains into it.

    The lock is `flock` on a sibling file `.<name>.lock` (kept outside the directory so it
    survives the directory being moved aside). The kernel drops the lock when its process dies,
    so a lock left by a killed process is taken over without guessing. The file holds the
    owner's pid (and an optional `note`: a Ray task writes its own id there, so a retry of that
    task recognises its dead attempt) and is left in place: deleting a lock file races with new
    takers.
    """

    def __init__(self, run_dir: str | Path, note: str = ""):
        run_dir = Path(run_dir)
        self.run_dir = run_dir
        self.path = lock_path(run_dir)
        self.note = note
        self._fd: int | None = None

    def peek(self) -> tuple[bool, str]:
        """Whether another process holds the lock now, and the note its last holder wrote
        ("" if none). Taken and dropped at once, so the answer may be stale by the time it is read."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False, ""
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                held = True
            parts = os.read(fd, 4096).decode(errors="replace").split(maxsplit=1)
            return held, parts[1].strip() if len(parts) > 1 else ""
        finally:
            os.close(fd)

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = (os.read(fd, 64).decode(errors="replace").split() or [""])[0]
            os.close(fd)
            raise RunLocked(self.run_dir, int(owner) if owner.isdigit() else -1) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.note}".strip().encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
