"""The seeded trainer: one run from a Config to a run directory and a summary dict.

The whole dataset sits on the device; each epoch shuffles with a permutation seeded by
(seed, epoch) and takes index slices. Metrics accumulate on the device and are read once per
epoch, so the hot loop never waits on the host. ``checkpoints/last.pt`` holds everything a
resume needs, so an interrupted run continues to the same result as an uninterrupted one.
What runs `train` under a run directory's lock, for every caller, is `execution.procedure.run_locked`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlp_lab.config.hashing import NUMERICS_VERSION, config_hash
from mlp_lab.config.metrics import METRICS_CSV_COLUMNS
from mlp_lab.config.schema import Config, EarlyStoppingConfig, SchedulerConfig, config_to_dict, config_to_yaml
from mlp_lab.core.errors import MLPLabError
from mlp_lab.data.augment import Augmenter
from mlp_lab.data.load import Data, Split, load_data
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
from mlp_lab.training.flatparams import flatten_parameters
from mlp_lab.training.handstep import HandStep
from mlp_lab.training.loggers import MetricLogger, loggers_for
from mlp_lab.training.optim import OptimizerStep, build_optimizer
from mlp_lab.training.runtime import (
    determinism_as_found,
    machine,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)

EVAL_BATCH_SIZE = 8192
# Training examples gathered per `index_select`, a few batches at once: random rows of the split
# come from memory, not cache, and one call over 1024 of them overlaps their fetches (a baseline
# step's gather, timed inside the trainer: 101 us instead of 118 on the CPU).
GATHER_ROWS = 1024


class TrainingDiverged(MLPLabError):
    """The loss became NaN or infinite; the run stopped and summary.json records where."""


class TrainingInterrupted(Exception):
    """Training stopped at a batch boundary on request; last.pt holds the state to resume."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        super().__init__(f"interrupted; resume with: mlp-lab run --resume {run_dir}")


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffle order of one epoch, a function of (seed, epoch) alone: resuming needs no state."""
    mixed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(mixed)).to(device)


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch. A last batch of a single example is dropped: BatchNorm cannot train on it."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 else 0)


def lr_at(cfg: SchedulerConfig, base_lr: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Learning rate at optimizer step `step` (0-based) for the stateless schedules.

    Linear warmup over `warmup_epochs`, then constant, cosine down to `min_lr`, or step decay
    by `gamma` every `step_size` epochs. 'plateau' is constant here; the trainer scales it.
    """
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if cfg.name == "cosine":
        progress = (step - warmup) / max(1, epochs * steps_per_epoch - warmup)
        return cfg.min_lr + 0.5 * (base_lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
    if cfg.name == "step":
        return base_lr * cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)
    return base_lr


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return math.isfinite(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class EarlyStopping:
    """Tracks the monitored metric: the best value, its epoch, and epochs without improvement."""

    patience: int | None
    min_delta: float
    mode: str  # "min" or "max"
    best: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0

    @classmethod
    def from_config(cls, cfg: EarlyStoppingConfig) -> EarlyStopping:
        return cls(cfg.patience, cfg.min_delta, "min" if cfg.monitor == "val/loss" else "max")

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch's value; True when it improved on the best by more than min_delta."""
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.epochs_without_improvement = value, epoch, 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]


@dataclass
class Plateau:
    """Reduce-on-plateau as a scale on the scheduled LR, so it composes with warmup."""

    factor: float
    patience: int
    mode: str
    best: float | None = None
    bad_epochs: int = 0
    scale: float = 1.0

    def update(self, value: float) -> None:
        """Record one epoch's value; after more than `patience` epochs without improvement,
        multiply the scale by `factor` and start counting again."""
        if _improved(value, self.best, self.mode, 0.0):
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs, self.scale = state["best"], state["bad_epochs"], state["scale"]


