"""The ParameterizedCNN: conv blocks, then a dense head, on the same flat features as the MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mlp_lab.config.model_sections import CNNConfig
from mlp_lab.models.mlp import ACTIVATIONS, Dropout, dense_layers, dropout_mask
from mlp_lab.models.registry import ModelFamily, count_parameters, register_family

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

    def __init__(self, section: CNNConfig, image_shape: Sequence[int], num_classes: int):
        super().__init__()
        self.image_shape = (int(image_shape[0]), int(image_shape[1]), int(image_shape[2]))
        # The geometry first: a section whose blocks leave no pixels raises GeometryError here,
        # and the head's width is what the blocks leave.
        head_features = section.geometry(self.image_shape, num_classes).features
        conv, activation = section.conv, ACTIVATIONS[section.activation]
        layers: list[nn.Module] = []
        if section.input_dropout > 0:
            layers.append(Dropout(section.input_dropout))
        c = self.image_shape[0]
        for out, pad in zip(conv.channels, conv.paddings()):
            # BatchNorm's shift makes the conv bias redundant.
            layers.append(nn.Conv2d(c, out, conv.kernel_size, padding=pad, bias=not conv.batch_norm))
            if conv.batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(activation())
            if conv.pool != "none":
                layers.append(POOLS[conv.pool](conv.pool_size))
            if conv.dropout > 0:
                layers.append(ChannelDropout(conv.dropout))
            c = out
        layers.append(nn.Flatten())
        layers += dense_layers(
            head_features, section.hidden_sizes, num_classes, section.activation, section.batch_norm, section.dropout
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.reshape(-1, *self.image_shape))

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those that require gradients)."""
        return count_parameters(self, trainable_only)

    def penalized_weights(self) -> list[torch.Tensor]:
        """Conv kernels and Linear weight matrices: what L1/L2 penalties apply to."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


CNN = register_family(ModelFamily(CNNConfig, ParameterizedCNN))
