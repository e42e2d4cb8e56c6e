"""What a dataset source is: a dataset's facts plus where its files are found and how they are
read into tensors. The built-in sources are in `builtin`; `registry` knows them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.core.errors import MLPLabError

# Reads one split from the folder holding the files: (uint8 images (N, C, H, W), int64 labels (N,)).
Reader = Callable[[Path, bool], tuple[torch.Tensor, torch.Tensor]]


class DataError(MLPLabError):
    """The dataset could not be found, downloaded or parsed."""


@dataclass(frozen=True)
class DatasetSource:
    """One dataset: its torch-free `facts` (what config, reports and the app see), the files a
    complete copy holds, and `read`, which parses a split of them. The rest says where copies
    are found and any quirk of the dataset's layout; generic code (`locate`, `load`) asks these
    fields and never a dataset's name."""

    facts: DatasetFacts
    files: tuple[str, ...]  # the file names a complete copy holds
    read: Reader
    folder: str = ""  # where under data.root the reader finds the files; "" means the dataset's name
    aliases: tuple[str, ...] = ()  # more folder names a searched directory may hold the files under
    known_dirs: tuple[str, ...] = ()  # system locations searched after --data-dir and $MLP_LAB_DATA
    gzip_ok: bool = False  # copies found elsewhere may be gzipped; they are decompressed into the root
    # (file, sha256 of its uncompressed bytes): tells this dataset from another one that uses the
    # same file names (MNIST and FashionMNIST), so a directory holding the other is skipped.
    fingerprint: tuple[str, str] | None = None
    load_in_place: bool = False  # a copy found already laid out as `folder` is read where it is
    # Fetches the files into `folder` under the given root; returns where they came from.
    download: Callable[[Path], str] | None = None
    install_hint: str = ""  # appended to the not-found message, e.g. a system package to install
    # The dataset as a per-sample torch Dataset with `transform` (bench's tutorial pipeline).
    tutorial_dataset: Callable[[Path, Any], Any] | None = None

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def subdir(self) -> str:
        return self.folder or self.name

    def directory(self, root: Path) -> Path:
        """The folder under a data root that holds this dataset's files."""
        return root / self.subdir
