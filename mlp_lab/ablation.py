"""Ablation studies: one factor changed at a time against a reference arm, same split, same seeds.

An experiment file (``experiments/<name>.yaml``) names a base config, the factor (dotted keys
the arms may change), the reference arm, the seeds, shared overrides and the arms. `compare`
runs every arm x seed into ``<output.dir>/<experiment>/<arm>/seed-<n>/``, skipping finished runs
of the same config, continuing partial ones, in parallel processes if asked.
"""

from __future__ import annotations

import copy
import functools
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlp_lab import rundir
from mlp_lab.config import (
    Config,
    ConfigError,
    MLPLabError,
    config_hash,
    config_to_dict,
    flatten,
    read_yaml_mapping,
    set_dotted,
    validate_config,
)

EXPERIMENTS_DIR = "experiments"


class ExperimentFile(BaseModel):
    """The schema of an experiment YAML file."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    base: str  # path to the base config, relative to the experiment file
    factor: list[str] = Field(min_length=1)  # dotted keys (and everything under them) arms may change
    one_factor_per_arm: bool = False  # several factors, but each arm changes keys under one of them only
    reference: str
    seeds: list[int] = Field(min_length=1)
    overrides: dict[str, Any] = {}  # applied to every arm before its own changes
    arms: dict[str, Optional[dict[str, Any]]] = Field(min_length=2)

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
class Experiment:
    """A loaded, fully validated experiment."""

    name: str
    path: Path
    description: str
    factor: list[str]
    reference: str
    seeds: list[int]
    arms: list[Arm]
    output_dir: Path  # <output.dir>/<experiment name>

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


@dataclass(frozen=True)
class RunSpec:
    """One arm x seed: its config (seed and name set) and its run directory."""

    arm: str
    seed: int
    config: Config
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"


def resolve_experiment_path(name_or_path: str | Path, experiments_dir: str | Path = EXPERIMENTS_DIR) -> Path:
    """`early_stopping` -> experiments/early_stopping.yaml; a path is taken as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = Path(experiments_dir) / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in Path(experiments_dir).glob("*.yaml"))
    hint = f"; known: {', '.join(known)}" if known else f"; no experiments in {experiments_dir}/"
    raise MLPLabError(f"{candidate}: no experiment named {str(name_or_path)!r}{hint}")


def _under_factor(key: str, factor: Sequence[str]) -> bool:
    return any(key == f or key.startswith(f + ".") for f in factor)


def _factor_of(key: str, factor: Sequence[str]) -> str:
    """The most specific factor a key falls under (factors may nest, e.g. train and train.l1)."""
    return max((f for f in factor if key == f or key.startswith(f + ".")), key=len, default=key)


def load_experiment(name_or_path: str | Path, seeds: Sequence[int] | None = None,
                    experiments_dir: str | Path = EXPERIMENTS_DIR) -> Experiment:
    """Load and check an experiment: arms change only factor keys (with `one_factor_per_arm`, keys
    of one factor each), and every arm's config validates.

    All problems are reported at once as a ConfigError, each naming the file, the arm and the key.
    """
    path = resolve_experiment_path(name_or_path, experiments_dir)
    raw = read_yaml_mapping(path)
    try:
        spec = ExperimentFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([
            f"{path}: {'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
            for err in exc.errors()
        ]) from None
    errors: list[str] = []
    if spec.reference not in spec.arms:
        errors.append(f"{path}: reference: {spec.reference!r} is not one of the arms ({', '.join(spec.arms)})")
    base_path = (path.parent / spec.base).resolve() if not Path(spec.base).is_absolute() else Path(spec.base)
    try:
        base = read_yaml_mapping(base_path)
    except ConfigError as exc:
        raise ConfigError([f"{path}: base: {e}" for e in exc.errors] + errors) from None
    for key, value in flatten(spec.overrides).items():
        set_dotted(base, key, value)

    arms: list[Arm] = []
    for arm_name, changes in spec.arms.items():
        flat = flatten(changes or {})
        stray = [k for k in flat if not _under_factor(k, spec.factor)]
        for key in stray:
            errors.append(f"{path}: arms.{arm_name}: key {key!r} is outside the factor ({', '.join(spec.factor)})")
        touched = sorted({_factor_of(k, spec.factor) for k in flat})
        if spec.one_factor_per_arm and len(touched) > 1:
            errors.append(f"{path}: arms.{arm_name}: changes {len(touched)} factors ({', '.join(touched)}); "
                          f"one_factor_per_arm allows one")
        if stray or (spec.one_factor_per_arm and len(touched) > 1):
            continue
        merged = copy.deepcopy(base)
        try:
            for key, value in flat.items():
                set_dotted(merged, key, value)
            merged["name"] = f"{path.stem}-{arm_name}"
            config = validate_config(merged, f"{path}: arms.{arm_name}")
        except ValueError as exc:
            errors.append(f"{path}: arms.{arm_name}: {exc}")
            continue
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        arms.append(Arm(arm_name, flat, config))
    if errors:
        raise ConfigError(errors)
    output_dir = Path(arms[0].config.output.dir) / path.stem
    return Experiment(path.stem, path, spec.description.strip(), spec.factor, spec.reference,
                      list(seeds) if seeds else spec.seeds, arms, output_dir)


