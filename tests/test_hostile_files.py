"""Every file the tool reads back, damaged every way a disk, an editor or another person can:
truncated, empty, binary garbage, valid JSON/YAML of the wrong shape or with text where a number
belongs, far too big, a directory in its place, a dangling symbolic link.

Each (file, damage) pair runs through the real CLI against a copy of one finished two-arm study
and must give exactly one `error:` line naming the file (exit 2), or, where the tool can go on
without the file, one `warning:` line and exit 0 (a damaged run in a report counts as not
finished), or, for a cache the tool owns (runs/.index.json, mlflow.json), nothing at all: it is
rebuilt. No case prints a traceback, leaves a temporary file, or loses the finished runs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_idx_dataset
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.runs import rundir, runindex

runner = CliRunner()

RUN = "runs/study/half/seed-0"
TINY = (
    "name: tiny\ndata: {dataset: mnist, root: data, download: false, val_fraction: 0.2}\n"
    "model: {hidden_sizes: [16]}\ntrain: {epochs: 1, batch_size: 64, device: cpu}\n"
    "output: {dir: runs, tensorboard: false}\n"
)
STUDY = (
    "base: ../configs/tiny.yaml\nfactor: model.dropout\nreference: none\nseeds: [0]\n"
    "arms:\n  none: {model.dropout: 0.0}\n  half: {model.dropout: 0.5}\n"
)
SEARCH = (
    "base: ../configs/tiny.yaml\nsampler: random\ntrials: 2\n"
    "params:\n  train.optimizer.lr: {type: float, low: 0.0001, high: 0.1, log: true}\n"
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A folder holding configs/, experiments/, searches/ and runs/: a finished two-arm study
    (1 epoch, seed 0) trained through `mlp-lab compare`, and a search's journal (no trial run)."""
    root = tmp_path_factory.mktemp("finished")
    idx = write_idx_dataset(root / "idx", n_train=200, n_test=50)
    for name, text in (("configs/tiny.yaml", TINY), ("experiments/study.yaml", STUDY), ("searches/s.yaml", SEARCH)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLP_LAB_DATA", str(idx))
        done = runner.invoke(app, ["compare", "study"])
        assert done.exit_code == 0, done.output
        started = runner.invoke(app, ["search", "s", "--timeout", "0"])
        assert started.exit_code == 0, started.output
    assert (root / "runs/s/study.journal").stat().st_size > 0
    return root


def _study_runs(root: Path) -> dict[str, bytes]:
    """The finished runs' result files, to check that no case loses or rewrites one."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in (root / "runs/study").rglob("*")
        if p.is_file() and p.name in ("summary.json", "best.pt", "metrics.csv") and ".old-" not in str(p)
    }


# -- the damage ---------------------------------------------------------------------------------


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def huge(path: Path) -> None:
    """A sparse file past every limit (65 MiB): costs no disk, and reading it whole would cost memory."""
    with open(path, "wb") as f:
        f.truncate(65 << 20)


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")


def dangling(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "gone-away")


def _json(change: Callable[[object], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return apply


def _yaml(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_text(yaml.safe_dump(change(yaml.safe_load(path.read_text()))))

    return apply


def _set(data: dict, dotted: str, value: object) -> dict:
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def _torch(obj: object) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        torch.save(obj, path)

    return apply


def _lines(text: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_text(text)

    return apply


def _metrics_text(path: Path) -> None:
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = "abc"
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")


# -- what reads each file, and what each damage must give ----------------------------------------

# file kind -> (its path in the copy, the command that reads it, a setup before the damage)
READERS: dict[str, tuple[str, list[str], Callable[[Path], None] | None]] = {
    "config.yaml (evaluate)": (f"{RUN}/config.yaml", ["evaluate", RUN], None),
    "summary.json (evaluate)": (f"{RUN}/summary.json", ["evaluate", RUN], None),
    "summary.json (report)": (f"{RUN}/summary.json", ["report", "study"], None),
    "metrics.csv (report)": (f"{RUN}/metrics.csv", ["report", "study"], None),
    "best.pt (evaluate)": (f"{RUN}/checkpoints/best.pt", ["evaluate", RUN], None),
    # A run stopped before it finished (no summary.json) resumes from last.pt.
    "last.pt (run --resume)": (
        f"{RUN}/checkpoints/last.pt",
        ["run", "--resume", RUN],
        lambda root: (root / RUN / "summary.json").unlink(),
    ),
    "study file (compare)": ("experiments/study.yaml", ["compare", "study"], None),
    "study file (report)": ("experiments/study.yaml", ["report", "study"], None),
    "search file (search)": ("searches/s.yaml", ["search", "s", "--timeout", "0"], None),
    "Optuna journal (search)": ("runs/s/study.journal", ["search", "s", "--timeout", "0"], None),
}

DAMAGE: dict[str, dict[str, Callable[[Path], None]]] = {
    "truncated": dict.fromkeys(READERS, truncated),
    "empty": dict.fromkeys(READERS, empty),
    "garbage": dict.fromkeys(READERS, garbage),
    "huge": dict.fromkeys(READERS, huge),
    "directory": dict.fromkeys(READERS, directory),
    "dangling symlink": dict.fromkeys(READERS, dangling),
    "wrong shape": {
        "config.yaml (evaluate)": _lines("- a list\n- not a mapping\n"),
        "summary.json (evaluate)": _json(lambda s: [s]),
        "summary.json (report)": _json(lambda s: [s]),
        "metrics.csv (report)": _lines("just one column\nof text\n"),
        "best.pt (evaluate)": _torch([1, 2, 3]),
        "last.pt (run --resume)": _torch({"kind": "mlp-lab/last"}),
        "study file (compare)": _lines("- base\n- arms\n"),
        "study file (report)": _yaml(lambda s: _set(s, "arms", ["none", "half"])),
        "search file (search)": _yaml(lambda s: _set(s, "params", ["train.optimizer.lr"])),
        "Optuna journal (search)": _lines("[1, 2, 3]\n"),
    },
    "text for a number": {
        "config.yaml (evaluate)": _yaml(lambda c: _set(c, "train.epochs", "many")),
        "summary.json (evaluate)": _json(lambda s: {**s, "status": 1}),
        "summary.json (report)": _json(lambda s: {**s, "test/acc": "high"}),
        "metrics.csv (report)": _metrics_text,
        "best.pt (evaluate)": _torch({"kind": "mlp-lab/best", "version": "one"}),
        "last.pt (run --resume)": _torch({"kind": "mlp-lab/last", "version": "one"}),
        "study file (compare)": _yaml(lambda s: _set(s, "seeds", ["zero"])),
        "study file (report)": _yaml(lambda s: _set(s, "seeds", "all of them")),
        "search file (search)": _yaml(lambda s: _set(s, "trials", "many")),
        "Optuna journal (search)": _lines('{"op_code": "zero", "worker_id": 1}\n'),
    },
}

# Where the command goes on without the file: a warning, exit 0 (the report counts the run as
# not finished). Everywhere else: one error line, exit 2.
WARNS = {"summary.json (report)", "metrics.csv (report)"}
# An empty journal is Optuna's own start of a study: the search begins afresh, silently.
FRESH = {("Optuna journal (search)", "empty")}
# What each error line must name: the file itself, or where the damage leaves no file to name
# (a directory or link in place of the run's config), the run directory and the file it lacks.
NAMES = {
    ("config.yaml (evaluate)", "directory"): "no config.yaml",
    ("config.yaml (evaluate)", "dangling symlink"): "no config.yaml",
}

MATRIX = [(reader, damage) for damage in DAMAGE for reader in READERS]


@pytest.mark.parametrize(("reader", "damage"), MATRIX, ids=[f"{r} x {d}" for r, d in MATRIX])
def test_damaged_file_gives_one_line_naming_it(reader, damage, finished, tmp_path, monkeypatch):
    work = tmp_path / "w"
    shutil.copytree(finished, work, symlinks=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLP_LAB_DATA", str(work / "idx"))
    relative, args, setup = READERS[reader]
    if setup is not None:
        setup(work)
    DAMAGE[damage][reader](work / relative)
    kept = {k: v for k, v in _study_runs(work).items() if not k.startswith(relative)}

    result = runner.invoke(app, args)

    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    if (reader, damage) in FRESH:
        assert result.exit_code == 0 and lines == [], result.output
        return
    warns = reader in WARNS
    assert result.exit_code == (0 if warns else 2), result.output
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: " if warns else "error: "), lines
    assert NAMES.get((reader, damage), Path(relative).name) in lines[0], lines
    if warns:
        seeds = {
            row["arm"]: row["missing_seeds"] for row in json.loads(Path("runs/study/report.json").read_text())["arms"]
        }
        assert seeds == {"none": [], "half": [0]}, seeds
    assert not [p for p in work.rglob("*") if ".tmp-" in p.name], "a temporary file was left"
    # The finished runs the damage did not touch are all still there, byte for byte.
    after = _study_runs(work)
    assert all(after.get(k) == v for k, v in kept.items()), "a finished run was lost or rewritten"


def test_report_counts_a_torn_summary_as_unfinished_and_compare_trains_it_again(finished, tmp_path, monkeypatch):
    """The issue's case: one run's summary.json replaced by `{not json` after the study finished."""
    work = tmp_path / "w"
    shutil.copytree(finished, work, symlinks=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLP_LAB_DATA", str(work / "idx"))
    (work / RUN / "summary.json").write_text("{not json")

    reported = runner.invoke(app, ["report", "study"])
    assert reported.exit_code == 0, reported.output
    assert reported.stderr.strip() == (
        f"warning: {RUN}/summary.json: not valid JSON (line 1, column 2: Expecting property name enclosed in "
        "double quotes); counted as not finished (mlp-lab compare study trains it again)"
    )
    assert "half" in Path("runs/study/report.md").read_text()

    again = runner.invoke(app, ["compare", "study"])
    assert again.exit_code == 0, again.output
    assert "skipped" in again.output and "moved to" in again.output
    assert rundir.read_summary(work / RUN)["status"] == "completed"
    aside = [p for p in (work / RUN).parent.iterdir() if ".old-" in p.name]
    assert len(aside) == 1 and (aside[0] / "summary.json").read_text() == "{not json"  # kept, out of the way
    arms = json.loads(Path("runs/study/report.json").read_text())["arms"]
    assert [row["missing_seeds"] for row in arms] == [[], []]


INDEX_DAMAGE = {
    "truncated": truncated,
    "empty": empty,
    "garbage": garbage,
    "huge": huge,
    "directory": directory,
    "dangling symlink": dangling,
    "wrong shape": _lines("[1, 2]"),
    "text for a number": _lines('{"version": "1", "runs": {}}'),
    "entries of the wrong shape": _lines('{"version": 1, "runs": {"study/half/seed-0": {"stamp": 3, "facts": []}}}'),
}


@pytest.mark.parametrize("damage", list(INDEX_DAMAGE))
def test_damaged_runs_index_is_rebuilt_silently(damage, finished, tmp_path, capsys):
    """runs/.index.json is the listing's cache: damage of any kind lists the same runs as no
    index at all, prints nothing, and (where a file can go there) leaves a good index behind."""
    work = tmp_path / "w"
    shutil.copytree(finished, work, symlinks=True)
    runs = work / "runs"
    expected = [(r.label, r.facts) for r in runindex.indexed_facts(runs)]
    assert len(expected) == 2 and (runs / ".index.json").is_file()
    INDEX_DAMAGE[damage](runs / ".index.json")

    listed = [(r.label, r.facts) for r in runindex.indexed_facts(runs)]

    assert listed == expected
    assert capsys.readouterr() == ("", "")
    if damage != "directory":
        assert json.loads((runs / ".index.json").read_text())["runs"].keys() == {
            "study/half/seed-0",
            "study/none/seed-0",
        }


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "huge", "directory", "wrong shape", "text"])
def test_damaged_mlflow_record_is_read_as_none_and_rewritten(damage, tmp_path):
    """mlflow.json caches which MLflow run a run directory went to; damaged, it reads as no
    record (the export makes a new one) and the next save replaces it whole."""
    from mlp_lab.tracking.logger import RUN_FILE, run_record, save_run_record
    from mlp_lab.tracking.store import store_for

    store = store_for(tmp_path)
    path = tmp_path / RUN_FILE
    save_run_record(tmp_path, store, run_id="abc")
    assert run_record(tmp_path, store) == {"run_id": "abc"}
    writes = {"wrong shape": _lines("[1]"), "text": _lines(json.dumps({store.uri: "abc"}))}
    (writes.get(damage) or DAMAGE[damage]["best.pt (evaluate)"])(path)

    assert run_record(tmp_path, store) == {}
    if damage != "directory":
        save_run_record(tmp_path, store, run_id="def")
        assert run_record(tmp_path, store) == {"run_id": "def"}


def test_no_reader_of_a_files_contents_bypasses_its_one_reader():
    """Each file the tool reads back has one reader: YAML through yamlfile, JSON and CSV through
    rundir (the JSON parser inside them and the index's own round-trip check aside)."""
    package = Path(__file__).resolve().parents[1] / "mlp_lab"
    allowed = {"yamlfile.py": ("safe_load_strict",), "rundir.py": ("json.loads", "DictReader")}
    found = []
    for path in package.rglob("*.py"):
        text = path.read_text()
        for needle in ("yaml.safe_load(", "yaml.load(", "json.loads(", "json.load(", "csv.DictReader(", "csv.reader("):
            if needle in text and not any(n in needle for n in allowed.get(path.name, ())):
                found.append(f"{path.relative_to(package)}: {needle}")
    # runindex checks that facts survive a JSON round trip; search.study reads Optuna's journal lines;
    # data.table reads the user's own CSV data (not a file of ours).
    assert sorted(found) == [
        "data/table.py: csv.reader(",
        "runs/runindex.py: json.loads(",
        "search/study.py: json.loads(",
    ], found
