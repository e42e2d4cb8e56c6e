"""The built-in datasets: FashionMNIST, MNIST (IDX files) and CIFAR-10 (pickled batches), each
described once here as a `DatasetSource` around its facts (`mlp_lab.config.datasets`).

torchvision parses the files and downloads them; everything about where copies are found is
generic (`locate`), driven by the fields below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision.datasets as tvd

from mlp_lab.config import datasets
from mlp_lab.data.source import DataError, DatasetSource

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def check_idx_file(path: Path) -> None:
    """Check an IDX file's magic number and that its size matches its header, naming the file."""
    try:
        with open(path, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or header[0] != 0 or header[1] != 0 or header[2] != 0x08 or not 1 <= header[3] <= 3:
                raise DataError(
                    f"{path}: not an IDX file of unsigned bytes (bad magic number {header.hex() or 'empty'})"
                )
            ndim = header[3]
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
        expected = 4 + 4 * ndim + math.prod(dims)
        actual = path.stat().st_size
        if actual != expected:
            raise DataError(f"{path}: IDX header says {dims} ({expected} bytes) but the file has {actual} bytes")
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def _torchvision_download(cls: type) -> Callable[[Path], str]:
    def download(root: Path) -> str:
        for train in (True, False):
            cls(str(root), train=train, download=True)
        return "downloaded by torchvision"

    return download


def idx_source(
    facts: datasets.DatasetFacts,
    cls: type,
    labels_sha256: str,
    known_dirs: tuple[str, ...] = (),
    install_hint: str = "",
) -> DatasetSource:
    """An IDX dataset as torchvision's `cls` (MNIST, FashionMNIST) reads it from `<root>/<cls>/raw`;
    `labels_sha256` is its uncompressed official train-labels file's."""

    def read(directory: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = "train" if train else "t10k"
        for kind in ("images-idx3", "labels-idx1"):
            check_idx_file(directory / f"{prefix}-{kind}-ubyte")
        ds = cls(str(directory.parents[1]), train=train, download=False)
        return ds.data.unsqueeze(1), ds.targets.long()

    def tutorial(directory: Path, transform: Any) -> Any:
        return cls(str(directory.parents[1]), train=True, transform=transform, download=False)

    return DatasetSource(
        facts=facts,
        files=IDX_FILES,
        read=read,
        folder=f"{cls.__name__}/raw",
        aliases=(cls.__name__,),
        known_dirs=known_dirs,
        gzip_ok=True,
        fingerprint=("train-labels-idx1-ubyte", labels_sha256),
        download=_torchvision_download(cls),
        install_hint=install_hint,
        tutorial_dataset=tutorial,
    )


class LocalCIFAR10(tvd.CIFAR10):
    """torchvision's CIFAR10, checking that the batch files exist rather than their md5, so a
    copy prepared elsewhere (or a test fixture in the real pickled format) loads. Downloads
    still go through torchvision's own checked archive."""

    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


def _read_cifar(directory: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        ds = LocalCIFAR10(str(directory.parent), train=train, download=False)
    except Exception as exc:  # a corrupt pickle raises whatever pickle or numpy raises
        raise DataError(f"{directory}: cannot parse the CIFAR-10 batches: {exc}") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(ds.targets, dtype=torch.long)


FASHION_MNIST = idx_source(
    datasets.FASHION_MNIST,
    tvd.FashionMNIST,
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    known_dirs=("/usr/share/datasets/fashion-mnist",),
    install_hint=" (Debian/Ubuntu: apt-get install dataset-fashion-mnist)",
)
MNIST = idx_source(
    datasets.MNIST,
    tvd.MNIST,
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    known_dirs=("/usr/share/datasets/mnist",),
)
CIFAR10 = DatasetSource(
    facts=datasets.CIFAR10,
    files=CIFAR_FILES,
    read=_read_cifar,
    folder="cifar-10-batches-py",
    aliases=("CIFAR10",),
    # torchvision's own layout (<root>/cifar-10-batches-py): read where it is, no copy.
    load_in_place=True,
    download=_torchvision_download(tvd.CIFAR10),
    tutorial_dataset=lambda directory, transform: tvd.CIFAR10(
        str(directory.parent), train=True, transform=transform, download=False
    ),
)

BUILTIN = (FASHION_MNIST, MNIST, CIFAR10)
