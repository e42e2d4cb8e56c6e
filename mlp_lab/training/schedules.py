"""Learning-rate schedules: the stateless ones as a pure function of the step (`lr_at`), and
reduce-on-plateau as a scale on it (`Plateau`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlp_lab.config.schema import SchedulerConfig


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


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether `value` beats `best` by more than `min_delta` ("min": lower is better, "max": higher)."""
    if best is None:
        return math.isfinite(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


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
        if improved(value, self.best, self.mode, 0.0):
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
