"""Seeded on-device augmentation: a batch of normalized feature rows -> a randomly distorted batch.

Every transform works on the whole batch at once on the batch's device (one `affine_grid` /
`grid_sample` for the geometry, pooling for the stroke width, a grouped convolution for the
blur), with random numbers from a generator seeded by (seed, epoch, step) alone: a rerun, or a
run resumed mid-epoch, sees exactly the batches an uninterrupted run saw. The rows are taken back
to the [0, 1] pixel scale first, so the background a rotation or shift uncovers is the dataset's
black (which normalization moves away from 0), and the result is normalized again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mlp_lab.config.schema import AugmentConfig

# Mixed into the generator's seed so augmentation never draws the numbers the shuffle draws.
AUGMENT_STREAM = 0xA6


def batch_generator(seed: int, epoch: int, step: int, device: torch.device) -> torch.Generator:
    """The generator for one training batch, a function of (seed, epoch, step) alone."""
    mixed = int(np.random.SeedSequence([seed, epoch, step, AUGMENT_STREAM]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(mixed)


def _uniform(n: int, bound: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n draws uniform in [-bound, bound]."""
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * bound


def _sampling_grid(cfg: AugmentConfig, n: int, h: int, w: int, generator: torch.Generator, device) -> torch.Tensor:
    """Where each output pixel samples its input, (n, h, w, 2) in grid_sample's [-1, 1] units:
    the inverse of a random rotation, shear, zoom and shift, plus a smooth elastic displacement."""
    angle = torch.deg2rad(_uniform(n, cfg.rotation, generator, device))
    shear = torch.tan(torch.deg2rad(_uniform(n, cfg.shear, generator, device)))
    zoom = 1 + _uniform(n, cfg.scale, generator, device)
    shift = _uniform(2 * n, cfg.translate * 2, generator, device).view(n, 2)  # a side is 2 units long
    cos, sin = torch.cos(angle), torch.sin(angle)
    # The forward map is zoom * rotation @ shear, then the shift; grid_sample needs where each
    # output pixel comes from, its inverse: shear^-1 @ rotation^-1 / zoom, after undoing the shift.
    # Written out per coefficient: batched 2 x 3 matrix products are slow on the CPU at this size.
    a, b = (cos + shear * sin) / zoom, (sin - shear * cos) / zoom
    c, d = -sin / zoom, cos / zoom
    x, y = _pixel_centres(h, w, device)
    x = x.view(1, -1) - shift[:, :1]
    y = y.view(1, -1) - shift[:, 1:]
    grid = torch.stack([a.view(n, 1) * x + b.view(n, 1) * y, c.view(n, 1) * x + d.view(n, 1) * y], dim=2)
    grid = grid.view(n, h, w, 2)
    if cfg.elastic > 0:
        cells = cfg.elastic_cells
        coarse = torch.randn(n, 2, cells, cells, generator=generator, device=device)
        # pixels -> grid units, per axis (x then y, as grid_sample orders them)
        coarse = coarse * (cfg.elastic * torch.tensor([2 / w, 2 / h], device=device).view(1, 2, 1, 1))
        # Upsampled smoothly by two small matrix products (bicubic weights), far cheaper on the
        # CPU than interpolating every field.
        rows, cols = _upsampling(cells, h, device), _upsampling(cells, w, device)
        field = torch.matmul(torch.matmul(rows, coarse), cols.T)  # (n, 2, h, w)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def _pixel_centres(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel centre's x and y, (h*w,) each, in grid_sample's units (align_corners=False):
    the grid affine_grid would build for the identity."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) * 2 + 1) / w - 1
    return xs.repeat(h), ys.repeat_interleave(w)


def _upsampling(cells: int, size: int, device: torch.device) -> torch.Tensor:
    """(size, cells): bicubic interpolation of `cells` values onto `size` points, as a matrix."""
    eye = torch.eye(cells, device=device).view(cells, 1, 1, cells)
    return F.interpolate(eye, size=(1, size), mode="bicubic", align_corners=True).view(cells, size).T


def _max3(images: torch.Tensor) -> torch.Tensor:
    """The 3 x 3 neighbourhood maximum (zero outside), as two separable passes of shifted maxima:
    on the CPU several times faster than max_pool2d on single-channel images."""
    padded = F.pad(images, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def _stroke(images: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Each image's strokes thickened (towards the 3 x 3 dilation) or thinned (towards the erosion)
    by a share t uniform in [-amount, amount] of one pixel: t = 1 is a full dilation, -1 a full
    erosion, 0 leaves the image as it is. A full erosion wipes out MNIST's thinnest strokes, which
    is why the change is a blend and not a whole number of pixels."""
    n = images.shape[0]
    t = _uniform(n, amount, generator, images.device).view(n, 1, 1, 1)
    thick, thin = _max3(images), -_max3(-images)
    return images + t.clamp(min=0) * (thick - images) + t.clamp(max=0).neg() * (thin - images)


def _blur(images: torch.Tensor, max_sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A separable Gaussian blur with sigma uniform in [0, max_sigma] per image (sigma 0: unchanged)."""
    n, c, h, w = images.shape
    sigma = torch.rand(n, generator=generator, device=images.device) * max_sigma
    radius = max(1, math.ceil(2 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    weights = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))
    weights = (weights / weights.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*c, taps)
    planes = images.reshape(1, n * c, h, w)
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0)), weights.view(n * c, 1, 1, -1), groups=n * c)
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius)), weights.view(n * c, 1, -1, 1), groups=n * c)
    return planes.view(n, c, h, w)


def augment_pixels(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Distort images (N, C, H, W) on the [0, 1] scale, background 0: geometry, then stroke, then blur."""
    n, _, h, w = images.shape
    out = images
    if any(v > 0 for v in (cfg.rotation, cfg.scale, cfg.shear, cfg.translate, cfg.elastic)):
        grid = _sampling_grid(cfg, n, h, w, generator, images.device)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.stroke > 0:
        out = _stroke(out, cfg.stroke, generator)
    if cfg.blur > 0:
        out = _blur(out, cfg.blur, generator)
    return out.clamp_(0.0, 1.0)


def augment_batch(
    x: torch.Tensor,
    cfg: AugmentConfig,
    image_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Normalized feature rows (N, C*H*W) -> augmented rows of the same shape, dtype and device."""
    c, h, w = image_shape
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    images = x.view(-1, c, h, w) * s + m
    return ((augment_pixels(images, cfg, generator) - m) / s).flatten(1)


class Augmenter:
    """The training split's augmentation for one run: `augmenter(x, epoch, step)` distorts a batch."""

    def __init__(
        self, cfg: AugmentConfig, image_shape: Sequence[int], mean: Sequence[float], std: Sequence[float], seed: int
    ) -> None:
        self.cfg, self.image_shape, self.mean, self.std, self.seed = cfg, tuple(image_shape), mean, std, seed

    def __call__(self, x: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        generator = batch_generator(self.seed, epoch, step, x.device)
        return augment_batch(x, self.cfg, self.image_shape, self.mean, self.std, generator)
