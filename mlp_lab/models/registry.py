"""The one model factory: the network a config describes (MLP or CNN), rebuilt from a checkpoint's
``model_args``, and its multiply-accumulates per example. Train, checkpoints, summary, bench and
the cost estimate all build models here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mlp_lab.config.schema import ModelConfig
from mlp_lab.config.sizes import conv_shapes
from mlp_lab.models.cnn import ParameterizedCNN
from mlp_lab.models.mlp import ParameterizedMLP, macs_per_example

Network = ParameterizedMLP | ParameterizedCNN


def build_model(cfg: ModelConfig, image_shape: Sequence[int], num_classes: int) -> Network:
    """The model `cfg` describes for images of `image_shape` (C, H, W) and `num_classes` classes."""
    if cfg.kind == "mlp":
        c, h, w = image_shape
        return ParameterizedMLP.from_config(cfg, c * h * w, num_classes)
    conv = cfg.conv
    return ParameterizedCNN(
        image_shape,
        conv.channels,
        cfg.hidden_sizes,
        num_classes,
        kernel_size=conv.kernel_size,
        padding=conv.paddings(),
        pool=conv.pool,
        pool_size=conv.pool_size,
        conv_batch_norm=conv.batch_norm,
        conv_dropout=conv.dropout,
        activation=cfg.activation,
        batch_norm=cfg.batch_norm,
        dropout=cfg.dropout,
        input_dropout=cfg.input_dropout,
    )


def model_from_args(model_args: Mapping[str, Any]) -> Network:
    """Rebuild a model from its `model_args` (a checkpoint's); MLP checkpoints carry no `kind`."""
    args = dict(model_args)
    kind = args.pop("kind", "mlp")
    if kind == "mlp":
        return ParameterizedMLP(**args)
    if kind == "cnn":
        return ParameterizedCNN(**args)
    raise ValueError(f"unknown model kind {kind!r}")


def model_macs(cfg: ModelConfig, image_shape: Sequence[int], num_classes: int) -> int:
    """Multiply-accumulates of one example's forward pass, from the config alone: a Conv2d's
    out_channels x in_channels x kernel^2 per output pixel, a Linear's in x out. Pooling,
    BatchNorm, activations and dropout are element-wise and are not counted."""
    c, h, w = image_shape
    if cfg.kind == "mlp":
        return macs_per_example(c * h * w, cfg.hidden_sizes, num_classes)
    conv, total, size = cfg.conv, 0, (h, w)
    for (out, oh, ow), pad in zip(conv_shapes(conv, tuple(image_shape)), conv.paddings()):
        # The conv's own output before pooling.
        ch, cw = size[0] + 2 * pad - conv.kernel_size + 1, size[1] + 2 * pad - conv.kernel_size + 1
        total += ch * cw * out * c * conv.kernel_size**2
        c, size = out, (oh, ow)
    return total + macs_per_example(c * size[0] * size[1], cfg.hidden_sizes, num_classes)


def layer_table(model: Network, image_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Each layer of `model` with its output shape, parameters and MACs per example, measured by
    passing one blank image through the layers in eval mode."""
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
                    "detail": _detail(layer, before),
                    "output_shape": ["batch", *x.shape[1:]],
                    "parameters": sum(p.numel() for p in layer.parameters()),
                    "macs": macs,
                }
            )
    return rows


def _detail(layer: nn.Module, before: torch.Tensor) -> str:
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
