"""Which examples go where: the seeded train/val split and the fixed pixel shuffle
(data.permute_pixels), each a function of its own seed alone."""

from __future__ import annotations

import torch


def split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val indices: a permutation seeded by `split_seed` alone, so every run of a
    dataset gets the same split whatever its training seed."""
    generator = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * val_fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def pixel_permutation(num_pixels: int, seed: int) -> tuple[int, ...]:
    """One fixed order of `num_pixels` pixel positions, a function of `seed` alone."""
    return tuple(torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed)).tolist())
