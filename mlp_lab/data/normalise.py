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
