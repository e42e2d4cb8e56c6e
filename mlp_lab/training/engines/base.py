"""The step-engine interface: what the Trainer's loop asks of the code that trains one batch."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from mlp_lab.config.engines import NUMERICS_VERSIONS


class StepEngine(ABC):
    """One optimizer step on one batch: forward, loss, gradients and the update.

    An engine owns the optimizer, because it decides what the optimizer steps (the hand step's
    one flat buffer, autograd's tensor per parameter). It must consume no RNG the other engines'
    runs depend on in another order, and its numbers are versioned: `NUMERICS_VERSIONS[name]` in
    `mlp_lab.config.engines`, bumped whenever the same config trains to different numbers under it.
    """

    name: ClassVar[str]
    optimizer: torch.optim.Optimizer

    @property
    def numerics_version(self) -> int:
        """This engine's numerics version (read from the config layer, where the hash reads it)."""
        return NUMERICS_VERSIONS[self.name]

    def grad_mode(self) -> contextlib.AbstractContextManager:
        """The autograd mode a whole epoch of steps runs under: entered once per epoch, not per step."""
        return contextlib.nullcontext()

    @abstractmethod
    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on batch (x, y), step `step` of `epoch` (both 0-based), the optimizer's lr as set:
        returns (logits, the batch's plain cross-entropy), both detached."""
