"""The seeded trainer: one run from a Config to a run directory and a summary dict.

The whole dataset sits on the device; each epoch shuffles with a permutation seeded by
(seed, epoch) and takes index slices (`epoch`). Each batch is trained by the config's step engine
(`engines`: the hand-written step or autograd). Metrics accumulate on the device and are read once
per epoch, so the hot loop never waits on the host. ``checkpoints/last.pt`` holds everything a
resume needs, so an interrupted run continues to the same result as an uninterrupted one.
What runs `train` under a run directory's lock, for every caller, is `execution.procedure.run_locked`.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.metrics import METRICS_CSV_COLUMNS
from mlp_lab.config.schema import Config, config_to_dict, config_to_yaml
from mlp_lab.core.errors import MLPLabError
from mlp_lab.data.augment import Augmenter
from mlp_lab.data.load import Data, load_data
from mlp_lab.models.registry import build_model
from mlp_lab.runs import rundir
from mlp_lab.training.checkpoint import (
    CheckpointError,
    checkpoint_header,
    data_meta,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from mlp_lab.training.context import RunContext
from mlp_lab.training.early_stopping import EarlyStopping
from mlp_lab.training.engines import build_engine
from mlp_lab.training.epoch import BatchGather, EpochTotals, epoch_permutation, num_batches
from mlp_lab.training.evaluate import evaluate
from mlp_lab.training.loggers import MetricLogger, loggers_for
from mlp_lab.training.runtime import (
    determinism_as_found,
    machine,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from mlp_lab.training.schedules import Plateau, lr_at


class TrainingDiverged(MLPLabError):
    """The loss became NaN or infinite; the run stopped and summary.json records where."""


class TrainingInterrupted(Exception):
    """Training stopped at a batch boundary on request; last.pt holds the state to resume."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        super().__init__(f"interrupted; resume with: mlp-lab run --resume {run_dir}")


