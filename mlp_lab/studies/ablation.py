"""Ablation studies: one factor changed at a time against a reference arm, same split, same seeds.

A study file (``experiments/<name>.yaml``) names a base config, the factor (dotted keys
the arms may change), the reference arm, the seeds, shared overrides and the arms. `compare`
runs every arm x seed into ``<output.dir>/<study>/<arm>/seed-<n>/``, skipping finished runs
of the same config, continuing partial ones, in parallel processes if asked.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlp_lab.config.load import validate_config
from mlp_lab.config.overrides import apply_overrides, flatten
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.config.specfile import read_spec_file
from mlp_lab.config.targets import anchored
from mlp_lab.core.errors import ConfigError, clip
from mlp_lab.core.yamlfile import read_yaml_mapping
from mlp_lab.execution.executors import Executor, local_executor
from mlp_lab.execution.procedure import RunOutcome, RunSpec
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.training.context import RunContext

STUDIES_DIR = "experiments"


class StudyFile(BaseModel):
    """The schema of a study YAML file."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    description: str = ""
    base: str  # path to the base config, relative to the study file
    factor: list[str] = Field(min_length=1)  # dotted keys (and everything under them) arms may change
    one_factor_per_arm: bool = False  # several factors, but each arm changes keys under one of them only
    reference: str
    seeds: list[int] = Field(min_length=1)
    overrides: dict[str, Any] = {}  # applied to every arm before its own changes
    arms: dict[str, dict[str, Any] | None] = Field(min_length=2)

    @field_validator("factor", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


@dataclass(frozen=True)
class Arm:
    """One arm: its name, the dotted changes it makes, and the resulting config (seed not set)."""

    name: str
    changes: dict[str, Any]
    config: Config


@dataclass(frozen=True)
class Study:
    """A loaded, fully validated study."""

    name: str
    path: Path
    description: str
    factor: list[str]
    reference: str
    seeds: list[int]
    arms: list[Arm]
    output_dir: Path  # <output.dir>/<study name>
    overrides: tuple[str, ...] = ()  # the command line's --set KEY=VALUE, applied to every arm

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


def _under_factor(key: str, factor: Sequence[str]) -> bool:
    return any(key == f or key.startswith(f + ".") for f in factor)


def _factor_of(key: str, factor: Sequence[str]) -> str:
    """The most specific factor a key falls under (factors may nest, e.g. train and train.l1)."""
    return max((f for f in factor if key == f or key.startswith(f + ".")), key=len, default=key)


def _reference_errors(path: Path, raw: dict[str, Any]) -> list[str]:
    # Checked on the raw file too, so a file with a schema error still reports a bad reference.
    reference, arms = raw.get("reference"), raw.get("arms")
    if isinstance(reference, str) and isinstance(arms, dict) and reference not in arms:
        return [
            f"{path}: reference: {clip(repr(reference))} is not one of the arms ({clip(', '.join(map(str, arms)))})"
        ]
    return []


def load_study(
    name_or_path: str | Path,
    seeds: Sequence[int] | None = None,
    studies_dir: str | Path = STUDIES_DIR,
    overrides: Sequence[str] = (),
) -> Study:
    """Load and check a study: arms change only factor keys (with `one_factor_per_arm`, keys
    of one factor each), and every arm's config validates. `overrides` are ``--set KEY=VALUE``
    texts applied to every arm after the file's overrides; they may not touch the factor.

    All problems are reported at once as a ConfigError, each naming the file (or the --set), the
    arm and the key.
    """
    loaded = read_spec_file(name_or_path, studies_dir, "study", StudyFile, overrides, _reference_errors)
    path, spec, base, sources, errors = loaded.path, loaded.spec, loaded.base, loaded.sources, loaded.errors
    for key, desc in sources.items():
        if _under_factor(key, spec.factor) or any(f.startswith(key + ".") for f in spec.factor):
            errors.append(f"{desc}: {key} is this study's factor ({', '.join(spec.factor)}); its arms set it")

    arms: list[Arm] = []
    for arm_name, changes in spec.arms.items():
        flat = flatten(changes or {})
        stray = [k for k in flat if not _under_factor(k, spec.factor)]
        for key in stray:
            errors.append(
                f"{path}: arms.{arm_name}: key {clip(repr(key))} is outside the factor ({', '.join(spec.factor)})"
            )
        touched = sorted({_factor_of(k, spec.factor) for k in flat})
        if spec.one_factor_per_arm and len(touched) > 1:
            errors.append(
                f"{path}: arms.{arm_name}: changes {len(touched)} factors ({', '.join(touched)}); "
                f"one_factor_per_arm allows one"
            )
        if stray or (spec.one_factor_per_arm and len(touched) > 1):
            continue
        merged = copy.deepcopy(base)
        problems: list[str] = []
        # A target or data path in an arm is relative to the study file.
        apply_overrides(merged, anchored(flat, path.parent), f"{path}: arms.{arm_name}", problems)
        if problems:
            errors += problems
            continue
        merged["name"] = f"{path.stem}-{arm_name}"
        try:
            config = validate_config(merged, f"{path}: arms.{arm_name}", sources)
        except ConfigError as exc:
            errors += [e for e in exc.errors if e not in errors]  # a bad --set fails every arm alike: say it once
            continue
        arms.append(Arm(arm_name, flat, config))
    if errors:
        raise ConfigError(errors)
    output_dir = Path(arms[0].config.output.dir) / path.stem
    return Study(
        path.stem,
        path,
        spec.description.strip(),
        spec.factor,
        spec.reference,
        list(seeds) if seeds else spec.seeds,
        arms,
        output_dir,
        tuple(overrides),
    )


def plan(study: Study) -> list[RunSpec]:
    """Every arm x seed, in a stable order (arm by arm, seeds in the given order)."""
    specs = []
    for arm in study.arms:
        for seed in study.seeds:
            config = arm.config.model_copy(update={"seed": seed})
            specs.append(
                RunSpec(
                    f"{arm.name} seed {seed}",
                    config,
                    study.output_dir / arm.name / f"seed-{seed}",
                    {"study": study.name, "arm": arm.name, "seed": str(seed)},
                )
            )
    return specs


@dataclass(frozen=True)
class StudyRun:
    """One planned run of a study as every verb sees it (report, track, register, list): the
    directory's own status, whatever config made it, and how that config differs from the study
    as loaded (the `key=value`s a `--set` of compare gave, say), so a verb can name them."""

    spec: RunSpec
    status: RunStatus  # NEW: not run; STALE: a directory that is no readable run
    differs: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.DONE, RunStatus.FAILED)


