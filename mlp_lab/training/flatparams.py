"""A model's trainable parameters in one flat buffer, and their gradients in another.

A fused optimizer (`torch.optim.Adam(..., fused=True)`) over one tensor runs one kernel over
one tensor. Every parameter stays the module's own `nn.Parameter` (the module tree, `state_dict`
keys and checkpoints are unchanged); only its storage becomes a slice of the flat buffer, and its
`.grad` a slice of the flat gradient. The hand-written step (`engines.hand`) writes each gradient
straight into its slice. Autograd would add into the slices in place too (one fill of the flat
gradient clears them all), but the autograd engine keeps its own tensor per parameter: adding into
a preset buffer costs a pass over every gradient that handing the new tensor over does not. The
optimizer's arithmetic is element-wise, so one flat tensor or a list of them is the same number
for number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FlatParameters:
    """`flat` is the one parameter an optimizer steps; each of `params` (the model's trainable
    parameters, in `model.parameters()` order) and its `.grad` are slices of `flat` and `flat.grad`."""

    flat: nn.Parameter
    params: list[nn.Parameter]


def flatten_parameters(model: nn.Module) -> FlatParameters:
    """Move `model`'s trainable parameters into one buffer on their (common) device and dtype.

    Call after `model.to(device)`: moving the model afterwards would give each parameter storage
    of its own again. Parameters that do not require gradients are left where they are.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if len({(p.device, p.dtype) for p in params}) > 1:
        raise ValueError("the model's parameters are on several devices or dtypes")
    with torch.no_grad():
        data = torch.cat([p.detach().reshape(-1) for p in params])
    flat = nn.Parameter(data)
    flat.grad = torch.zeros_like(data)
    offset = 0
    for p in params:
        n = p.numel()
        # Rebinding .data keeps the Parameter object (and so every reference to it: the module,
        # penalised_weights, the optimizer a caller builds) while its storage becomes the slice.
        p.data = flat.data[offset : offset + n].view_as(p)
        p.grad = flat.grad[offset : offset + n].view_as(p)
        offset += n
    return FlatParameters(flat, params)
