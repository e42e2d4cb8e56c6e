"""The run directories under a runs directory, and what each one's files say, found fast.

Reading a run's facts means parsing its config.yaml, summary.json and metrics.csv: about 3 ms a
run, most of it YAML, so 1,000 runs took seconds on every page of the app. The facts are kept in
``<runs>/.index.json``, each with the stamp (inode, mtime, size) of the files they were read
from; a listing stats those files and reads again only the runs whose stamp changed. The run
directories stay the source of truth: a run added, deleted, rewritten or resumed is seen at the
next listing, and an index that is missing, corrupt or from another version is rebuilt. The index
is written atomically (last writer wins) and only when something changed; a runs directory that
cannot be written to still lists, just without the saving.

Whether a process is training into a run now is not a file's fact: the app checks that live.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from mlp_lab.runs import rundir
from mlp_lab.config.schema import AUGMENT_RANGES
from mlp_lab.core.errors import ConfigError
from mlp_lab.core.yamlfile import read_yaml_mapping

INDEX_FILE = ".index.json"
INDEX_VERSION = 1
# The files a run's facts are read from; a change to any of them (or its appearing or going) re-reads the run.
STAMPED_FILES = (rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.SUMMARY_FILE, rundir.LAST_CHECKPOINT)
# Copies of runs kept by the tracking store, not runs: MLflow's artifact store
# (<output.dir>/mlartifacts/<experiment>/<run>/artifacts/config.yaml) and registered models fetched
# for the app (<output.dir>/registry/<name>/v<version>). Listed, each run would appear twice or more.
COPIES_DIRS = frozenset({"mlartifacts", "registry"})
FACT_KEYS = (
    "status",
    "dataset",
    "hidden_sizes",
    "epochs_planned",
    "epochs_run",
    "parameters",
    "test_acc",
    "wall_time_s",
    "augmented",
)


class IndexedRun(NamedTuple):
    """One run as a listing gives it: its directory, its path under the runs directory, its facts."""

    run_dir: Path
    label: str
    facts: dict[str, Any]


def _run_parts(runs_dir: Path) -> list[tuple[str, ...]]:
    """The path parts, under `runs_dir`, of every directory holding a config.yaml (see `find_run_dirs`)."""
    found: list[tuple[str, ...]] = []
    pending: list[tuple[str, ...]] = [()]
    root = str(runs_dir)
    while pending:
        parts = pending.pop()
        try:
            with os.scandir(os.path.join(root, *parts)) as scan:
                entries = list(scan)
        except OSError:  # not readable, or deleted while listing: no runs there
            continue
        for entry in entries:
            if entry.name == rundir.CONFIG_FILE and (entry.is_file() or os.path.exists(entry.path)):
                found.append(parts)
            if not entry.name.startswith(".") and entry.name not in COPIES_DIRS and entry.is_dir(follow_symlinks=False):
                pending.append((*parts, entry.name))
    # By the config's path, as a sorted listing of <runs>/**/config.yaml is (a/b before a, a before a-c).
    return sorted(found, key=lambda parts: (*parts, rundir.CONFIG_FILE))


def find_run_dirs(runs_dir: str | Path) -> list[Path]:
    """Every directory holding a config.yaml under `runs_dir`, at any depth (studies nest them),
    outside dot-directories (``.app``) and the tracking store's copies (COPIES_DIRS), sorted by its
    config's path."""
    runs_dir = Path(runs_dir)
    return [runs_dir.joinpath(*parts) for parts in _run_parts(runs_dir)]


