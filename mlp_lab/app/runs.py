"""Run directories as the app lists them: each one's facts, whether a process trains into it
now, and the figures of a finished run for the Runs page.

The facts come from the run's files (through the runs index, `runindex`); whether it is training
is asked live, of its run lock: a process that dies changes none of the run's files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlp_lab.app import launched
from mlp_lab.config.datasets import DATASETS
from mlp_lab.runs import rundir, runindex
from mlp_lab.runs.rundir import RunStatus

EVAL_FILES = ("test_confusion_matrix.png", "test_misclassified.png")


@dataclass
class RunInfo:
    """One run directory as the app lists it."""

    path: Path
    label: str  # the path relative to the runs directory
    status: str  # a RunStatus value, or "running"
    dataset: str = "?"
    hidden_sizes: list[int] = field(default_factory=list)
    parameters: int | None = None
    test_acc: float | None = None
    wall_time_s: float | None = None
    epochs_run: int = 0
    epochs_planned: int | None = None
    augmented: bool = False  # trained on augmented batches (data.augment): a robust model
    model: str | None = None  # a user model's target (my_net.py:Net); None for a built-in family
    pid: int | None = None

    @property
    def study(self) -> str | None:
        """The study (or search) folder a nested run belongs to: its label's first part; None for a run of its own."""
        return study_of(self.label)

    @property
    def architecture(self) -> str:
        """e.g. 784-256-128-10 (a '?' for the ends of a run whose dataset is not known), or a
        user model's target (my_net.py:Net): its layers are its own code's."""
        if self.model:
            return self.model
        facts = DATASETS.get(self.dataset)
        ends = (facts.in_features, facts.num_classes) if facts else ("?", "?")
        return "-".join(map(str, [ends[0], *self.hidden_sizes, ends[1]]))

    def describe(self) -> str:
        """One line for a model picker: name, dataset, architecture, test accuracy."""
        acc = f"test acc {self.test_acc:.2%}" if self.test_acc is not None else "not tested"
        return f"{self.label} ({self.dataset}, {self.architecture}, {acc})"

    def row(self) -> dict[str, Any]:
        """A table row for the Runs page."""
        epochs = f"{self.epochs_run}/{self.epochs_planned}" if self.epochs_planned else str(self.epochs_run)
        return {
            "run": self.label,
            "status": self.status,
            "dataset": self.dataset,
            "model": self.architecture,
            "parameters": self.parameters,
            "epochs": epochs,
            "test acc %": None if self.test_acc is None else round(100 * self.test_acc, 2),
            "time s": None if self.wall_time_s is None else round(self.wall_time_s, 1),
        }


def study_of(label: str) -> str | None:
    """The first part of a nested run's label (``dropout/p0.5/seed-0`` -> ``dropout``); None for a top-level run."""
    return label.split("/", 1)[0] if "/" in label else None


# The pickers' groups besides each study's own: a class's runs sit among dozens of study runs.
ALL_RUNS, OWN_RUNS = "all runs", "runs outside studies"


def run_groups(studies: Sequence[str | None]) -> list[str]:
    """The choices of a group filter over runs of these studies (None: a run of its own), or []
    when there is nothing to group (no study runs)."""
    named = sorted({study for study in studies if study})
    if not named:
        return []
    return ([OWN_RUNS] if None in studies else []) + [f"study: {name}" for name in named] + [ALL_RUNS]


def in_group(study: str | None, group: str | None) -> bool:
    """Whether a run of `study` is shown under `group` (a `run_groups` choice; None: no filter)."""
    if group in (None, ALL_RUNS):
        return True
    if group == OWN_RUNS:
        return study is None
    return group == f"study: {study}"


def group_of(study: str | None, groups: list[str]) -> str | None:
    """The group a run of `study` is listed under first (its study's, else the runs outside studies)."""
    for group in groups:
        if group != ALL_RUNS and in_group(study, group):
            return group
    return groups[0] if groups else None


def running_pid(run_dir: str | Path) -> int | None:
    """The pid of the live process training into `run_dir`, or None.

    The run lock is the one answer (`rundir.RunLock`: the kernel drops it when its holder dies,
    so no pid is guessed at), with one gap: a run this app launched takes its lock only once
    Python has started and imported torch, and until then the app, its parent, knows whether it
    is alive. Its lock is not peeked at meanwhile: a peek takes the lock for an instant, and the
    child taking it at that instant would fail as locked.
    """
    run_dir = Path(run_dir)
    if (run_dir / rundir.SUMMARY_FILE).exists():
        return None
    child = launched.live_child(run_dir)
    if child is not None:
        return child
    lock = rundir.RunLock(run_dir)
    try:
        held, _ = lock.peek()
        owner = lock.path.read_text().split()[:1] if held else []
    except OSError:  # a lock file this user may not open: nothing to tell from it
        return None
    # The holder writes its pid right after taking the lock: for an instant the file has none.
    pid = int(owner[0]) if owner and owner[0].isdigit() else 0
    return pid or None  # never 0: a signal to pid 0 would reach the app's whole process group


def _run_info(run_dir: Path, label: str, facts: dict[str, Any]) -> RunInfo:
    """A RunInfo from a run's file facts (`runindex.read_facts`) and whether it is training now,
    which is checked live: a process that dies changes none of the run's files."""
    status = facts["status"]
    # Only a run without summary.json can be running (`running_pid` checks that first): skip the
    # lock for every finished one.
    pid = running_pid(run_dir) if status not in (RunStatus.DONE.value, RunStatus.FAILED.value) else None
    return RunInfo(
        run_dir,
        label,
        "running" if pid else status,
        pid=pid,
        **{key: value for key, value in facts.items() if key != "status"},
    )


def describe_run(run_dir: str | Path, runs_dir: str | Path | None = None) -> RunInfo:
    """A run directory's status and facts, read from its files (a missing file leaves a '?')."""
    run_dir = Path(run_dir)
    label = str(run_dir.relative_to(runs_dir)) if runs_dir is not None else run_dir.name
    return _run_info(run_dir, label, runindex.read_facts(run_dir))


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run directory under `runs_dir` (any depth: studies nest them), sorted by path.

    Unchanged runs' facts come from the runs index (`runindex`), so a page over 1,000 runs stays
    well under a second; what it lists is what reading every run directory would list.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return [_run_info(*run) for run in runindex.indexed_facts(runs_dir)]


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The run's per-epoch metrics so far (metrics.csv); none while it has none or it cannot be read."""
    try:
        return rundir.read_metrics(Path(run_dir))
    except (OSError, ValueError, KeyError):
        return []


def ensure_evaluation(run_dir: str | Path, data_dirs: Sequence[str] = ()) -> dict[str, Path]:
    """The run's confusion matrix and misclassified grid, computed with `evaluate_run` when absent."""
    run_dir = Path(run_dir)
    paths = {name: run_dir / "eval" / name for name in EVAL_FILES}
    if not paths["test_confusion_matrix.png"].exists():
        from mlp_lab.inspect.evaluation import evaluate_run

        evaluate_run(run_dir, "test", data_dirs)
    return {name: path for name, path in paths.items() if path.exists()}
