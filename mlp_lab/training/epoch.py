"""The pieces of one training epoch around the step: its shuffle, its batches (`BatchGather`)
and its loss and accuracy totals (`EpochTotals`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mlp_lab.data.load import Split

# Training examples gathered per `index_select`, a few batches at once: random rows of the split
# come from memory, not cache, and one call over 1024 of them overlaps their fetches.
GATHER_ROWS = 1024


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffle order of one epoch, a function of (seed, epoch) alone: resuming needs no state."""
    mixed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(mixed)).to(device)


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch. A last batch of a single example is dropped: BatchNorm cannot train on it."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 else 0)


class BatchGather:
    """An epoch's batches in the order `perm` shuffles `split` into: several batches' rows
    gathered by one `index_select` into one buffer, each batch a view of it."""

    def __init__(self, split: Split, perm: torch.Tensor, batch_size: int):
        self.x, self.perm, self.batch_size, self.n = split.x, perm, batch_size, len(split)
        self.labels = split.y.index_select(0, perm)  # the epoch's labels in order
        self.steps = max(1, GATHER_ROWS // batch_size)
        self.buffer = split.x.new_empty((self.steps * batch_size, *split.x.shape[1:]))

    def batches(self, first: int, stop: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(step, x, y) for steps `first` .. `stop` - 1. A batch is a view of the buffer that the
        gather a few steps on overwrites: train on it before asking for the next."""
        bs, n, buffer = self.batch_size, self.n, self.buffer
        gathered_from = first * bs
        for step in range(first, stop):
            start, end = step * bs, min((step + 1) * bs, n)
            if (step - first) % self.steps == 0:
                gathered_from, upto = start, min(start + self.steps * bs, n)
                torch.index_select(self.x, 0, self.perm[start:upto], out=buffer[: upto - start])
            yield step, buffer[start - gathered_from : end - gathered_from], self.labels[start:end]


class EpochTotals:
    """An epoch's train loss sum and correct count, from the steps' losses and logits.

    Each step's loss and logits are only kept (both are fresh tensors): the losses are summed and
    the predictions counted once per epoch, not with an accumulation, a dtype conversion and an
    argmax per step. A resumed epoch starts from the sums its interrupt saved (`partial`).
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        first_step: int,
        device: torch.device,
        partial: dict[str, Any] | None = None,
    ):
        self.labels, self.batch_size, self.device, self.n = labels, batch_size, device, len(labels)
        self.first = first_step * batch_size  # the first example this call trains on
        if partial is not None:
            self.loss_sum, self.correct = partial["loss_sum"].to(device), partial["correct"].to(device)
            self.seen, self.lr = partial["seen"], partial["lr"]
        else:
            self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            self.correct = torch.zeros((), device=device, dtype=torch.long)
            self.seen, self.lr = 0, None  # lr: the epoch's first step's, reported for the epoch
        self.losses: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, loss: torch.Tensor) -> None:
        """One step's (detached) logits and loss, as the engine returns them, in step order."""
        self.losses.append(loss)
        self.outputs.append(logits)

    def totals(self, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss sum, correct count) over the examples up to `stop`, this call's steps added."""
        if not self.losses:
            return self.loss_sum, self.correct
        # In step order, in float64, one batch at a time: the same additions, and so the same
        # bits, as a float64 accumulator on the device that adds loss * batch size per step.
        bs, total = self.batch_size, self.loss_sum.item()
        for i, value in enumerate(torch.stack(self.losses).tolist()):
            step_start = self.first + i * bs
            total += value * (min(step_start + bs, self.n) - step_start)
        predicted = torch.cat(self.outputs).argmax(1)
        hits = (predicted == self.labels[self.first : stop]).sum()
        return torch.tensor(total, dtype=torch.float64, device=self.device), self.correct + hits

    def partial(self, stop: int) -> dict[str, Any]:
        """What last.pt keeps of an epoch interrupted before the example `stop`."""
        loss_sum, correct = self.totals(stop)
        return {
            "loss_sum": loss_sum.cpu(),
            "correct": correct.cpu(),
            "seen": self.seen + stop - self.first,
            "lr": self.lr,
        }

    def metrics(self, stop: int) -> dict[str, float]:
        """The epoch's train/loss, train/acc and lr, its last step ending before example `stop`."""
        loss_sum, correct = self.totals(stop)
        seen = self.seen + stop - self.first
        return {"train/loss": loss_sum.item() / max(1, seen), "train/acc": correct.item() / max(1, seen), "lr": self.lr}
