"""Looking at the data and the model before training: `mlp-lab data` and `mlp-lab summary`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mlp_lab.config.datasets import facts_for
from mlp_lab.config.schema import AugmentConfig, Config, DataConfig
from mlp_lab.data.augment import Augmenter
from mlp_lab.data.load import Data, load_data
from mlp_lab.inspect.plots import image_grid
from mlp_lab.models.registry import build_model, layer_table, macs_per_sample

FEATURES_SHOWN = 20  # a table's features `mlp-lab data` summarises (the first ones)


def unnormalize(
    x: torch.Tensor, image_shape: Sequence[int], mean: Sequence[float], std: Sequence[float], clamp: bool = True
) -> torch.Tensor:
    """Normalized feature rows (N, C*H*W) back to images (N, C, H, W) in [0, 1] (unclamped:
    on the raw values' own scale, for float arrays)."""
    c, h, w = image_shape
    images = x.detach().cpu().float().view(-1, c, h, w)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (images * s + m).clamp(0, 1) if clamp else images * s + m


def describe_data(data: Data) -> dict[str, Any]:
    """Shape, dtype, channels, value range, class names and per-class counts of every split."""
    info = data.info
    c, h, w = info.image_shape
    counts = {}
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        counts[name] = torch.bincount(split.y.cpu(), minlength=info.num_classes).tolist()
    train_x = data.train.x
    pixels = info.scale == 255.0
    description = {
        "dataset": info.name,
        "source": info.source,
        "image_shape": [c, h, w],
        "channels": c,
        "colour": "table" if info.features else "grayscale" if c == 1 else "colour (RGB)",
        "raw_dtype": "uint8" if pixels else "float32",
        "raw_range": [0, 255] if pixels else _raw_range(data),
        "tensor_dtype": str(train_x.dtype).replace("torch.", ""),
        "tensor_shape": {name: list(getattr(data, name).x.shape) for name in ("train", "val", "test")},
        "normalized_range": [float(train_x.min()), float(train_x.max())],
        "mean": list(info.mean),
        "std": list(info.std),
        "classes": list(info.classes),
        "counts": counts,
    }
    if info.features:
        description["features"] = feature_summary(data)
    return description


def _raw_range(data: Data) -> list[float]:
    """The train split's least and greatest value on its own scale (float arrays and tables)."""
    c = data.info.image_shape[0]
    raw = data.train.x.view(len(data.train), c, -1).double() * torch.tensor(data.info.std, dtype=torch.float64).view(
        1, -1, 1
    ) + torch.tensor(data.info.mean, dtype=torch.float64).view(1, -1, 1)
    return [float(raw.min()), float(raw.max())]


def feature_summary(data: Data, first: int = FEATURES_SHOWN) -> list[dict[str, Any]]:
    """Mean, std, min and max of a table's first features over the train split, on their own scale."""
    info = data.info
    rows = []
    for j, name in enumerate(info.features[:first]):
        values = data.train.x[:, j].double() * info.std[j] + info.mean[j]
        rows.append(
            {
                "feature": name,
                "mean": info.mean[j],
                "std": info.std[j],
                "min": float(values.min()),
                "max": float(values.max()),
            }
        )
    return rows


def sample_grid(data: Data, path: str | Path, per_class: int = 4, seed: int = 0) -> None:
    """A PNG grid of training samples, `per_class` of each class, captioned with the class name."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    labels = data.train.y.cpu()
    for k in range(data.info.num_classes):
        idx = (labels == k).nonzero().flatten()
        chosen += idx[torch.randperm(len(idx), generator=generator)[:per_class]].tolist()
    info = data.info
    if info.scale == 255.0:
        images = unnormalize(data.train.x[chosen], info.image_shape, info.mean, info.std).numpy()
    else:  # float arrays on their own scale: shown stretched to [0, 1]
        shown = unnormalize(data.train.x[chosen], info.image_shape, info.mean, info.std, clamp=False)
        images = ((shown - shown.min()) / (shown.max() - shown.min()).clamp_min(1e-12)).numpy()
    titles = [data.info.classes[labels[i]] for i in chosen]
    image_grid(images, titles, path, f"{data.info.name}: {per_class} training samples per class", cols=per_class * 2)


def augmented_grid(data: Data, cfg: AugmentConfig, path: str | Path, draws: int = 5, seed: int = 0) -> None:
    """A PNG grid of one training sample per class (first column) and `draws` augmented versions
    of it, as training batches would see them (the generators of the first steps of epoch 0)."""
    generator = torch.Generator().manual_seed(seed)
    labels = data.train.y.cpu()
    chosen = [
        int((labels == k).nonzero().flatten()[torch.randint(int((labels == k).sum()), (1,), generator=generator)])
        for k in range(data.info.num_classes)
    ]
    x = data.train.x[chosen]
    augmenter = Augmenter(cfg, data.info.image_shape, data.info.mean, data.info.std, seed)
    rows = [x, *(augmenter(x, 0, step) for step in range(draws))]
    stacked = torch.stack(rows, dim=1).flatten(0, 1)  # per class: the original, then its draws
    images = unnormalize(stacked, data.info.image_shape, data.info.mean, data.info.std).numpy()
    titles = [data.info.classes[labels[i]] if d == 0 else f"draw {d}" for i in chosen for d in range(draws + 1)]
    image_grid(
        images,
        titles,
        path,
        f"{data.info.name}: a training sample per class, then {draws} augmented draws",
        cols=draws + 1,
    )


def inspect_data(
    cfg: DataConfig, out_dir: str | Path, data_dirs: Sequence[str] = ()
) -> tuple[dict[str, Any], Path | None]:
    """Describe a dataset and write its sample grid into `out_dir`; returns (description, PNG
    path; None for a table, whose description has a feature summary instead). With `cfg.augment`
    on, an augmented grid too (its path in the description's `augmented_grid`)."""
    data = load_data(cfg, "cpu", data_dirs)
    description = describe_data(data)
    if data.info.features:
        return description, None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{cfg.name}_samples.png"
    sample_grid(data, path)
    if cfg.augment.active:
        augmented = out_dir / f"{cfg.name}_augmented.png"
        augmented_grid(data, cfg.augment, augmented)
        description["augmented_grid"] = str(augmented)
    return description, path


def model_summary(config: Config) -> dict[str, Any]:
    """Layer table (layer, output shape, parameters, MACs), totals and multiply-accumulates per sample.

    Needs only the dataset's shape, not its files. MACs as the model section's `geometry` counts them
    (a user's model: as torch's flop counter counts its forward pass).
    """
    facts = facts_for(config.data)
    model = build_model(config.model, facts.image_shape, facts.num_classes)
    return {
        "input_shape": ["batch", *facts.image_shape],
        "layers": layer_table(model, facts.image_shape),
        "total_parameters": model.num_parameters(),
        "trainable_parameters": model.num_parameters(trainable_only=True),
        "macs_per_sample": macs_per_sample(model, config.model, facts.image_shape, facts.num_classes),
    }
