"""From uint8 images to the float features a model takes: per-channel statistics of the train
split, and the normalisation (and optional pixel order) applied to every split and every image
a trained model is later shown (predict, the MLflow model)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), on the [0, 1] scale."""
    x = images.to(torch.float64).div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-8)
    return tuple(mean.tolist()), tuple(std.tolist())


def to_features(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    permutation: Sequence[int] | None = None,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalized float32 (N, C*H*W); with a `permutation` of the H*W pixel
    positions, every channel's pixels are put in that order (data.permute_pixels)."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (images.to(torch.float32) / 255.0 - m) / s
    if permutation is not None:
        x = x.flatten(2)[:, :, torch.as_tensor(permutation, dtype=torch.long)]
    return x.flatten(1)


def value_stats(values: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of float inputs (N, C, H, W) on their own scale (a table's
    channels are its features). A constant channel gets std 1, so it standardises to 0 rather
    than dividing by zero."""
    x = values.to(torch.float64)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)) if x.shape[0] * x.shape[2] * x.shape[3] > 1 else torch.zeros_like(mean)
    std = torch.where(std > 1e-12 * mean.abs().clamp_min(1.0), std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def standardise(
    values: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    permutation: Sequence[int] | None = None,
) -> torch.Tensor:
    """float (N, C, H, W) -> standardised float32 (N, C*H*W), as `to_features` does for uint8."""
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    x = ((values.to(torch.float64) - m) / s).to(torch.float32)
    if permutation is not None:
        x = x.flatten(2)[:, :, torch.as_tensor(permutation, dtype=torch.long)]
    return x.flatten(1)
