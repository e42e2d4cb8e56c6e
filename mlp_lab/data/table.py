"""A CSV table: one row per example, a label column (numbers or names) and numeric feature
columns, held as (features, 1, 1) "images" so that per-channel normalisation is per-feature
standardisation by the training split."""

from __future__ import annotations

import csv
import difflib
from pathlib import Path

import numpy as np
import torch

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.config.sources import CSVSource
from mlp_lab.data.raw import RawData, check_fits, encode_labels, make_facts
from mlp_lab.data.source import DataError


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if not close:
        close = [c for c in choices if c.lower() == name.lower()]
    return f"did you mean {close[0]!r}? " if close else ""


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as a CSV table ({exc})") from None
    if not header:
        raise DataError(f"{path}: empty; a CSV source starts with a header row naming its columns")
    return [name.strip() for name in header]


def _columns(source: CSVSource, header: list[str]) -> tuple[int, list[int]]:
    """The label column's index and the feature columns', each checked to exist."""
    path = source.path
    if source.label not in header:
        raise DataError(
            f"{path}: no column {source.label!r} (data.source.label); {_did_you_mean(source.label, header)}"
            f"the columns: {', '.join(header[:30])}{', ...' if len(header) > 30 else ''}"
        )
    features = source.features if source.features is not None else [c for c in header if c != source.label]
    for name in features:
        if name not in header:
            raise DataError(
                f"{path}: no column {name!r} (data.source.features); {_did_you_mean(name, header)}"
                f"the columns: {', '.join(header[:30])}"
            )
    if source.label in features:
        raise DataError(f"{path}: the label column {source.label!r} is also in data.source.features; remove it there")
    if not features:
        raise DataError(f"{path}: no feature columns besides the label {source.label!r}")
    return header.index(source.label), [header.index(name) for name in features]


def _estimate_rows(path: Path) -> int:
    """Rows the file holds, from its size and its first data line's length (nothing parsed)."""
    with open(path, "rb") as f:
        f.readline()
        first = f.readline()
    return int(path.stat().st_size / max(len(first), 1))


def _read_rows(source: CSVSource) -> tuple[list[str], list[str], np.ndarray]:
    """(feature names, label texts, float32 features (N, F)); a non-numeric cell names its column."""
    path = Path(source.path)
    header = _header(path)
    label_at, feature_at = _columns(source, header)
    check_fits(str(path), _estimate_rows(path), len(feature_at))
    labels: list[str] = []
    rows: list[list[str]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {reader.line_num} has {len(row)} cells, the header {len(header)}")
            labels.append(row[label_at].strip())
            rows.append([row[i] for i in feature_at])
    if not rows:
        raise DataError(f"{path}: no rows under the header")
    values = np.empty((len(rows), len(feature_at)), dtype=np.float32)
    for j, column in enumerate(feature_at):
        cells = [row[j] for row in rows]
        try:
            values[:, j] = np.asarray(cells, dtype=np.float64)
        except ValueError:
            bad = next(i for i, cell in enumerate(cells) if not _is_number(cell))
            raise DataError(
                f"{path}: column {header[column]!r} is not numeric (line {bad + 2}: {cells[bad]!r}); encode it as "
                f"numbers, or leave it out with data.source.features: [the numeric columns]"
            ) from None
    return [header[i] for i in feature_at], labels, values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _labels(texts: list[str]) -> np.ndarray:
    """Whole numbers where every label is one, else the names as they are."""
    try:
        numbers = np.asarray(texts, dtype=np.float64)
    except ValueError:
        return np.asarray(texts)
    return numbers if np.all(numbers == np.round(numbers)) else np.asarray(texts)


def read_csv(source: CSVSource) -> RawData:
    """The table as float32 (N, F, 1, 1) features and class indices (no test split of its own)."""
    features, texts, values = _read_rows(source)
    (y,), classes = encode_labels([(_labels(texts), f"{source.path}: column {source.label!r}")])
    x = torch.from_numpy(values).view(len(texts), len(features), 1, 1)
    facts = make_facts(source, (len(features), 1, 1), classes, features)
    return RawData(x, y, None, facts, str(source.path))


def csv_facts(source: CSVSource) -> DatasetFacts:
    """The table's facts (its classes need the label column, so the file is read)."""
    return read_csv(source).facts