@dataclass
class _Progress:
    """Where training stands; saved in last.pt."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed steps within the current epoch (non-zero only after an interrupt)
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # seconds of training so far, across resumes
    finished: bool = False
    stopped_early: bool = False
    partial: dict[str, Any] | None = None  # the current epoch's metric sums, after an interrupt


class Trainer:
    """Trains one config into one run directory. Use `train()` unless you need the pieces."""

    def __init__(self, config: Config, run_dir: str | Path, data: Data | None = None, data_dirs: tuple[str, ...] = ()):
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = resolve_device(config.train.device)
        seed_everything(config.seed)
        self.data = data if data is not None else load_data(config.data, self.device, data_dirs)
        if self.data.train.x.device.type != self.device.type:
            raise MLPLabError(f"data is on {self.data.train.x.device}, the run wants {self.device}")
        info = self.data.info
        # The model is built right after seeding so its initial weights depend on the seed alone.
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, info.image_shape, info.num_classes).to(self.device)
        # The engine that trains each batch (`train.engine`, `auto` resolved), and its optimizer.
        self.engine = build_engine(self.model, config, self.device)
        self.optimizer = self.engine.optimizer
        es = config.train.early_stopping
        self.stopper = EarlyStopping.from_config(es)
        sched = config.train.scheduler
        self.plateau = Plateau(sched.factor, sched.patience, self.stopper.mode) if sched.name == "plateau" else None
        self.progress = _Progress()
        self.hash = config_hash(config)
        self.steps_per_epoch = num_batches(len(self.data.train), config.train.batch_size)
        aug = config.data.augment
        # Seeded by (seed, epoch, step) alone, so it needs nothing in last.pt to resume bit-exactly.
        self.augment = Augmenter(aug, info.image_shape, info.mean, info.std, config.seed) if aug.active else None

    # -- checkpoints -------------------------------------------------------------------------

    def _checkpoint(self, kind: str) -> dict[str, Any]:
        return {
            **checkpoint_header(kind, self.config, self.hash, self.model, data_meta(self.data.info)),
            "engine": self.engine.name,
            "numerics_version": self.engine.numerics_version,
        }

    def save_last(self) -> None:
        """checkpoints/last.pt: the weights plus everything a bit-exact resume needs."""
        p = self.progress
        save_checkpoint(
            {
                **self._checkpoint("last"),
                "optimizer": self.optimizer.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau else None,
                "early_stopping": self.stopper.state_dict(),
                "rng": rng_state(),
                "epoch": p.epoch,
                "step": p.step,
                "history": p.history,
                "elapsed": p.elapsed,
                "finished": p.finished,
                "stopped_early": p.stopped_early,
                "partial": p.partial,
            },
            self.run_dir,
        )

    def save_best(self, epoch: int, metrics: dict[str, float]) -> None:
        """checkpoints/best.pt: the weights of the best epoch so far and its metrics."""
        save_checkpoint({**self._checkpoint("best"), "epoch": epoch, "metrics": metrics}, self.run_dir)

    def restore(self) -> None:
        """Continue from checkpoints/last.pt (same config required)."""
        path = self.run_dir / rundir.LAST_CHECKPOINT
        ckpt = load_checkpoint(path, "last")
        if ckpt.get("config_hash") != self.hash:
            if ckpt.get("config") == config_to_dict(self.config):
                raise CheckpointError(
                    f"{path}: was written under numerics version {ckpt.get('numerics_version', 1)}, this mlp-lab's "
                    f"{self.engine.name} engine trains under version {self.engine.numerics_version}; resuming would mix the two: start a new run instead"
                )
            raise CheckpointError(f"{path}: was written for a different config; start a new run instead")
        load_weights(self.model, ckpt["model"], path)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.stopper.load_state_dict(ckpt["early_stopping"])
            if self.plateau:
                self.plateau.load_state_dict(ckpt["plateau"])
            set_rng_state(ckpt["rng"])
            self.progress = _Progress(
                epoch=ckpt["epoch"],
                step=ckpt["step"],
                history=list(ckpt["history"]),
                elapsed=ckpt["elapsed"],
                finished=ckpt["finished"],
                stopped_early=ckpt["stopped_early"],
                partial=ckpt["partial"],
            )
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: incomplete or inconsistent resume state ({exc})") from None

    # -- the loop ----------------------------------------------------------------------------

    def _set_lr(self, global_step: int) -> float:
        cfg = self.config.train
        lr = lr_at(cfg.scheduler, cfg.optimizer.lr, global_step, self.steps_per_epoch, cfg.epochs)
        if self.plateau:
            lr = max(cfg.scheduler.min_lr, lr * self.plateau.scale)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_epoch(self, should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
        """One pass over the training split, resuming mid-epoch if an interrupt left it there:
        returns the epoch's train/loss, train/acc and lr."""
        p, bs, train = self.progress, self.config.train.batch_size, self.data.train
        gather = BatchGather(train, epoch_permutation(len(train), self.config.seed, p.epoch, self.device), bs)
        totals = EpochTotals(gather.labels, bs, p.step, self.device, p.partial)
        self.model.train()
        with self.engine.grad_mode():
            for step, x, y in gather.batches(p.step, self.steps_per_epoch):
                if should_stop is not None and should_stop():
                    p.step, p.partial = step, totals.partial(step * bs)
                    raise TrainingInterrupted(self.run_dir)
                lr = self._set_lr(p.epoch * self.steps_per_epoch + step)
                if totals.lr is None:
                    totals.lr = lr
                if self.augment is not None:
                    x = self.augment(x, p.epoch, step)
                logits, loss = self.engine.step(x, y, p.epoch, step)
                totals.add(logits, loss)
        p.step, p.partial = 0, None
        return totals.metrics(min(self.steps_per_epoch * bs, len(train)))

    def fit(
        self,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        loggers: Sequence[MetricLogger] = (),
    ) -> None:
        """Train until the epochs run out or early stopping fires; checkpoint every epoch."""
        cfg, p = self.config.train, self.progress
        while not p.finished:
            started = time.perf_counter()
            record = {"epoch": p.epoch + 1, **self.train_epoch(should_stop)}
            record["val/loss"], record["val/acc"] = evaluate(self.model, self.data.val)
            record["seconds"] = time.perf_counter() - started
            record = {k: record[k] for k in METRICS_CSV_COLUMNS}
            if not all(math.isfinite(record[k]) for k in ("train/loss", "val/loss")):
                self._fail(record, loggers)
            if not (self.run_dir / rundir.CONFIG_FILE).is_file():
                # Moved or deleted under us: writing on would rebuild a directory that describes nothing.
                raise FileNotFoundError(errno.ENOENT, "the run directory vanished mid-run", str(self.run_dir))
            p.epoch += 1
            p.elapsed += record["seconds"]
            p.history.append(record)
            monitored = record[cfg.early_stopping.monitor]
            if self.stopper.update(monitored, p.epoch):
                self.save_best(p.epoch, {k: record[k] for k in ("val/loss", "val/acc", "train/loss", "train/acc")})
            if self.plateau:
                self.plateau.update(monitored)
            p.stopped_early = self.stopper.should_stop and p.epoch < cfg.epochs
            p.finished = p.epoch >= cfg.epochs or self.stopper.should_stop
            self.save_last()
            rundir.atomic_write_text(self.run_dir / rundir.METRICS_FILE, rundir.metrics_csv_text(p.history))
            for logger in loggers:
                logger.log_epoch(record, p.epoch)
            if on_epoch is not None:
                on_epoch({**record, "epochs": cfg.epochs, "best_epoch": self.stopper.best_epoch})

    def _fail(self, record: dict[str, Any], loggers: Sequence[MetricLogger]) -> None:
        """Record a diverged run in summary.json and stop; best.pt and last.pt stay as they were."""
        epoch = record["epoch"]
        split, value = next((k, record[k]) for k in ("train/loss", "val/loss") if not math.isfinite(record[k]))
        message = (
            f"{split} became {value} in epoch {epoch}: training diverged "
            f"(try a lower train.optimizer.lr, now {self.config.train.optimizer.lr})"
        )
        summary = self._summary_base()
        summary.update(
            {
                "status": "diverged",
                "error": message,
                "failed_epoch": epoch,
                "epochs_run": self.progress.epoch,
                "best_epoch": self.stopper.best_epoch or None,
            }
        )
        rundir.write_json(self.run_dir / rundir.SUMMARY_FILE, summary)
        for logger in loggers:
            logger.log_summary(summary)
        raise TrainingDiverged(f"{self.run_dir}: {message}")

    def _summary_base(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "seed": self.config.seed,
            "config_hash": self.hash,
            "engine": self.engine.name,
            "numerics_version": self.engine.numerics_version,
            "dataset": self.data.info.name,
            "data_source": self.data.info.source,
            "num_parameters": self.model.num_parameters(),
            "device": str(self.device),
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": machine(),
            "monitor": self.config.train.early_stopping.monitor,
        }

    def finish(self, loggers: Sequence[MetricLogger] = ()) -> dict[str, Any]:
        """Restore the best weights (if configured), evaluate on test, write summary.json."""
        p = self.progress
        best_path = self.run_dir / rundir.BEST_CHECKPOINT
        restored = False
        if self.config.train.restore_best and best_path.exists():
            load_weights(self.model, load_checkpoint(best_path, "best")["model"], best_path)
            restored = True
        test_loss, test_acc = evaluate(self.model, self.data.test)
        best = p.history[self.stopper.best_epoch - 1] if self.stopper.best_epoch else p.history[-1]
        summary = self._summary_base()
        summary.update(
            {
                "status": "completed",
                "best_epoch": best["epoch"],
                "best/val_loss": best["val/loss"],
                "best/val_acc": best["val/acc"],
                "test/loss": test_loss,
                "test/acc": test_acc,
                "test_weights": "best" if restored else "last",
                "epochs_run": p.epoch,
                "epochs_planned": self.config.train.epochs,
                "stopped_early": p.stopped_early,
                "wall_time_s": round(p.elapsed, 3),
            }
        )
        rundir.write_json(self.run_dir / rundir.SUMMARY_FILE, summary)
        for logger in loggers:
            logger.log_summary(summary)
        return summary