def _differences(spec: RunSpec) -> tuple[str, ...]:
    """`key=value` of the run directory's recorded config where it differs from the spec's
    (name and output settings aside: they do not change what is trained)."""
    try:
        recorded = validate_config(read_yaml_mapping(spec.run_dir / rundir.CONFIG_FILE), "", machine=False)
    except (ConfigError, OSError):
        return ("an unreadable config.yaml",)
    ran, planned = (flatten(config_to_dict(c)) for c in (recorded, spec.config))
    return tuple(
        f"{key}={_as_set_value(ran.get(key))}"
        for key in sorted(set(ran) | set(planned))
        if not key.startswith(("name", "output.")) and ran.get(key) != planned.get(key)
    )


def study_runs(study: Study) -> list[StudyRun]:
    """Every planned arm x seed with what its directory holds: the one reading of a study's runs
    that report, track, register and list share. A run made with other settings (compare's
    --set) is the study's run all the same; `differs` says how."""
    runs = []
    for spec in plan(study):
        status = rundir.run_status(spec.run_dir)
        started = status in (RunStatus.DONE, RunStatus.FAILED, RunStatus.PARTIAL)
        differs = _differences(spec) if started and spec.status() == RunStatus.STALE else ()
        runs.append(StudyRun(spec, status, differs))
    return runs


def _as_set_value(value: Any) -> str:
    """A value as a --set would write it (YAML), e.g. train.epochs=1, train.scheduler.name=cosine."""
    if isinstance(value, str) and value and value.replace("_", "").replace("-", "").replace(".", "").isalnum():
        return value
    return json.dumps(value)


def differences_note(study: Study, runs: Sequence[StudyRun]) -> str | None:
    """One line on the runs made with settings the study as loaded does not give (a --set of
    compare), with the --set that matches them; None when every run matches."""
    other = [run for run in runs if run.differs]
    if not other:
        return None
    settings = sorted({d for run in other for d in run.differs})
    shown = ", ".join(settings[:4]) + (f" and {len(settings) - 4} more" if len(settings) > 4 else "")
    given = "the study file and this --set" if study.overrides else "the study file"
    sets = " ".join(f"--set {d}" for d in settings[:4] if "=" in d)
    return f"{len(other)} of {len(runs)} runs of {study.name} were made with {shown}, not as {given} say" + (
        f"; to name them as they ran, add {sets}" if sets else ""
    )


@dataclass
class CompareResult:
    """What `compare` did: one outcome per run it reached, in plan order."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failures(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == RunStatus.FAILED]

    @property
    def busy(self) -> list[RunOutcome]:
        """Runs another process was training at the time (left to it, not trained twice)."""
        return [o for o in self.outcomes if o.status == RunStatus.BUSY]


def compare(
    study: Study,
    jobs: int = 1,
    force: bool = False,
    data_dirs: Sequence[str] = (),
    threads: int | None = None,
    stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> CompareResult:
    """Run every arm x seed of `study`; failed runs are reported and do not stop the others.

    The runs go to `executor`, by default this machine's (`jobs` processes, `threads` torch
    threads each, the CPU cores split between the jobs by default). On the CPU, results are
    bit-identical for the same thread count, whatever executes them.
    """
    specs = plan(study)
    executor = executor or local_executor(jobs, threads, RunContext(log=log))
    total = len(specs)
    outcomes: dict[int, RunOutcome] = {}

    def record(index: int, outcome: RunOutcome) -> None:
        outcomes[index] = outcome
        log(f"[{len(outcomes)}/{total} done, {total - len(outcomes)} left] {outcome.describe()}")

    executor.run(specs, record, data_dirs=data_dirs, force=force, stop=stop)
    ordered = [outcomes[i] for i in sorted(outcomes)]
    interrupted = bool(stop and stop()) or any(o.action == "interrupted" for o in ordered)
    return CompareResult(ordered, interrupted)


def compare_record(study: Study, result: CompareResult, report: dict[str, Any]) -> dict[str, Any]:
    """What `compare` did as one JSON-able dict (`compare --json`): the study, its report (as
    report.json) and one entry per run reached, in plan order, with its arm, seed and directory."""
    specs = {spec.label: spec for spec in plan(study)}
    runs = []
    for outcome in result.outcomes:
        spec = specs.get(outcome.label)
        runs.append(
            {
                "label": outcome.label,
                "arm": spec.arm if spec else None,
                "seed": spec.seed if spec else None,
                "run_dir": str(spec.run_dir) if spec else None,
                "status": str(outcome.status),
                "action": outcome.action,
                "summary": outcome.summary,
                "error": outcome.error,
                "seconds": outcome.seconds,
                "fault": outcome.fault,
            }
        )
    return {"study": study.name, "output_dir": str(study.output_dir), "report": report, "runs": runs}