def read_facts(run_dir: str | Path) -> dict[str, Any]:
    """What `run_dir`'s files say (FACT_KEYS): its status, dataset, hidden sizes, epochs planned
    and run, parameters, test accuracy, wall time and whether it trained on augmented batches; a missing or unreadable file leaves its
    facts at their defaults ('?', [], None, 0)."""
    run_dir = Path(run_dir)
    facts: dict[str, Any] = {
        "status": str(rundir.run_status(run_dir)),
        "dataset": "?",
        "hidden_sizes": [],
        "epochs_planned": None,
        "epochs_run": 0,
        "parameters": None,
        "test_acc": None,
        "wall_time_s": None,
        "augmented": False,
    }
    try:
        config = read_yaml_mapping(run_dir / rundir.CONFIG_FILE)
        facts["dataset"] = _dataset_name(config.get("data", {}))
        facts["hidden_sizes"] = list(config.get("model", {}).get("hidden_sizes", []))
        facts["epochs_planned"] = config.get("train", {}).get("epochs")
        augment = config.get("data", {}).get("augment") or {}
        facts["augmented"] = any(bool(augment.get(key)) for key in AUGMENT_RANGES)
    except (ConfigError, AttributeError):
        pass
    try:
        facts["epochs_run"] = len(rundir.read_metrics(run_dir))
    except (OSError, ValueError, KeyError):
        pass
    try:
        summary = rundir.read_summary(run_dir)
        facts["parameters"] = summary.get("num_parameters")
        facts["test_acc"] = summary.get("test/acc")
        facts["wall_time_s"] = summary.get("wall_time_s")
        facts["epochs_run"] = summary.get("epochs_run", facts["epochs_run"])
    except (OSError, ValueError):
        pass
    return facts


def _dataset_name(data: dict[str, Any]) -> Any:
    """The dataset's name as a run's saved config gives it: data.dataset (as written), or its
    source's name (data.source.name, else its file's stem or its target's name, as
    `config.sources` names it)."""
    source = data.get("source")
    if not isinstance(source, dict):
        return data.get("dataset", "?")
    if source.get("name"):
        return str(source["name"])
    if source.get("path"):
        return Path(str(source["path"])).stem
    return str(source.get("target", "?")).rpartition(":")[2] or "?"


def file_stamp(run_dir: Path) -> list[list[int] | None]:
    """(inode, mtime in ns, size) of each of STAMPED_FILES, None where absent. The inode catches
    a file replaced within one mtime tick: every writer of a run's files renames a new file in."""
    stamp: list[list[int] | None] = []
    base = os.fspath(run_dir)  # joined as text: a Path per file costs as much as the stat
    for name in STAMPED_FILES:
        try:
            st = os.stat(os.path.join(base, name))
        except OSError:
            stamp.append(None)
        else:
            stamp.append([st.st_ino, st.st_mtime_ns, st.st_size])
    return stamp


def _load(path: Path) -> dict[str, Any]:
    """The index's entries by run label, or none when it is missing, unreadable or of another version."""
    try:
        index = rundir.read_json(path)
    except (OSError, ValueError):
        return {}
    if not isinstance(index, dict) or index.get("version") != INDEX_VERSION or not isinstance(index.get("runs"), dict):
        return {}
    return index["runs"]


def _cached(entry: Any, stamp: list[list[int] | None]) -> dict[str, Any] | None:
    """An entry's facts if it was read from files with exactly this stamp."""
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        return None
    facts = entry.get("facts")
    return facts if isinstance(facts, dict) and tuple(facts) == FACT_KEYS else None


def _storable(facts: dict[str, Any]) -> bool:
    """Whether the facts come back from JSON exactly as they are (a YAML date or a NaN does not):
    what the index holds must list the same as reading the files."""
    try:
        return repr(json.loads(json.dumps(facts))) == repr(facts)
    except (TypeError, ValueError):
        return False


def indexed_facts(runs_dir: str | Path) -> list[IndexedRun]:
    """Every run in `find_run_dirs` order with its `read_facts`, read from the index where the
    run's files are unchanged since, and the index brought up to date."""
    runs_dir = Path(runs_dir)
    path = runs_dir / INDEX_FILE
    old = _load(path)
    entries: dict[str, Any] = {}
    found = []
    for parts in _run_parts(runs_dir):
        run_dir, label = runs_dir.joinpath(*parts), "/".join(parts) or "."  # "." : the runs directory is a run
        # Stat before reading: a file that changes in between leaves an older stamp, so it is read again.
        stamp = file_stamp(run_dir)
        facts = _cached(old.get(label), stamp)
        if facts is not None:
            entries[label] = old[label]
        else:
            facts = read_facts(run_dir)
            if _storable(facts):
                entries[label] = {"stamp": stamp, "facts": facts}
        found.append(IndexedRun(run_dir, label, facts))
    if entries != old:
        try:
            rundir.atomic_write_text(path, json.dumps({"version": INDEX_VERSION, "runs": entries}))
        except OSError:
            pass  # a cache: a read-only or full runs directory lists all the same, reading every run
    return found