def train(
    config: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    data: Data | None = None,
    context: RunContext | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Train `config` into `run_dir` and return the summary (also written to summary.json).

    With `resume`, continue from `run_dir/checkpoints/last.pt`; a finished run just returns
    its summary. From the `context`: `stop` is polled at batch boundaries (when it returns True,
    last.pt is written and TrainingInterrupted is raised), `on_epoch` gets each epoch's record,
    metrics go to the loggers the config asks for and those the context's `loggers` open (given
    `tags`), and `data_dirs` are searched when `data` is not given. The caller's
    deterministic-algorithms settings are restored.
    """
    context = context or RunContext()
    run_dir = Path(run_dir)
    summary_path = run_dir / rundir.SUMMARY_FILE
    if resume and summary_path.exists():
        try:
            summary = rundir.read_summary(run_dir)
        except ValueError:  # torn by a crash or a full disk: finishing again rewrites it
            summary = {}
        if summary.get("status") == "completed":
            return summary
    if not resume and (run_dir / rundir.LAST_CHECKPOINT).exists():
        raise MLPLabError(f"{run_dir}: already holds a run; resume it with --resume or pick another directory")
    with determinism_as_found():
        trainer = Trainer(config, run_dir, data=data, data_dirs=context.data_dirs)
        run_dir.mkdir(parents=True, exist_ok=True)
        last = run_dir / rundir.LAST_CHECKPOINT
        if resume and (last.exists() or last.is_symlink()):  # a dangling link is reported, not trained over
            trainer.restore()
        rundir.atomic_write_text(run_dir / rundir.CONFIG_FILE, config_to_yaml(config))
        sinks = loggers_for(config, run_dir, trainer.model, trainer.progress.epoch, tags, context.loggers)
        try:
            for logger in sinks:
                logger.log_config(config)
            trainer.fit(on_epoch=context.on_epoch, should_stop=context.stop, loggers=sinks)
            return trainer.finish(loggers=sinks)
        except TrainingInterrupted:
            trainer.save_last()
            raise
        finally:
            for logger in sinks:
                logger.close()
