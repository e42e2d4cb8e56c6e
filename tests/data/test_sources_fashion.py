"""The headline check of a user's folder source: FashionMNIST (Debian's package, found by the
built-in path) written as a folder of PNGs with train/ and test/ folders, and the built-in MLP
trained through it and through the built-in dataset path, three seeds of two epochs each: the
paired 95% interval of the test-accuracy differences includes 0.

Like with like on a fixed subset (the first 12,000 training and 2,000 test images, to stay near a
minute on two cores): the built-in arm reads the same subset through a registered source around
the built-in reader, so both arms go through `load_data`'s own paths. What differs is only what a
user's folder changes: the files' format and order, hence which examples the seeded split holds
out for validation. With MLP_LAB_ALL_IMAGES=1 it writes and trains on all 70,000 images
(docs/results/2026-12-07-user-data.md has both runs' figures).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import DataConfig
from mlp_lab.data import builtin, registry
from mlp_lab.data.load import load_data
from mlp_lab.data.locate import locate
from mlp_lab.data.source import DatasetSource
from mlp_lab.data.user import read_source
from mlp_lab.studies.report import paired_difference
from mlp_lab.training.trainer import train

pytestmark = pytest.mark.slow

# MLP_LAB_ALL_IMAGES=1 runs it on all 70,000 images (the results page's figures).
ALL_IMAGES = os.environ.get("MLP_LAB_ALL_IMAGES") == "1"
N_TRAIN, N_TEST = (60_000, 10_000) if ALL_IMAGES else (12_000, 2_000)
SEEDS = (0, 1, 2)


def _first(directory, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = builtin.FASHION_MNIST.read(directory, train)
    n = N_TRAIN if train else N_TEST
    return images[:n], labels[:n]


FIRST = DatasetSource(
    facts=DatasetFacts(
        "fashion_mnist_first", "FashionMNIST (first images)", (1, 28, 28), builtin.FASHION_MNIST.facts.classes
    ),
    files=builtin.IDX_FILES,
    read=_first,
    folder=builtin.FASHION_MNIST.folder,  # the built-in copy's files, where load_data installed them
)


@pytest.fixture
def first_images():
    registry.register(FIRST)
    yield FIRST
    registry.unregister(FIRST.name)


def write_png_folder(root, directory) -> None:
    """Each split's images as PNGs under <split>/<class name>/, as a user would have them."""
    names = [name.replace("/", "-") for name in builtin.FASHION_MNIST.facts.classes]  # T-shirt/top
    for split, is_train in (("train", True), ("test", False)):
        images, labels = _first(directory, is_train)
        for name in names:
            (root / split / name).mkdir(parents=True)
        for i, (image, label) in enumerate(zip(images[:, 0].numpy(), labels.tolist(), strict=True)):
            Image.fromarray(image).save(root / split / names[label] / f"{i:05d}.png", compress_level=1)


def test_folder_of_pngs_trains_like_the_builtin_dataset(tmp_path, first_images):
    started = time.perf_counter()
    root = str(tmp_path / "data")
    directory = builtin.FASHION_MNIST.directory(locate(DataConfig(dataset="fashion_mnist", root=root)))
    write_png_folder(tmp_path / "pngs", directory)
    written = time.perf_counter()
    through = {
        "builtin": load_data(DataConfig(dataset=FIRST.name, root=root)),
        "folder": load_data(DataConfig(source={"kind": "folder", "path": str(tmp_path / "pngs"), "image_size": 28})),
    }
    loaded = time.perf_counter()
    # The same pictures, losslessly: the folder's test images are the built-in ones (in class order).
    folder_raw = read_source(DataConfig(source={"kind": "folder", "path": str(tmp_path / "pngs"), "image_size": 28}))
    builtin_test = _first(directory, False)[0]
    assert sorted(folder_raw.test[0].flatten(1).sum(1).tolist()) == sorted(builtin_test.flatten(1).sum(1).tolist())
    assert [len(through[arm].train) + len(through[arm].val) for arm in through] == [N_TRAIN, N_TRAIN]

    accuracy: dict[str, dict[int, float]] = {arm: {} for arm in through}
    for seed in SEEDS:
        for arm, data in through.items():
            config = validate_config(
                {"name": f"{arm}-{seed}", "seed": seed, "train": {"epochs": 2}, "output": {"dir": str(tmp_path)}},
                "test",
            )
            accuracy[arm][seed] = train(config, tmp_path / f"{arm}-{seed}", data=data)["test/acc"]
    difference = paired_difference(accuracy["folder"], accuracy["builtin"])
    print(
        f"\nwrite {written - started:.1f} s, load {loaded - written:.1f} s, train {time.perf_counter() - loaded:.1f} s; "
        f"test/acc builtin {accuracy['builtin']}, folder {accuracy['folder']}; folder - builtin "
        f"{difference.mean:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}]"
    )
    assert min(min(accs.values()) for accs in accuracy.values()) > 0.78  # both learned FashionMNIST
    assert difference.low <= 0 <= difference.high, difference
    assert abs(np.mean(list(accuracy["folder"].values())) - np.mean(list(accuracy["builtin"].values()))) < 0.02
