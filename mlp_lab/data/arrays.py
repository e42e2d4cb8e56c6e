"""Arrays in one ``.npz``: inputs under data.source.x, labels under data.source.y, and a test
split under x_test / y_test where the file has both. Shapes are read from the array headers
first, so a file too large for memory is refused before it is loaded."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.config.sources import NpzSource
from mlp_lab.data.raw import RawData, as_inputs, check_fits, check_lengths, encode_labels, make_facts
from mlp_lab.data.source import DataError


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype, from its .npy header (the data is not read)."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(f)
                shapes[member[: -len(".npy")]] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc}); save it with numpy.savez(path, x=..., y=...)") from None
    return shapes


def _keys(source: NpzSource, shapes: dict) -> tuple[bool, list[tuple[str, str]]]:
    """Whether the file has a test split, and each array's (key, config key naming it)."""
    keys = [(source.x, "x"), (source.y, "y")]
    test = [(source.x_test, "x_test"), (source.y_test, "y_test")]
    has = [key in shapes for key, _ in test]
    if any(has) and not all(has):
        keys += test  # one of the pair without the other: report the missing one below
    for key, field in keys:
        if key not in shapes:
            raise DataError(
                f"{source.path}: no array {key!r} (data.source.{field}); the file has: {', '.join(sorted(shapes)) or 'none'}"
                f"; set data.source.{field} to one of them"
            )
    return all(has), keys + (test if all(has) else [])


def _load(path: Path, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        return archive[key]


def npz_facts(source: NpzSource) -> DatasetFacts:
    """Shape from the header, classes from the labels (a table's features named x[0], x[1], ...)."""
    path = Path(source.path)
    shapes = _headers(path)
    has_test, _ = _keys(source, shapes)
    parts = [(_load(path, source.y), f"{path}: {source.y}")]
    if has_test:
        parts.append((_load(path, source.y_test), f"{path}: {source.y_test}"))
    _, classes = encode_labels(parts)
    shape = shapes[source.x][0]
    sample = as_inputs(np.zeros((1, *shape[1:]), dtype=np.uint8), f"{path}: {source.x}").shape[1:]
    features = [f"{source.x}[{i}]" for i in range(shape[1])] if len(shape) == 2 else []
    return make_facts(source, sample, classes, features)


def read_npz(source: NpzSource) -> RawData:
    """The arrays as tensors, checked: keys present, one label per row."""
    path = Path(source.path)
    shapes = _headers(path)
    has_test, keys = _keys(source, shapes)
    inputs = [k for k, field in keys if field.startswith("x")]
    examples = sum(shapes[k][0][0] if shapes[k][0] else 0 for k in inputs)
    values = math.prod(shapes[source.x][0][1:])
    check_fits(str(path), examples, values, raw_bytes_per_value=shapes[source.x][1].itemsize)
    x = as_inputs(_load(path, source.x), f"{path}: {source.x}")
    labels = [(_load(path, source.y), f"{path}: {source.y}")]
    if has_test:
        labels.append((_load(path, source.y_test), f"{path}: {source.y_test}"))
    encoded, _ = encode_labels(labels)
    check_lengths(x, encoded[0], f"{path}: {source.x}", source.y)
    test = None
    if has_test:
        x_test = as_inputs(_load(path, source.x_test), f"{path}: {source.x_test}")
        check_lengths(x_test, encoded[1], f"{path}: {source.x_test}", source.y_test)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{path}: {source.x_test} rows have shape {tuple(x_test.shape[1:])}, {source.x}'s {tuple(x.shape[1:])}"
            )
        test = (x_test, encoded[1])
    return RawData(x, encoded[0], test, npz_facts(source), str(path))
