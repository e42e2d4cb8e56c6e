"""Any dataset class of ``torchvision.datasets`` by name (data.source.name, e.g. KMNIST), read
into memory once: its train and test splits (the ``train`` flag, or ``split`` where the class
takes that), downloaded into data.root where data.download is on and the machine has a network."""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.datasets as tvd

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.config.schema import DataConfig
from mlp_lab.config.sources import TorchvisionSource
from mlp_lab.data.raw import RawData, as_inputs, check_fits, encode_labels, make_facts
from mlp_lab.data.source import DataError


def dataset_class(name: str) -> type:
    """The class `name` of torchvision.datasets; an unknown name is a one-line error with the
    nearest names."""
    known = sorted(n for n in dir(tvd) if isinstance(getattr(tvd, n), type) and n[0].isupper())
    cls = getattr(tvd, name, None)
    if name in known and cls is not None:
        return cls
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5) or [n for n in known if n.lower() == name.lower()]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise DataError(
        f"data.source.name: torchvision.datasets has no {name!r}; {hint}(a class of torchvision.datasets, e.g. KMNIST)"
    )


def has_splits(cls: type, source: TorchvisionSource) -> bool:
    """Whether the class picks its test split itself (a ``train`` or ``split`` argument the
    config leaves to us); else it is read once and data.source.test_fraction is held out."""
    parameters = inspect.signature(cls).parameters
    return any(flag in parameters and flag not in source.args for flag in ("train", "split"))


def _split(cls: type, source: TorchvisionSource, data: DataConfig, train: bool) -> Any:
    parameters = inspect.signature(cls).parameters
    args = dict(source.args)
    if "train" in parameters:
        args.setdefault("train", train)
    elif "split" in parameters:
        args.setdefault("split", "train" if train else "test")
    root = Path(data.root)
    # Where the class stores files and whether it may fetch them (FakeData does neither).
    if "root" in parameters:
        args.setdefault("root", str(root))
    if "download" in parameters:
        args.setdefault("download", data.download)
    try:
        return cls(**args)
    except RuntimeError as exc:
        if not data.download:
            raise DataError(
                f"data.source: {source.name} is not in {root} and data.download is false; set data.download: true "
                f"(needs a network) or put its files in {root}"
            ) from None
        raise DataError(
            f"data.source: {source.name} could not be downloaded into {root} ({_first_line(exc)})"
        ) from None
    except OSError as exc:  # URLError and socket errors: no network
        raise DataError(
            f"data.source: {source.name} could not be downloaded into {root} ({_first_line(exc)}); with no "
            f"network, copy its files into {root} and set data.download: false"
        ) from None
    except TypeError as exc:
        raise DataError(f"data.source.args: {source.name} does not take them ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _arrays(dataset: Any, what: str) -> tuple[torch.Tensor, Any]:
    """A dataset's images (N, C, H, W) and labels: its in-memory `data`/`targets` where it has
    them (MNIST's kin, CIFAR), else every item read once."""
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", getattr(dataset, "labels", None))
    if isinstance(data, torch.Tensor | np.ndarray) and targets is not None and len(data) == len(targets):
        return as_inputs(data, what), targets
    if len(dataset) == 0:
        raise DataError(f"{what}: no examples")
    check_fits(what, len(dataset), np.asarray(dataset[0][0]).size, raw_bytes_per_value=1)
    images, labels = [], []
    for i in range(len(dataset)):
        image, label = dataset[i]
        images.append(np.asarray(image))
        labels.append(label)
    return as_inputs(np.stack(images), what), np.asarray(labels)


def read_torchvision(source: TorchvisionSource, data: DataConfig) -> RawData:
    """Both splits of the class as tensors, with the class's own class names where it has them."""
    cls = dataset_class(source.name)
    what = f"torchvision.datasets.{source.name}"
    train = _split(cls, source, data, True)
    x, y = _arrays(train, what)
    parts = [(y, f"{what} train labels")]
    test = None
    if has_splits(cls, source):
        x_test, y_test = _arrays(_split(cls, source, data, False), what)
        check_fits(what, x.shape[0] + x_test.shape[0], x[0].numel(), x.element_size())
        parts.append((y_test, f"{what} test labels"))
    named = getattr(train, "classes", None)  # the class's own names (KMNIST's, CIFAR's), by label
    encoded, classes = encode_labels(parts, [str(c) for c in named] if named else None)
    if len(encoded) == 2:
        test = (x_test, encoded[1])
    return RawData(x, encoded[0], test, make_facts(source, x.shape[1:], classes), f"{what} in {data.root}")


def torchvision_facts(data: DataConfig) -> DatasetFacts:
    """The facts need the data (read from data.root, as load_data would)."""
    return read_torchvision(data.source, data).facts