def plan(experiment: Experiment) -> list[RunSpec]:
    """Every arm x seed, in a stable order (arm by arm, seeds in the given order)."""
    specs = []
    for arm in experiment.arms:
        for seed in experiment.seeds:
            config = arm.config.model_copy(update={"seed": seed})
            specs.append(RunSpec(arm.name, seed, config, experiment.output_dir / arm.name / f"seed-{seed}"))
    return specs


def run_status(spec: RunSpec) -> str:
    """'done', 'failed' (finished but diverged), 'partial' (has last.pt), 'stale' (another config) or 'new'."""
    summary_path = spec.run_dir / rundir.SUMMARY_FILE
    want = config_hash(spec.config)
    if summary_path.exists():
        try:
            summary = rundir.read_json(summary_path)
        except (OSError, ValueError):
            return "stale"
        if summary.get("config_hash") != want:
            return "stale"
        return "done" if summary.get("status") == "completed" else "failed"
    config_path = spec.run_dir / rundir.CONFIG_FILE
    if (spec.run_dir / rundir.LAST_CHECKPOINT).exists() and config_path.exists():
        try:
            recorded = validate_config(read_yaml_mapping(config_path), str(config_path))
        except ConfigError:
            return "stale"
        return "partial" if config_hash(recorded) == want else "stale"
    return "stale" if spec.run_dir.exists() and any(spec.run_dir.iterdir()) else "new"


@functools.lru_cache(maxsize=2)
def _cached_data(data_json: str, device: str, data_dirs: tuple[str, ...]):
    # Per-process cache: every arm of a study shares the dataset, so load it once per worker.
    import json

    from mlp_lab.config import DataConfig
    from mlp_lab.data import load_data

    return load_data(DataConfig.model_validate(json.loads(data_json)), device, data_dirs)


