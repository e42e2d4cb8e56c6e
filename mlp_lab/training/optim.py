"""The optimizers: Adam, AdamW and SGD as fused kernels, and their step without the wrapper.

`torch.optim.Optimizer.step` spends Python on hooks, the profiler label, grouping and state
look-ups before its one fused kernel runs; on the CPU, for the baseline MLP, that is a noticeable
part of a training step (measured on docs/results/2026-12-07-redesign.md). `OptimizerStep` makes the same call to the same kernel
through the optimizer's own public functional form (`torch.optim.adam.adam`,
`torch.optim.sgd.sgd`) with the optimizer's own state tensors, so `state_dict()`, checkpoints and
resume are untouched and the arithmetic is bit for bit that of `optimizer.step()`
(`tests/training/test_engines.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from mlp_lab.config.schema import OptimizerConfig


def build_optimizer(params: Iterable[torch.Tensor], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with momentum/nesterov) over `params`, as fused kernels.

    Fused: one kernel updates every parameter (CPU and CUDA), where the default implementation
    loops over parameters and operations; on the CPU that was a third of a baseline step. The
    Trainer passes one flat parameter (`flatparams`), so the kernel's bookkeeping is paid once.
    """
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, fused=True
        )
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


class OptimizerStep:
    """`optimizer.step()` for a fused Adam/AdamW/SGD with one param group, straight to its kernel.

    The first step (which creates the state), a parameter without a gradient and any other
    optimizer go through `step()` itself.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        groups = optimizer.param_groups
        self.direct = (
            type(optimizer) in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)
            and len(groups) == 1
            and groups[0].get("fused") is True
            and not groups[0].get("maximize")
            and not groups[0].get("amsgrad")
        )

    def __call__(self) -> None:
        group = self.optimizer.param_groups[0]
        params = group["params"]
        states = [self.optimizer.state.get(p) for p in params]
        if not self.direct or not all(states) or any(p.grad is None for p in params):
            self.optimizer.step()
            return
        grads = [p.grad for p in params]
        if isinstance(self.optimizer, torch.optim.SGD):
            buffers = [state.get("momentum_buffer") for state in states]
            if group["momentum"] != 0 and any(b is None for b in buffers):
                self.optimizer.step()
                return
            sgd(
                params,
                grads,
                buffers,
                fused=True,
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=group["lr"],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                maximize=False,
            )
            return
        beta1, beta2 = group["betas"]
        adam(
            params,
            grads,
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [],
            [state["step"] for state in states],
            fused=True,
            decoupled_weight_decay=group.get("decoupled_weight_decay", isinstance(self.optimizer, torch.optim.AdamW)),
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
