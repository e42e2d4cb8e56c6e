"""Evaluation of a model on a split: mean cross-entropy and accuracy, in large batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlp_lab.data.load import Split

EVAL_BATCH_SIZE = 8192


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
