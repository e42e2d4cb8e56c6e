"""The ParameterizedCNN: conv blocks, then a dense head, on the same flat features as the MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mlp_lab.models.mlp import ACTIVATIONS, Dropout, dense_layers, dropout_mask

POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class ChannelDropout(Dropout):
    """Drops whole feature maps (Tompson et al. 2015's spatial dropout, as nn.Dropout2d): pixels of
    one map are strongly correlated, so dropping single ones regularizes little. Its masks come
    from the same cheap `dropout_mask` as the dense layers' dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(torch.Size((x.shape[0], x.shape[1], 1, 1)), self.p, x.device, x.dtype)


class ParameterizedCNN(nn.Module):
    """[Dropout on the inputs]; per conv block: Conv2d -> [BatchNorm2d] -> activation -> [pool] ->
    [ChannelDropout]; then flatten and the head: per hidden size Linear -> [BatchNorm1d] ->
    activation -> [Dropout]; then Linear to logits.

    Inputs are the dataset's flat feature rows (N, C*H*W) or images (N, C, H, W): rows are viewed
    as images, which costs nothing, so the data, predict and the app pass what they pass an MLP.
    LeNet-5 is channels [6, 16], kernel 5, padding [2, 0], pooling, head [120, 84].
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int],
        hidden_sizes: Sequence[int],
        num_classes: int,
        kernel_size: int = 3,
        padding: Sequence[int] | int = 1,
        pool: str = "max",
        pool_size: int = 2,
        conv_batch_norm: bool = False,
        conv_dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
        if pool not in (*POOLS, "none"):
            raise ValueError(f"unknown pooling {pool!r}; choose from max, avg, none")
        paddings = [padding] * len(channels) if isinstance(padding, int) else list(padding)
        if len(paddings) != len(channels):
            raise ValueError(f"{len(paddings)} paddings for {len(channels)} conv blocks")
        self.image_shape = tuple(int(n) for n in image_shape)
        # Kept so a checkpoint can rebuild the exact model; `kind` tells the factory which class.
        self.model_args = dict(
            kind="cnn",
            image_shape=list(self.image_shape),
            channels=list(channels),
            hidden_sizes=list(hidden_sizes),
            num_classes=num_classes,
            kernel_size=kernel_size,
            padding=paddings,
            pool=pool,
            pool_size=pool_size,
            conv_batch_norm=conv_batch_norm,
            conv_dropout=conv_dropout,
            activation=activation,
            batch_norm=batch_norm,
            dropout=dropout,
            input_dropout=input_dropout,
        )
        layers: list[nn.Module] = []
        if input_dropout > 0:
            layers.append(Dropout(input_dropout))
        c, h, w = self.image_shape
        for out, pad in zip(channels, paddings):
            # BatchNorm's shift makes the conv bias redundant.
            layers.append(nn.Conv2d(c, out, kernel_size, padding=pad, bias=not conv_batch_norm))
            if conv_batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(ACTIVATIONS[activation]())
            h, w = h + 2 * pad - kernel_size + 1, w + 2 * pad - kernel_size + 1
            if pool != "none":
                layers.append(POOLS[pool](pool_size))
                h, w = h // pool_size, w // pool_size
            if conv_dropout > 0:
                layers.append(ChannelDropout(conv_dropout))
            c = out
        if h < 1 or w < 1:
            raise ValueError(f"the conv blocks leave no pixels of a {self.image_shape[1]}x{self.image_shape[2]} image")
        layers.append(nn.Flatten())
        layers += dense_layers(c * h * w, hidden_sizes, num_classes, activation, batch_norm, dropout)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.reshape(-1, *self.image_shape))

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those that require gradients)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def penalized_weights(self) -> list[torch.Tensor]:
        """Conv kernels and Linear weight matrices: what L1/L2 penalties apply to."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
