"""Dataset facts, defined once: each supported dataset's name, how people write it, its image
shape and its classes.

No torch and nothing of ours: the app, the reports and the size estimates read these without
loading a tensor library. Where a dataset's files come from and how they are parsed is `data`'s
job; the names a config may give are the schema's (`config.DataConfig.dataset`), kept equal to
these by a test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetFacts:
    """What one dataset is, whatever copy of it is loaded."""

    name: str  # as a config writes it (data.dataset)
    display_name: str  # as its authors and papers write it
    image_shape: tuple[int, int, int]  # (channels, height, width)
    classes: tuple[str, ...]  # by label index

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


DATASETS: dict[str, DatasetFacts] = {
    facts.name: facts
    for facts in (
        DatasetFacts(
            "fashion_mnist",
            "FashionMNIST",
            (1, 28, 28),
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        DatasetFacts("mnist", "MNIST", (1, 28, 28), tuple(str(digit) for digit in range(10))),
        DatasetFacts(
            "cifar10",
            "CIFAR-10",
            (3, 32, 32),
            ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        ),
    )
}


def display_name(name: str) -> str:
    """How people write a dataset's name (fashion_mnist -> FashionMNIST); an unknown name as given."""
    facts = DATASETS.get(name)
    return facts.display_name if facts else name