def run_one(config_dict: dict[str, Any], run_dir: str, label: str, data_dirs: tuple[str, ...] = (),
            force: bool = False, stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train (or skip, or continue) one run; never raises for a failed run, returns its outcome.

    Runs in the calling process or in a worker process (arguments are plain data so they pickle).
    """
    from mlp_lab.train import TrainingInterrupted, resolve_device, train

    started = time.perf_counter()
    config = Config.model_validate(config_dict)
    spec = RunSpec(label, config.seed, config, Path(run_dir))

    def outcome(status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> dict[str, Any]:
        return {"label": label, "status": status, "summary": summary, "error": error,
                "seconds": time.perf_counter() - started}

    try:
        lock = rundir.RunLock(spec.run_dir).acquire()
    except rundir.RunLocked as exc:
        return outcome("busy", error=f"being trained by process {exc.pid}")
    try:
        # The status is read under the lock: another process may have just finished this run.
        status = run_status(spec)
        if force and spec.run_dir.exists():
            shutil.rmtree(spec.run_dir)
            status = "new"
        if status in ("done", "failed"):
            summary = rundir.read_json(spec.run_dir / rundir.SUMMARY_FILE)
            return outcome("skipped" if status == "done" else "failed", summary, summary.get("error"))
        if status == "stale":
            # The experiment changed since this run was made: keep the old run, out of the way.
            aside = spec.run_dir.with_name(f"{spec.run_dir.name}.old-{int(time.time())}")
            spec.run_dir.rename(aside)
            print(f"{label}: {spec.run_dir} was made with another config; moved to {aside}", flush=True)
        device = resolve_device(config.train.device)
        data = _cached_data(config.data.model_dump_json(), str(device), tuple(data_dirs))

        def report(record: dict[str, Any]) -> None:
            print(f"{label}  epoch {record['epoch']}/{record['epochs']}  val/acc {record['val/acc']:.4f}  "
                  f"val/loss {record['val/loss']:.4f}", flush=True)

        summary = train(config, spec.run_dir, resume=status == "partial", data=data, on_epoch=report,
                        should_stop=stop)
        return outcome("resumed" if status == "partial" else "trained", summary)
    except TrainingInterrupted:
        return outcome("interrupted", error="interrupted")
    except MLPLabError as exc:
        return outcome("failed", error=str(exc))
    except Exception as exc:  # a bug in one run must not take the study down; keep its trace
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        (spec.run_dir / "error.txt").write_text(traceback.format_exc())
        return outcome("failed", error=f"{type(exc).__name__}: {exc} (traceback in {spec.run_dir / 'error.txt'})")
    finally:
        lock.release()


def estimated_cost(config: Config) -> int:
    """Relative training cost of a run: multiply-accumulates per example x epochs."""
    from mlp_lab.data import DATASETS
    from mlp_lab.model import macs_per_example

    spec = DATASETS[config.data.dataset]
    c, h, w = spec.image_shape
    return macs_per_example(c * h * w, config.model.hidden_sizes, len(spec.classes)) * config.train.epochs


# Set in each worker process by its initializer: the parent's stop event. ProcessPoolExecutor
# hands initializer arguments to a worker only once, so it has to be kept per process.
_WORKER_STOP = None


def _worker_init(threads: int, stop_event) -> None:
    import signal

    import torch

    global _WORKER_STOP
    _WORKER_STOP = stop_event
    torch.set_num_threads(threads)
    # The parent decides when to stop and tells the workers through the event, so a terminal's
    # Ctrl-C (sent to the whole process group) must not kill them. SIGTERM keeps its default:
    # the executor's own clean-up of a broken pool relies on it, and a worker killed by it
    # still leaves an intact last.pt (from its last completed epoch).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_run(args: tuple) -> dict[str, Any]:
    return run_one(*args, stop=_WORKER_STOP.is_set)


@dataclass
class CompareResult:
    """What `compare` did: one outcome per run, in plan order."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [o for o in self.outcomes if o["status"] == "failed"]

    @property
    def busy(self) -> list[dict[str, Any]]:
        """Runs another process was training at the time (left to it, not trained twice)."""
        return [o for o in self.outcomes if o["status"] == "busy"]


def compare(experiment: Experiment, jobs: int = 1, force: bool = False, data_dirs: Sequence[str] = (),
            threads: int | None = None, stop: Callable[[], bool] | None = None,
            log: Callable[[str], None] = print) -> CompareResult:
    """Run every arm x seed of `experiment`; failed runs are reported and do not stop the others.

    Each run uses `threads` torch threads (default: the CPU cores split between the `jobs`).
    On the CPU, results are bit-identical for the same thread count, whatever `jobs` is.
    """
    from mlp_lab.train import available_cores

    specs = plan(experiment)
    threads = threads or max(1, available_cores() // max(1, jobs))
    total = len(specs)
    args = [(config_to_dict(s.config), str(s.run_dir), s.label, tuple(map(str, data_dirs)), force) for s in specs]
    result = CompareResult(outcomes=[{}] * total)
    done = 0

    def record(index: int, outcome: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        result.outcomes[index] = outcome
        summary = outcome["summary"] or {}
        what = f"test/acc {summary['test/acc']:.4f}" if "test/acc" in summary else outcome["error"]
        log(f"[{done}/{total} done, {total - done} left] {outcome['label']}: {outcome['status']} ({what})")

    if jobs <= 1:
        import torch

        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        for index, a in enumerate(args):
            if stop is not None and stop():
                result.interrupted = True
                break
            record(index, run_one(*a, stop=stop))
            result.interrupted = result.interrupted or result.outcomes[index]["status"] == "interrupted"
        torch.set_num_threads(previous_threads)
    else:
        import multiprocessing

        # spawn, not fork: a forked child inherits torch's thread pools and locks in unknown states.
        context = multiprocessing.get_context("spawn")
        stop_event = context.Event()
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                 initargs=(threads, stop_event)) as pool:
            pending = {}
            # Longest first: a big run started last would leave the other workers idle at the end.
            queue = sorted(enumerate(args), key=lambda item: -estimated_cost(specs[item[0]].config))
            while queue or pending:
                while queue and len(pending) < jobs and not (stop and stop()):
                    index, a = queue.pop(0)
                    pending[pool.submit(_worker_run, a)] = index
                if stop and stop() and not result.interrupted:
                    result.interrupted = True
                    queue.clear()
                    for future in pending:
                        future.cancel()
                    # Whether the signal reached only this process or the whole group, the
                    # workers stop at their next batch boundary and save last.pt.
                    stop_event.set()
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    if future.cancelled():
                        continue
                    try:
                        record(index, future.result())
                    except Exception as exc:  # the worker process itself died
                        record(index, {"label": specs[index].label, "status": "failed", "summary": None,
                                       "error": f"worker died: {exc}", "seconds": 0.0})
    result.outcomes = [o for o in result.outcomes if o]
    return result
