"""The Optuna side of a search: the study in its journal file, the sampler and pruner a search
file asks for, and the `PruningHook` that each trial's run reports to. Public Optuna API only.

optuna is imported inside the functions that need it: it is the optional ``[search]`` extra.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from mlp_lab.core.errors import MLPLabError, clip, install_extra
from mlp_lab.search.spec import PrunerSpec, Search

MISSING_EXTRA = f"mlp-lab search needs the [search] extra: {install_extra('search')}"


def require_optuna():
    """The optuna module, or a one-line MLPLabError naming the extra."""
    try:
        import optuna
    except ImportError:
        raise MLPLabError(MISSING_EXTRA) from None
    return optuna


def journal_storage(journal: str | Path):
    """Optuna's journal file storage at `journal`: one file that many processes share."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(journal).parent.mkdir(parents=True, exist_ok=True)
    try:
        _check_journal_lines(Path(journal))
        storage = JournalStorage(JournalFileBackend(str(journal)))
        storage.get_all_studies()  # replays the journal now: damage is one line here, not a trace in a trial
    except Exception as exc:  # Optuna's replay raises whatever a damaged line leads it to
        raise MLPLabError(
            f"{journal}: not a readable Optuna journal ({clip(str(exc) or type(exc).__name__, 60)}); "
            "move it aside to start the search afresh"
        ) from None
    return storage


def _check_journal_lines(journal: Path) -> None:
    """Raise ValueError if a line of `journal` is not JSON. Optuna passes over a broken last line
    (another process may be writing it) and fails only once a line is appended after it, in the
    middle of a search. Read under Optuna's own write lock, no line is being written, so a last
    line without its newline is one a crash cut short."""
    from optuna.storages.journal import JournalFileSymlinkLock

    if journal.is_symlink() and not journal.exists():
        raise ValueError("a symbolic link to a missing file")  # Optuna would start a new study there
    if not journal.is_file():
        return  # none yet (Optuna makes it), or a directory that Optuna reports
    lock = JournalFileSymlinkLock(str(journal))
    lock.acquire()
    try:
        with open(journal, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    raise ValueError(f"line {number} cut short")
                json.loads(line)
    finally:
        lock.release()


def build_pruner(spec: PrunerSpec, max_epochs: int):
    """The Optuna pruner a search file asks for; steps are epochs (1-based)."""
    import optuna

    if spec.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs)
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_epochs, max_resource=max_epochs)
    return optuna.pruners.NopPruner()


def build_sampler(search: Search, trials_so_far: int = 0):
    """The search's sampler, seeded by the file's seed and the number of trials the study holds:
    a continued search must not replay the random start-up points of the first call."""
    import optuna

    seed = search.seed if trials_so_far == 0 else hash((search.seed, trials_so_far)) % 2**31
    if search.sampler == "grid":

        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, study, trial, state, values) -> None:
                # GridSampler stops an `optimize` loop when the grid is used up; this driver has
                # no such loop (it asks and tells) and caps the trials at the grid's size instead.
                pass

        return Grid({p.key: p.grid_values() for p in search.params}, seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def live_trial(study, storage, number: int):
    """Trial `number` of `study` as a live `optuna.trial.Trial` (to report to, set attributes on),
    found through the storage's public API: Optuna hands out trial ids only through ask()."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def open_study(search: Search, storage):
    """Create the search's study in `storage` (its journal), or load it to continue."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=search.name,
        storage=storage,
        sampler=build_sampler(search),
        pruner=build_pruner(search.pruner, search.max_epochs),
        direction=search.direction,
        load_if_exists=True,
    )
    if study.trials:
        study.sampler = build_sampler(search, len(study.trials))
    return study


class PruningHook:
    """The worker side of one trial: reports the validation metric each epoch to the shared study
    and stops the run at the next batch boundary when the pruner says so.

    It carries only paths, names and numbers, so it pickles into any executor's worker; the
    study is reopened from the journal there, on the first epoch.
    """

    def __init__(
        self, journal: str, study_name: str, number: int, metric: str, pruner: dict[str, Any], max_epochs: int
    ):
        # Absolute: the hook may run on another machine, in another working directory.
        self.journal, self.study_name, self.number = os.path.abspath(journal), study_name, number
        self.metric, self.pruner, self.max_epochs = metric, pruner, max_epochs
        self._trial = None
        self.pruned = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trial": None}

    def _open(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = journal_storage(self.journal)
        study = optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            pruner=build_pruner(PrunerSpec(**self.pruner), self.max_epochs),
            sampler=optuna.samplers.RandomSampler(),
        )
        return live_trial(study, storage, self.number)

    def on_epoch(self, record: dict[str, Any]) -> None:
        if self._trial is None:
            self._trial = self._open()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resumed trial may repeat an epoch it had reported
            self._trial.report(float(record[self.metric]), step=int(record["epoch"]))
        self.pruned = self._trial.should_prune()

    def should_stop(self) -> bool:
        return self.pruned
