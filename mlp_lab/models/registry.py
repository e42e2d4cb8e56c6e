"""The model families behind one registry: what a family is (its config section and its builder),
what the network it builds must provide (`Network`), `build_model`, which train, checkpoints,
the summary and bench all build through, and the layer table.

The built-in MLP (`models.mlp`) and CNN (`models.cnn`) register with the same `register_family`
call a user's family makes; importing `mlp_lab.models` registers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from mlp_lab.config.section import (
    ModelSection,
    model_section,
    register_model_section,
    section_kind,
    unregister_model_section,
)


@runtime_checkable
class Network(Protocol):
    """What every family's network provides, beyond being an `nn.Module`:

    - `forward(x)` takes a batch of flat feature rows (N, C*H*W), as the data, predict and the app
      pass them, or of images (N, C, H, W), and returns the logits (N, classes);
    - `layers`, an `nn.Sequential` that maps images (N, C, H, W) to the logits in order: the
      layer table (`summary`) walks it, and the hand-written step reads a plain MLP's from it;
    - `penalized_weights()`, the tensors train.l1 and train.l2 penalise (weight matrices and
      kernels, not biases or BatchNorm);
    - `num_parameters(trainable_only)`, for the summary and summary.json.

    A network whose layers are not one `nn.Sequential` (a user's module tree, `models.user`) may
    also give `layer_table(image_shape)` and `macs_per_sample(image_shape)`, which the summary uses
    in place of walking `layers` and of its section's geometry.
    """

    layers: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def penalized_weights(self) -> list[torch.Tensor]: ...

    def num_parameters(self, trainable_only: bool = False) -> int: ...


# A family's builder: its validated section, the images' (C, H, W) and the number of classes.
Builder = Callable[[Any, tuple[int, int, int], int], nn.Module]


@dataclass(frozen=True)
class ModelFamily:
    """A model family: the config section `model: {kind: ...}` validates into (a `ModelSection`
    subclass, torch-free) and the function that builds its `Network` from that section and the
    data's shape. Its parameters are initialised from torch's global generator, which the trainer
    seeds just before building, so a run's initial weights depend on its seed alone."""

    section: type[ModelSection]
    build: Builder

    @property
    def kind(self) -> str:
        return section_kind(self.section)


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register a model family: its section becomes the schema of ``model: {kind: <kind>}`` and
    `build_model` builds its network. Registering the same family again is a no-op; another one
    under a taken kind is refused."""
    kind = family.kind
    known = _FAMILIES.get(kind)
    if known is not None and known != family:
        raise ValueError(f"model kind {kind!r} is already registered")
    register_model_section(family.section)
    _FAMILIES[kind] = family
    return family


def unregister_family(kind: str) -> None:
    """Forget a family and its section (for tests and notebooks that register one for a while)."""
    _FAMILIES.pop(kind, None)
    unregister_model_section(kind)


def family(kind: str) -> ModelFamily:
    """The registered family of `kind`; a kind whose section is known but whose builder is not
    (a config validated before its family's module was imported) is a clear error."""
    if kind not in _FAMILIES:
        try:
            model_section(kind)
        except KeyError:
            raise ValueError(f"unknown model kind {kind!r}") from None
        raise ValueError(f"model kind {kind!r} has a config section but no registered family (register_family)")
    return _FAMILIES[kind]


def build_model(section: ModelSection, image_shape: Sequence[int], num_classes: int) -> Network:
    """The network `section` describes for images of `image_shape` (C, H, W) and `num_classes`
    classes, built by its family and checked against `Network`."""
    shape = (int(image_shape[0]), int(image_shape[1]), int(image_shape[2]))
    model = family(section.kind).build(section, shape, num_classes)
    if not isinstance(model, nn.Module) or not isinstance(model, Network):
        missing = [name for name in ("layers", "penalized_weights", "num_parameters") if not hasattr(model, name)]
        raise TypeError(
            f"model kind {section.kind!r} built a {type(model).__name__}, not a Network "
            f"(an nn.Module with layers, penalized_weights, num_parameters; missing: {', '.join(missing) or 'nn.Module'})"
        )
    return model


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of a module (all, or only those that require gradients)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def layer_table(model: Network, image_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Each layer of `model` with its output shape, parameters and MACs per example, measured by
    passing one blank image through the layers in eval mode; a network with a table of its own
    (a user's module tree, `models.user`) gives that."""
    own = getattr(model, "layer_table", None)
    if callable(own):
        return own(tuple(image_shape))
    rows = []
    x = torch.zeros(1, *image_shape)
    with torch.no_grad():
        for index, layer in enumerate(model.eval().layers):
            before = x
            x = layer(x)
            if isinstance(layer, nn.Conv2d):
                macs = x[0].numel() * (layer.in_channels // layer.groups) * layer.kernel_size[0] * layer.kernel_size[1]
            elif isinstance(layer, nn.Linear):
                macs = layer.in_features * layer.out_features
            else:
                macs = 0
            rows.append(
                {
                    "layer": f"{index}: {type(layer).__name__}",
                    "detail": layer_detail(layer, before),
                    "output_shape": ["batch", *x.shape[1:]],
                    "parameters": sum(p.numel() for p in layer.parameters()),
                    "macs": macs,
                }
            )
    return rows


def macs_per_sample(model: Network, section: ModelSection, image_shape: Sequence[int], num_classes: int) -> int:
    """Multiply-accumulates of one example's forward pass: the network's own count where it has one
    (a user's model, counted by torch), else its section's geometry."""
    own = getattr(model, "macs_per_sample", None)
    if callable(own):
        return int(own(tuple(image_shape)))
    shape = (int(image_shape[0]), int(image_shape[1]), int(image_shape[2]))
    return section.geometry(shape, num_classes).macs


def layer_detail(layer: nn.Module, before: torch.Tensor) -> str:
    """A layer's sizes as the layer table shows them (`before`: its input)."""
    if isinstance(layer, nn.Linear):
        return f"{layer.in_features} -> {layer.out_features}" + ("" if layer.bias is not None else ", no bias")
    if isinstance(layer, nn.Conv2d):
        k, p = layer.kernel_size[0], layer.padding[0]
        bias = "" if layer.bias is not None else ", no bias"
        return f"{layer.in_channels} -> {layer.out_channels}, {k}x{k}, padding {p}{bias}"
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{layer.kernel_size}x{layer.kernel_size}"
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return f"{layer.num_features} {'channels' if isinstance(layer, nn.BatchNorm2d) else 'features'}"
    if isinstance(layer, nn.Dropout):
        return f"p={layer.p}" + (", whole channels" if type(layer).__name__ == "ChannelDropout" else "")
    if isinstance(layer, nn.Flatten):
        return f"{tuple(before.shape[1:])} -> {before[0].numel()}"
    return ""
