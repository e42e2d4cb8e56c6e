"""What every reader of a user's source (`data.source`) hands back: the raw splits as tensors
plus the dataset's facts, and the checks all readers share (labels to class indices, inputs to
(N, C, H, W), the size a dataset will take in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlp_lab.config import sizes
from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.data.source import DataError


@dataclass(frozen=True)
class RawData:
    """A source's examples before the split and normalisation: `x` is uint8 images (N, C, H, W)
    or float32 values of the same rank (a table: (N, features, 1, 1)), `y` int64 class indices;
    `test` is the source's own test split, or None where it has none."""

    x: torch.Tensor
    y: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor] | None
    facts: DatasetFacts
    where: str  # the file, folder or target the examples were read from


def make_facts(
    source: Any, image_shape: Sequence[int], classes: Sequence[str], features: Sequence[str] = ()
) -> DatasetFacts:
    """The facts of a user's source: its name, shape and classes (a table's feature names)."""
    name = source.dataset_name
    return DatasetFacts(name, name, tuple(int(d) for d in image_shape), tuple(classes), features=tuple(features))


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**28 else f"{n / 2**20:,.1f} MiB"


def check_fits(where: str, examples: int, values: int, raw_bytes_per_value: int = 4) -> None:
    """Refuse, in one line naming its size, a dataset whose raw values plus their float32
    features (what training holds) would not fit in this machine's memory."""
    memory = sizes.physical_memory()
    need = examples * values * (raw_bytes_per_value + 4)
    if memory is not None and need > memory:
        raise DataError(
            f"{where}: {examples:,} examples of {values:,} values need about {_gib(need)} in memory, more "
            f"than this machine's {_gib(memory)}; use a subset (fewer files or rows, a smaller image_size)"
        )


def _as_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{what}: cannot be read as an array ({type(exc).__name__}: {exc})") from None


def as_inputs(value: Any, what: str) -> torch.Tensor:
    """An array or tensor of inputs -> (N, C, H, W): uint8 images stay uint8 (scaled like the
    built-in datasets), anything numeric becomes float32; (N, F) is a table of F features held
    as (N, F, 1, 1), (N, H, W) grey images, (N, H, W, C) with C of 1 or 3 channels-last images."""
    array = _as_numpy(value, what)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{what}: inputs must be numbers, not {array.dtype} values")
    if array.ndim == 2:
        array = array[:, :, None, None]
    elif array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif array.ndim != 4:
        raise DataError(
            f"{what}: inputs of shape {array.shape}; give (N, features), (N, H, W), (N, C, H, W) or (N, H, W, C)"
        )
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


def encode_labels(
    parts: Sequence[tuple[Any, str]], classes: Sequence[str] | None = None
) -> tuple[list[torch.Tensor], tuple[str, ...]]:
    """Labels of every split (each with how messages name it) -> int64 class indices and the
    class names: names sorted where the labels are strings, "0".."K-1" where they are whole
    numbers (unless `classes` names them)."""
    arrays = [(_as_numpy(value, what).reshape(-1), what) for value, what in parts]
    if any(a.dtype.kind in "USO" for a, _ in arrays):
        texts = [a.astype(str) for a, _ in arrays]
        names = tuple(
            str(c) for c in (classes if classes is not None else sorted(set().union(*(set(t) for t in texts))))
        )
        index = {name: k for k, name in enumerate(names)}
        encoded = []
        for t, (_, what) in zip(texts, arrays, strict=True):
            unknown = sorted(set(t) - set(index))
            if unknown:
                raise DataError(f"{what}: labels {unknown[:5]} are not among the classes {list(names)[:12]}")
            encoded.append(torch.as_tensor([index[v] for v in t], dtype=torch.long))
        return encoded, _two_or_more(names, arrays[0][1])
    encoded = []
    for a, what in arrays:
        if a.dtype.kind not in "biuf":
            raise DataError(f"{what}: labels must be whole numbers or names, not {a.dtype} values")
        if a.size and (a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.round(a)))):
            bad = a[~(np.isfinite(a) & (a == np.round(a)))][0]
            raise DataError(f"{what}: label {bad} is not a whole number; labels are class numbers 0..K-1 or names")
        if a.size and a.min() < 0:
            raise DataError(f"{what}: label {a.min()} is negative; labels are class numbers 0..K-1 or names")
        encoded.append(torch.as_tensor(a.astype(np.int64)))
    top = max((int(t.max()) + 1 for t in encoded if t.numel()), default=0)
    names = tuple(str(c) for c in classes) if classes is not None else tuple(str(k) for k in range(top))
    if top > len(names):
        raise DataError(f"{arrays[0][1]}: label {top - 1} but only {len(names)} classes are named")
    return encoded, _two_or_more(names, arrays[0][1])


def _two_or_more(names: tuple[str, ...], what: str) -> tuple[str, ...]:
    if len(names) < 2:
        raise DataError(f"{what}: one class only ({', '.join(names) or 'no labels'}); a classifier needs two")
    return names


def check_lengths(x: torch.Tensor, y: torch.Tensor, x_what: str, y_what: str) -> None:
    """One label per example, or a one-line error naming both."""
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{x_what} has {x.shape[0]:,} examples but {y_what} has {y.shape[0]:,} labels; give one label per example"
        )
