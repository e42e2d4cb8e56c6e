"""What a config costs without building it: parameter counts, the CNN's geometry, the memory
training needs, this machine's memory."""

from __future__ import annotations

import os

from mlp_lab.config.datasets import DATASETS
from mlp_lab.config.schema import Config, ConvConfig, ModelConfig


def dataset_parameter_count(model: ModelConfig, dataset: str) -> int:
    """`parameter_count` of a model for one of the registered datasets (read when asked: a dataset
    registered after import counts too)."""
    facts = DATASETS[dataset]
    return parameter_count(model, facts.in_features, facts.num_classes, facts.image_shape)


def conv_shapes(conv: ConvConfig, image_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The (channels, height, width) after each conv block (after its pooling): the CNN's geometry
    without torch. A block whose output would be empty raises ValueError naming it."""
    c, h, w = image_shape
    shapes = []
    for i, (channels, pad) in enumerate(zip(conv.channels, conv.paddings())):
        h, w = h + 2 * pad - conv.kernel_size + 1, w + 2 * pad - conv.kernel_size + 1
        if conv.pool != "none":
            h, w = h // conv.pool_size, w // conv.pool_size
        if h < 1 or w < 1:
            raise ValueError(
                f"block {i + 1} of {len(conv.channels)} leaves no pixels ({image_shape[1]}x{image_shape[2]} input)"
            )
        c = channels
        shapes.append((c, h, w))
    return shapes


def conv_parameter_count(conv: ConvConfig, in_channels: int) -> int:
    """Parameters of the conv blocks (with BatchNorm the Conv2d has no bias)."""
    count, c = 0, in_channels
    for channels in conv.channels:
        count += c * channels * conv.kernel_size**2 + (2 * channels if conv.batch_norm else channels)
        c = channels
    return count


def parameter_count(
    model: ModelConfig, in_features: int, num_classes: int, image_shape: tuple[int, int, int] | None = None
) -> int:
    """Parameters of the network a ModelConfig describes (weights and biases, BatchNorm's scale
    and shift; with BatchNorm the layer before it has no bias), computed without building it. A
    CNN needs the `image_shape`: its head's input is what the conv blocks leave."""
    count, width = 0, in_features
    if model.kind == "cnn":
        if image_shape is None:
            raise ValueError("a CNN's parameter count needs the image shape")
        c, h, w = conv_shapes(model.conv, image_shape)[-1]
        count, width = conv_parameter_count(model.conv, image_shape[0]), c * h * w
    for size in model.hidden_sizes:
        count += width * size + (2 * size if model.batch_norm else size)
        width = size
    return count + width * num_classes + num_classes


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def training_bytes(cfg: Config) -> int:
    """The least memory training needs for the parameters: float32 weights and gradients plus
    the optimizer's state (Adam: two moments; SGD with momentum: one buffer)."""
    opt = cfg.train.optimizer
    states = 2 if opt.name in ("adam", "adamw") else (1 if opt.momentum > 0 else 0)
    return dataset_parameter_count(cfg.model, cfg.data.dataset) * 4 * (2 + states)


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
