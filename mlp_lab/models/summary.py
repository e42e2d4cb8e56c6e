"""The layer table of any module tree: per layer its output shape, parameters and MACs, measured by
one forward pass of a blank example with forward hooks (shapes) under
`torch.utils.flop_counter.FlopCounterMode` (FLOPs per module; a multiply-accumulate is two).

The built-in families list their `layers` in order (`registry.layer_table`); a user's module is
only known by running it, so its rows are the modules that did work, in the order they ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _flops_by_module(counts: dict[str, dict[Any, int]], root: str) -> dict[str, int]:
    # FlopCounterMode names a module "<root class>.<its path>", the root itself "<root class>";
    # a module's count includes its children's.
    flops = {}
    for name, ops in counts.items():
        if name == root:
            flops[""] = sum(ops.values())
        elif name.startswith(root + "."):
            flops[name[len(root) + 1 :]] = sum(ops.values())
    return flops


def module_table(
    module: nn.Module,
    example: torch.Tensor,
    detail: Callable[[nn.Module, torch.Tensor], str] = lambda layer, before: "",
) -> list[dict[str, Any]]:
    """The rows of `module`'s layer table for one `example` batch (of one): each leaf module that
    ran, and each inner module with parameters or work of its own, in the order they ran; MACs
    per example are that module's own FLOPs / 2 (its children's excluded), so the rows add up
    to the whole forward pass. `detail(layer, its input)` describes a layer."""
    names = {m: name for name, m in module.named_modules()}
    seen: dict[str, tuple[nn.Module, torch.Size, torch.Size | None]] = {}

    def record(layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        before = inputs[0].shape if inputs and isinstance(inputs[0], torch.Tensor) else None
        shape = output.shape if isinstance(output, torch.Tensor) else None
        name = names[layer]
        # A module called twice keeps its first place and its last shape.
        seen[name] = (layer, shape, before) if name not in seen else (layer, shape, seen[name][2])

    handles = [m.register_forward_hook(record) for m in names]
    counter = FlopCounterMode(display=False)
    was_training = module.training
    try:
        with torch.no_grad(), counter:
            module.eval()(example)
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    flops = _flops_by_module(counter.get_flop_counts(), type(module).__name__)

    def own_flops(name: str, layer: nn.Module) -> int:
        children = sum(flops.get(f"{name}.{c}" if name else c, 0) for c, _ in layer.named_children())
        return flops.get(name, 0) - children

    rows = []
    for name, (layer, shape, before) in seen.items():
        leaf = next(layer.children(), None) is None
        own_parameters = sum(p.numel() for p in layer.parameters(recurse=False))
        macs = own_flops(name, layer) // 2
        if not leaf and own_parameters == 0 and macs == 0:
            continue
        parameters = sum(p.numel() for p in layer.parameters()) if leaf else own_parameters
        input_shape = torch.empty(before, device="meta") if before is not None else None
        rows.append(
            {
                "layer": f"{name or '(top)'}: {type(layer).__name__}",
                "detail": detail(layer, input_shape) if input_shape is not None and leaf else "",
                "output_shape": ["batch", *shape[1:]] if shape is not None else ["-"],
                "parameters": parameters,
                "macs": macs,
            }
        )
    return rows


def table_macs(rows: Sequence[dict[str, Any]]) -> int:
    """MACs per example of a whole table."""
    return sum(int(row["macs"]) for row in rows)
