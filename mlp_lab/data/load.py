"""Datasets as tensors on the run's device.

A registered source (`registry`) reads its files into uint8 images, a user's source
(`data.source`, `user`) into uint8 images or float values; after that each split is one
flattened, normalized float tensor plus a label tensor, so training takes index slices instead of
running a per-sample DataLoader. Finding the files is `locate`'s job, the split `split`'s, the
normalisation `normalise`'s; this module puts them together and names no dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mlp_lab.config.schema import DataConfig
from mlp_lab.data import registry
from mlp_lab.data.locate import describe_source, locate
from mlp_lab.data.normalise import channel_stats, standardise, to_features, value_stats
from mlp_lab.data.source import DataError, DatasetSource
from mlp_lab.data.split import pixel_permutation, split_indices
from mlp_lab.data.user import read_source


@dataclass(frozen=True)
class Split:
    """One split: `x` is (N, features) float32 normalized, `y` is (N,) int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass(frozen=True)
class DatasetInfo:
    """Describes the tensors: enough to turn a row back into an image or preprocess a new one."""

    name: str
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]  # per channel, on the [0, 1] pixel scale, from the train split
    std: tuple[float, ...]
    source: str  # the directory the files were read from, and where they were copied from
    pixel_permutation: tuple[int, ...] | None = None  # data.permute_pixels: features[..., i] = pixel perm[i]
    # What a raw value is divided by before mean and std apply: 255 for uint8 pixels, 1 for a
    # user's float arrays and tables (whose mean and std are on their own scale).
    scale: float = 255.0
    features: tuple[str, ...] = ()  # a table's feature names (its "channels"); empty for images

    @property
    def in_features(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Data:
    """Train, validation and test splits, all on one device, plus what describes them."""

    train: Split
    val: Split
    test: Split
    info: DatasetInfo


def _read(source: DatasetSource, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's uint8 images (N, C, H, W) and int64 labels, checked against the facts."""
    images, labels = source.read(source.directory(root), train)
    facts = source.facts
    if tuple(images.shape[1:]) != facts.image_shape or images.shape[0] != labels.shape[0]:
        raise DataError(f"{root}: {source.name} images have shape {tuple(images.shape)} and {labels.shape[0]} labels")
    if images.dtype != torch.uint8:
        raise DataError(f"{root}: {source.name} images are {images.dtype}, expected torch.uint8")
    if labels.numel() and (labels.min() < 0 or labels.max() >= facts.num_classes):
        raise DataError(f"{root}: {source.name} labels outside 0..{facts.num_classes - 1}")
    return images, labels.long()


def load_data(cfg: DataConfig, device: torch.device | str = "cpu", extra_dirs: Sequence[str | Path] = ()) -> Data:
    """Find the dataset, read it through its source, split, normalize, and put it on `device`."""
    if cfg.source is not None:
        return _load_user_data(cfg, device)
    source = registry.source_for(cfg.dataset)
    root = locate(cfg, extra_dirs)
    try:
        train_images, train_labels = _read(source, root, train=True)
        test_images, test_labels = _read(source, root, train=False)
    except DataError:
        raise
    except Exception as exc:  # torchvision's parser asserts on malformed files
        raise DataError(f"{root}: cannot parse {source.name}: {type(exc).__name__}: {exc}") from None
    if train_labels.numel() < 2:
        raise DataError(f"{root}: {source.name} has {train_labels.numel()} training examples, too few to split")
    train_idx, val_idx = split_indices(train_labels.shape[0], cfg.val_fraction, cfg.split_seed)
    mean, std = channel_stats(train_images[train_idx])
    facts = source.facts
    c, h, w = facts.image_shape
    permutation = pixel_permutation(h * w, cfg.permute_seed) if cfg.permute_pixels else None
    info = DatasetInfo(
        facts.name, facts.classes, facts.image_shape, mean, std, describe_source(source, root), permutation
    )

    def make(images: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(to_features(images, mean, std, permutation).to(device), labels.to(device))

    return Data(
        train=make(train_images[train_idx], train_labels[train_idx]),
        val=make(train_images[val_idx], train_labels[val_idx]),
        test=make(test_images, test_labels),
        info=info,
    )


def _load_user_data(cfg: DataConfig, device: torch.device | str) -> Data:
    """A user's source: the same seeded train/val split and per-split normalisation from the
    training split as a built-in dataset (uint8 images exactly as theirs; float values and
    tables standardised per channel or feature)."""
    raw = read_source(cfg)
    if raw.facts.table and cfg.augment.active:
        raise DataError(
            f"data.augment: rotates, shifts and blurs images; {raw.facts.name} is a table of "
            f"{len(raw.facts.features)} features: leave data.augment out for it"
        )
    train_idx, val_idx = split_indices(raw.y.shape[0], cfg.val_fraction, cfg.split_seed)
    images = raw.x.dtype == torch.uint8
    mean, std = (channel_stats if images else value_stats)(raw.x[train_idx])
    c, h, w = raw.x.shape[1:]
    permutation = pixel_permutation(h * w, cfg.permute_seed) if cfg.permute_pixels else None
    facts = raw.facts
    info = DatasetInfo(
        facts.name,
        facts.classes,
        (c, h, w),
        mean,
        std,
        raw.where,
        permutation,
        scale=255.0 if images else 1.0,
        features=facts.features,
    )
    features = to_features if images else standardise

    def make(x: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(features(x, mean, std, permutation).to(device), labels.to(device))

    x_test, y_test = raw.test
    return Data(
        train=make(raw.x[train_idx], raw.y[train_idx]),
        val=make(raw.x[val_idx], raw.y[val_idx]),
        test=make(x_test, y_test),
        info=info,
    )
