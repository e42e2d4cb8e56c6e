"""What a config costs without building it: its model's parameters for a known dataset (from the
model section's `geometry`), the memory training needs, this machine's memory."""

from __future__ import annotations

import os
from typing import Any

from mlp_lab.config.datasets import DATASETS, facts_for
from mlp_lab.config.schema import Config, DataConfig
from mlp_lab.config.section import Geometry, ModelSection

UNKNOWN = Geometry(features=0, parameters=0, macs=0)


def dataset_geometry(model: ModelSection, data: DataConfig | str) -> Geometry:
    """A model section's `geometry` for a config's data (or a registered dataset's name); raises
    GeometryError where it does not fit the images. A user's source whose facts are not known
    yet (its reader not imported) gives zeros: nothing to check against."""
    facts: Any = DATASETS[data] if isinstance(data, str) else facts_for(data)
    if facts is None:
        return UNKNOWN
    return model.geometry(facts.image_shape, facts.num_classes)


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
    return dataset_geometry(cfg.model, cfg.data).parameters * 4 * (2 + states)


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
