"""The autograd engine: any model, forward under optional bf16 autocast or torch.compile, then
`backward()` and the fused optimizer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlp_lab.config.schema import Config
from mlp_lab.models.registry import Network
from mlp_lab.training.engines.base import StepEngine
from mlp_lab.training.optim import OptimizerStep, build_optimizer


def weight_penalty(weights: list[torch.Tensor], l1: float, l2: float) -> torch.Tensor | None:
    """l1 * sum|w| + l2 * sum w^2 over weight matrices; None when both are zero."""
    penalty = None
    if l1 > 0:
        penalty = l1 * sum(w.abs().sum() for w in weights)
    if l2 > 0:
        term = l2 * sum(w.pow(2).sum() for w in weights)
        penalty = term if penalty is None else penalty + term
    return penalty


class AutogradEngine(StepEngine):
    """Autograd's step: the loss (label smoothing and the l1/l2 penalty included) through
    `backward()`. Dropout masks come from the model's own modules (torch's generator)."""

    name = "autograd"

    def __init__(self, model: Network, config: Config, device: torch.device):
        tc = config.train
        # The compiled module shares parameters with the model; checkpoints use the model.
        self.forward = torch.compile(model) if tc.compile else model
        self.use_amp = tc.amp and device.type == "cuda"
        self.device_type = device.type
        self.label_smoothing, self.l1, self.l2 = tc.label_smoothing, tc.l1, tc.l2
        self.weights = model.penalized_weights()
        # A tensor per parameter: autograd hands over each new gradient, where adding it into a
        # preset flat buffer (as the hand step writes) would cost a pass over every gradient per step.
        self.optimizer = build_optimizer(list(model.parameters()), tc.optimizer)
        self.optimizer_step = OptimizerStep(self.optimizer)

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.use_amp:
            with torch.autocast(self.device_type, dtype=torch.bfloat16):
                logits = self.forward(x)
            logits = logits.float()
        else:
            logits = self.forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        penalty = weight_penalty(self.weights, self.l1, self.l2)
        objective = loss if penalty is None else loss + penalty
        if self.label_smoothing > 0:
            # Report the plain cross-entropy, so train/loss stays comparable with val/loss.
            loss = F.cross_entropy(logits.detach(), y)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer_step()
        return logits.detach(), loss.detach()
