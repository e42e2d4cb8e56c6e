"""Dataset facts: each dataset's name, how people write it, its image shape, its classes, and the
metric plug-ins and picture recipe it offers; the registry of the names a config may give.

No torch and nothing of ours: the schema, the app, the reports and the size estimates read these
without loading a tensor library. The design, in two layers: this torch-free record is what a
dataset *is*; `mlp_lab.data.registry`'s `DatasetSource` owns one of these records and adds where
the files come from and how they are read into tensors. Registering a source
(`mlp_lab.data.registry.register`) registers its facts here, so a config names it. The built-in
datasets' facts are listed below because the config layer must know them without importing
`data`; their sources (files, checksums, readers, quirks) are in `mlp_lab.data.builtin`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DatasetFacts:
    """What one dataset is, whatever copy of it is loaded."""

    name: str  # as a config writes it (data.dataset)
    display_name: str  # as its authors and papers write it
    image_shape: tuple[int, int, int]  # (channels, height, width)
    classes: tuple[str, ...]  # by label index
    # Metric plug-ins (`mlp_lab.config.plugins`) a run of this dataset may ask for, by name.
    metric_plugins: tuple[str, ...] = ()
    # How `predict` prepares a user's picture by default: "digit" (MNIST's crop, scale and
    # centring), "fashion" (FashionMNIST's) or "plain" (resize the whole picture).
    picture_recipe: str = "plain"
    # A table's feature names (a CSV's columns); empty for images. A table's rows are held as
    # (features, 1, 1) "images", so per-channel normalisation is per-feature standardisation.
    features: tuple[str, ...] = ()

    @property
    def table(self) -> bool:
        return bool(self.features)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """What a user's model is told its input is: (C, H, W), or (features,) for a table."""
        return (self.in_features,) if self.table else self.image_shape

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def in_features(self) -> int:
        """The length of one flattened image: what a model's first layer takes."""
        channels, height, width = self.image_shape
        return channels * height * width

    @property
    def num_classes(self) -> int:
        return len(self.classes)


FASHION_MNIST = DatasetFacts(
    "fashion_mnist",
    "FashionMNIST",
    (1, 28, 28),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    picture_recipe="fashion",
)
MNIST = DatasetFacts(
    "mnist",
    "MNIST",
    (1, 28, 28),
    tuple(str(digit) for digit in range(10)),
    metric_plugins=("handwriting",),
    picture_recipe="digit",
)
CIFAR10 = DatasetFacts(
    "cifar10",
    "CIFAR-10",
    (3, 32, 32),
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)

# Every dataset a config may name, in the order the docs and the app list them. Registration
# adds to it (`register_facts`); nothing else writes it.
DATASETS: dict[str, DatasetFacts] = {facts.name: facts for facts in (FASHION_MNIST, MNIST, CIFAR10)}


def register_facts(facts: DatasetFacts) -> None:
    """Make `facts.name` a dataset a config may name. Registering the same facts again is a
    no-op (a notebook cell run twice); other facts under a registered name are refused."""
    known = DATASETS.get(facts.name)
    if known is not None and known != facts:
        raise ValueError(f"dataset {facts.name!r} is already registered with other facts")
    DATASETS[facts.name] = facts


def unregister_facts(name: str) -> None:
    """Forget a registered dataset (a test's or a notebook's own); unknown names are ignored."""
    DATASETS.pop(name, None)


def names() -> tuple[str, ...]:
    """The names a config's data.dataset may take, in registration order."""
    return tuple(DATASETS)


def offering(plugin: str) -> tuple[str, ...]:
    """The datasets whose runs may ask for metric plug-in `plugin`."""
    return tuple(name for name, facts in DATASETS.items() if plugin in facts.metric_plugins)


def display_name(name: str) -> str:
    """How people write a dataset's name (fashion_mnist -> FashionMNIST); an unknown name as given."""
    facts = DATASETS.get(name)
    return facts.display_name if facts else name


# How the facts of a user's source (`data.source`, config.sources) are found, per kind: reading
# them needs the data (and for python and torchvision sources, torch and the user's code), so the
# data layer registers these (`mlp_lab.data.user`); until it is imported they are unknown.
_SOURCE_FACTS: dict[str, Callable[[Any], DatasetFacts]] = {}
_FACTS_CACHE: dict[str, DatasetFacts] = {}


def register_source_facts(kind: str, facts: Callable[[Any], DatasetFacts]) -> None:
    """Say how the facts of a `data.source` of `kind` are found (the data layer does, on import):
    `facts(data)` is given the whole data section (a torchvision source reads from data.root)."""
    _SOURCE_FACTS[kind] = facts


def facts_for(data: Any) -> DatasetFacts | None:
    """The facts of a config's `data` section: a registered dataset's, or its source's (found
    once per source and fingerprint); None for a source whose reader is not imported."""
    if data.source is None:
        return DATASETS[data.dataset]
    finder = _SOURCE_FACTS.get(data.source.kind)
    if finder is None:
        return None
    key = json.dumps([data.source.model_dump(mode="json"), data.root], sort_keys=True)
    if key not in _FACTS_CACHE:
        _FACTS_CACHE[key] = finder(data)
    return _FACTS_CACHE[key]
