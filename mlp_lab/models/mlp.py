"""The ParameterizedMLP: every architecture an ablation needs from one class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mlp_lab.config.model_sections import MLPConfig
from mlp_lab.models.registry import ModelFamily, count_parameters, register_family

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


# Dropout draws its keep/drop decisions from 16-bit slices of 64-bit random integers: four per
# draw of the generator, which on the CPU is the costly part (nn.Dropout's bernoulli_ draws one
# double per element). The rate is therefore p rounded to a multiple of 2**-16, and the scale is
# that rounded rate's exact inverse, so the layer stays unbiased.
DROPOUT_LEVELS = 1 << 16


def dropout_mask(shape: torch.Size, p: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A dropout multiplier of `shape`: 0 with probability ~p, else 1 / (1 - p), from the global RNG."""
    dropped = min(round(p * DROPOUT_LEVELS), DROPOUT_LEVELS - 1)
    n = shape.numel()
    bits = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    keep = bits.view(torch.int16)[:n].view(shape) >= dropped - DROPOUT_LEVELS // 2
    return (keep * (DROPOUT_LEVELS / (DROPOUT_LEVELS - dropped))).to(dtype)


class Dropout(nn.Dropout):
    """nn.Dropout with cheaper masks (`dropout_mask`); the same module otherwise, so a model's
    layers, state_dict keys and eval behaviour are those of nn.Dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(x.shape, self.p, x.device, x.dtype)


def dense_layers(
    width: int, hidden_sizes: Sequence[int], num_classes: int, activation: str, batch_norm: bool, dropout: float
) -> list[nn.Module]:
    """Per hidden size: Linear -> [BatchNorm1d] -> activation -> [Dropout]; then Linear to logits.
    The MLP's body, and the CNN's head after its conv blocks."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        # BatchNorm's shift makes the Linear bias redundant.
        layers.append(nn.Linear(width, size, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, num_classes))
    return layers


class ParameterizedMLP(nn.Module):
    """[Dropout on the inputs]; per hidden layer: Linear -> [BatchNorm1d] -> activation -> [Dropout];
    then Linear to logits.

    With no hidden layers this is multinomial logistic regression. Inputs may be images of any
    shape; they are flattened to `in_features`.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(Dropout(input_dropout))
        layers += dense_layers(in_features, hidden_sizes, num_classes, activation, batch_norm, dropout)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those that require gradients)."""
        return count_parameters(self, trainable_only)

    def penalized_weights(self) -> list[torch.Tensor]:
        """The Linear weight matrices: what L1/L2 penalties apply to (not biases, not BatchNorm)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]


def build_mlp(section: MLPConfig, image_shape: tuple[int, int, int], num_classes: int) -> ParameterizedMLP:
    """The MLP a `model: {kind: mlp}` section describes, for images of `image_shape`."""
    return ParameterizedMLP(
        section.geometry(image_shape, num_classes).features,
        section.hidden_sizes,
        num_classes,
        section.activation,
        section.batch_norm,
        section.dropout,
        section.input_dropout,
    )


MLP = register_family(ModelFamily(MLPConfig, build_mlp))
