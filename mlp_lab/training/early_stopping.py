"""Early stopping: the monitored metric's best value, its epoch, and the epochs since."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlp_lab.config.schema import EarlyStoppingConfig
from mlp_lab.training.schedules import improved


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
        if improved(value, self.best, self.mode, self.min_delta):
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
