"""`mlp-lab suite`: every study (or the named ones), skipping finished runs as `compare` does,
then the overview over all of them (runs/index.md and runs/index.html). Its runs go to the
executor `compare` would use (this machine's processes by default, or Ray)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlp_lab.execution.executors import Executor
from mlp_lab.execution.procedure import RunOutcome
from mlp_lab.studies.ablation import CompareResult, Study, compare
from mlp_lab.studies.overview import build_overview


@dataclass
class SuiteResult:
    """What the suite did: one `compare` result per study run, and the overview it wrote."""

    results: dict[str, CompareResult] = field(default_factory=dict)
    overview: dict[str, Any] | None = None
    interrupted: bool = False

    @property
    def failures(self) -> list[RunOutcome]:
        return [f for result in self.results.values() for f in result.failures]

    @property
    def busy(self) -> list[RunOutcome]:
        return [b for result in self.results.values() for b in result.busy]


def run_suite(
    studies: Sequence[Study],
    jobs: int = 1,
    force: bool = False,
    data_dirs: Sequence[str] = (),
    threads: int | None = None,
    stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> SuiteResult:
    """Compare every study in turn, then build the overview; an interruption skips the overview.

    Failed runs do not stop the suite (each study's report shows them), as in `compare`. The
    runs go to `executor`, by default this machine's (`jobs` processes, `threads` each).
    """
    suite = SuiteResult()
    for index, study in enumerate(studies, 1):
        runs = len(study.arms) * len(study.seeds)
        log(
            f"study {index}/{len(studies)} {study.name}: {len(study.arms)} arms x "
            f"{len(study.seeds)} seeds = {runs} runs -> {study.output_dir}"
        )
        result = compare(
            study,
            jobs=jobs,
            force=force,
            data_dirs=data_dirs,
            threads=threads,
            stop=stop,
            log=log,
            executor=executor,
        )
        suite.results[study.name] = result
        if result.interrupted:
            suite.interrupted = True
            return suite
    suite.overview = build_overview(studies)
    return suite