def weight_penalty(weights: list[torch.Tensor], l1: float, l2: float) -> torch.Tensor | None:
    """l1 * sum|w| + l2 * sum w^2 over weight matrices; None when both are zero."""
    penalty = None
    if l1 > 0:
        penalty = l1 * sum(w.abs().sum() for w in weights)
    if l2 > 0:
        term = l2 * sum(w.pow(2).sum() for w in weights)
        penalty = term if penalty is None else penalty + term
    return penalty


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: Split, batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split`, in eval mode, in large batches."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=split.x.device, dtype=torch.float64)
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    for start in range(0, len(split), batch_size):
        logits = model(split.x[start : start + batch_size])
        y = split.y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = max(1, len(split))
    return loss_sum.item() / n, correct.item() / n


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
        # The compiled module shares parameters with self.model; checkpoints use self.model.
        self.forward = torch.compile(self.model) if config.train.compile else self.model
        self.use_amp = config.train.amp and self.device.type == "cuda"
        # The hand-written step where the model allows it (a plain MLP), autograd otherwise.
        tc = config.train
        self.hand_step = (
            None if tc.compile or self.use_amp else HandStep.for_model(self.model, tc.label_smoothing, tc.l1, tc.l2)
        )
        self.masks = self.hand_step.masks(tc.batch_size, config.seed, self.device) if self.hand_step else None
        # The hand step writes every gradient into one flat buffer, stepped as one tensor. Autograd
        # keeps a tensor per parameter: it hands over each new gradient, where adding it into a
        # preset flat buffer would cost a pass over every gradient per step (3 % of a 1024-512 one).
        params = [flatten_parameters(self.model).flat] if self.hand_step else list(self.model.parameters())
        self.optimizer = build_optimizer(params, tc.optimizer)
        self.optimizer_step = OptimizerStep(self.optimizer)
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
            "numerics_version": NUMERICS_VERSION,
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
                    f"{path}: was written under numerics version {ckpt.get('numerics_version', 1)}, this mlp-lab "
                    f"trains under version {NUMERICS_VERSION}; resuming would mix the two: start a new run instead"
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

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch (step `step` of `epoch`, 0-based): returns (logits, plain
        cross-entropy), both detached."""
        if self.hand_step is not None:
            assert self.masks is not None
            logits, loss = self.hand_step(x, y, self.masks.at(epoch, step, y.shape[0]))
            self.optimizer_step()
            return logits, loss  # made without autograd: nothing to detach
        cfg = self.config.train
        if self.use_amp:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                logits = self.forward(x)
            logits = logits.float()
        else:
            logits = self.forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        penalty = weight_penalty(weights, cfg.l1, cfg.l2)
        objective = loss if penalty is None else loss + penalty
        if cfg.label_smoothing > 0:
            # Report the plain cross-entropy, so train/loss stays comparable with val/loss.
            loss = F.cross_entropy(logits.detach(), y)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer_step()
        return logits.detach(), loss.detach()

    def _train_epoch(self, should_stop: Callable[[], bool] | None) -> dict[str, float]:
        """One pass over the training split, resuming mid-epoch if an interrupt left it there."""
        cfg, p = self.config.train, self.progress
        train = self.data.train
        perm = epoch_permutation(len(train), self.config.seed, p.epoch, self.device)
        weights = self.model.penalized_weights()
        if p.partial is not None:
            loss_sum, correct, seen, lr0 = (
                p.partial["loss_sum"].to(self.device),
                p.partial["correct"].to(self.device),
                p.partial["seen"],
                p.partial["lr"],
            )
        else:
            loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
            correct = torch.zeros((), device=self.device, dtype=torch.long)
            seen, lr0 = 0, None
        self.model.train()
        bs = cfg.batch_size
        # The epoch's labels in order. Each step's loss and logits are only kept (both are fresh
        # tensors): the losses are summed and the predictions counted once per epoch, not with an
        # accumulation, a dtype conversion and an argmax per step (~30 us a baseline step).
        labels = train.y.index_select(0, perm)
        losses: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        first = end = p.step * bs  # the first example this call trains on
        n_train = len(train)
        # Several batches' rows gathered in one call into one buffer (batches are views of it).
        gather_steps = max(1, GATHER_ROWS // bs)
        gathered = train.x.new_empty((gather_steps * bs, *train.x.shape[1:]))
        gathered_from = first

        def totals(stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            """(loss sum, correct count) over the examples up to `stop`, this call's steps added."""
            if not losses:
                return loss_sum, correct
            # In step order, in float64, one batch at a time: the same additions, and so the same
            # bits, as a float64 accumulator on the device that adds loss * batch size per step.
            total = loss_sum.item()
            for i, value in enumerate(torch.stack(losses).tolist()):
                step_start = first + i * bs
                total += value * (min(step_start + bs, n_train) - step_start)
            predicted = torch.cat(outputs).argmax(1)
            hits = (predicted == labels[first:stop]).sum()
            return torch.tensor(total, dtype=torch.float64, device=self.device), correct + hits

        # The hand step needs no autograd: switched off once for the epoch, not per step.
        with torch.no_grad() if self.hand_step is not None else contextlib.nullcontext():
            for step in range(p.step, self.steps_per_epoch):
                if should_stop is not None and should_stop():
                    partial_loss, partial_correct = totals(step * bs)
                    p.step, p.partial = (
                        step,
                        {"loss_sum": partial_loss.cpu(), "correct": partial_correct.cpu(), "seen": seen, "lr": lr0},
                    )
                    raise TrainingInterrupted(self.run_dir)
                lr = self._set_lr(p.epoch * self.steps_per_epoch + step)
                lr0 = lr if lr0 is None else lr0
                start, end = step * bs, min((step + 1) * bs, n_train)
                if (step - p.step) % gather_steps == 0:
                    gathered_from, upto = start, min(start + gather_steps * bs, n_train)
                    torch.index_select(train.x, 0, perm[start:upto], out=gathered[: upto - start])
                x, y = gathered[start - gathered_from : end - gathered_from], labels[start:end]
                if self.augment is not None:
                    x = self.augment(x, p.epoch, step)
                logits, loss = self.train_step(x, y, weights, p.epoch, step)
                losses.append(loss)
                outputs.append(logits)
                seen += end - start
        loss_sum, correct = totals(end)
        p.step, p.partial = 0, None
        return {"train/loss": loss_sum.item() / max(1, seen), "train/acc": correct.item() / max(1, seen), "lr": lr0}

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
            record = {"epoch": p.epoch + 1, **self._train_epoch(should_stop)}
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

    def write_curves(self) -> None:
        """curves.png: loss and accuracy (train vs val) and LR per epoch."""
        if self.progress.history:
            from mlp_lab.inspect.plots import plot_curves, run_title

            title = run_title(self.run_dir, self.config.name, self.config.seed)
            plot_curves(self.progress.history, self.run_dir / "curves.png", title)

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
        self.write_curves()
        for logger in loggers:
            logger.log_summary(summary)
        raise TrainingDiverged(f"{self.run_dir}: {message}")

    def _summary_base(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "seed": self.config.seed,
            "config_hash": self.hash,
            "numerics_version": NUMERICS_VERSION,
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
        self.write_curves()
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
