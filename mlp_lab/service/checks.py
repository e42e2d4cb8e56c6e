"""The checks every front door makes before a run starts: the data directories it was given, the
backend and Ray address, the machine-dependent config errors (a GPU asked for but absent); and
the one message for runs a fault of the machine stopped.

The CLI and the Python API name their options differently (``--data-dir`` and ``data_dirs``),
so each check takes the front door's `Spelling`; the check itself is written here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlp_lab.core.errors import MachineFault, MLPLabError, clip

if TYPE_CHECKING:
    from mlp_lab.config.schema import Config
    from mlp_lab.execution.procedure import RunOutcome
    from mlp_lab.studies.ablation import Study

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Spelling:
    """How a front door names its options in messages."""

    data_dir: str  # the prefix of a data directory's message, before its path
    address: str
    ray: str  # how to ask for the Ray backend


CLI = Spelling(data_dir="--data-dir ", address="--address", ray="--backend ray")
API = Spelling(data_dir="data_dirs: ", address="address", ray="backend='ray'")


def data_dirs(directories: Sequence[str | Path] | str | Path | None, spelling: Spelling = CLI) -> tuple[str, ...]:
    """Extra dataset directories (``--data-dir``, ``data_dirs=``) as the library takes them; one
    that is not a directory is a typo, reported before torch loads. The dataset loader also
    searches ``$MLP_LAB_DATA`` (`data.load.search_locations`); a Ray executor sends it along."""
    if directories is None:
        directories = ()
    elif isinstance(directories, (str, Path)):
        directories = [directories]
    for directory in map(Path, directories):
        if not directory.is_dir():
            raise MLPLabError(
                f"{spelling.data_dir}{clip(str(directory))}: "
                + ("is a file, expected a directory" if directory.exists() else "no such directory")
            )
    return tuple(map(str, directories))


def require_backend(backend: str, address: str | None, spelling: Spelling = CLI) -> None:
    """An unknown backend, a missing [ray] extra, or an address without ray, reported before
    anything is printed or created."""
    if backend not in BACKENDS:
        raise MLPLabError(f"backend {clip(repr(backend))}: choose local or ray")
    if backend == "ray":
        from mlp_lab.execution.ray_executor import check_ray_installed

        check_ray_installed()
    elif address is not None:
        raise MLPLabError(f"{spelling.address} joins a Ray cluster: use it with {spelling.ray}")


def check_config(config: Config, source: str) -> None:
    """Machine-dependent config errors (a GPU asked for but absent), naming `source`."""
    from mlp_lab.training.runtime import check_runtime  # imports torch: only once the input is known good

    check_runtime(config, source)


def check_model(config: Config) -> None:
    """A model known only by building it (a user's target): built once on the CPU, which checks
    its signature and its output's shape. A built-in family's section is checked without torch."""
    if not config.model.checked_by_building:
        return
    from mlp_lab.config.datasets import facts_for
    from mlp_lab.models.registry import build_model  # imports torch and the user's code

    facts = facts_for(config.data)
    if facts is not None:  # a data source whose reader is not imported cannot say its shape here
        build_model(config.model, facts.image_shape, facts.num_classes)


def check_studies(studies: Sequence[Study], backend: str = "local") -> None:
    """`check_config` for every arm of every study, before any run; with ray, the GPUs that
    count are the cluster's, so nothing is checked here."""
    if backend != "local":
        return
    for study in studies:
        for arm in study.arms:
            check_config(arm.config, f"{study.path}: arms.{arm.name}")


def fault_error(outcomes: Sequence[RunOutcome], again: str) -> MachineFault | None:
    """The one error for runs a fault of the machine stopped (a full disk, memory), saying what
    to do (`again`: "run the same command again", "call compare again"); None when none did.
    The runs resume from their last checkpoints once it is fixed."""
    faults = [o for o in outcomes if o.fault]
    if not faults:
        return None
    return MachineFault(
        f"{len(faults)} run(s) stopped by a fault of the machine ({faults[0].error}); fix it, then {again}"
    )
