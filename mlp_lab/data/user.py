"""A user's own data (`data.source`): read by the reader of its kind (folder, arrays, table,
callable, torchvision_source), checked against the fingerprint the config recorded, and given a
seeded test split where the source has none. `load.load_data` then splits off validation and
normalises it exactly as it does a built-in dataset."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.config.schema import DataConfig
from mlp_lab.config.sources import SourceSection
from mlp_lab.data import arrays, callable, folder, table, torchvision_source
from mlp_lab.data.raw import RawData
from mlp_lab.data.source import DataError
from mlp_lab.data.split import split_indices

# Mixed into data.split_seed for the held-out test split, so it differs from the train/val split's
# permutation and, like it, never changes with the run's seed.
TEST_STREAM = 0x7E57

# Per kind: read the whole source (given the data section), and find its facts.
READERS: dict[str, Callable[[DataConfig], RawData]] = {
    "folder": lambda data: folder.read_folder(data.source),
    "npz": lambda data: arrays.read_npz(data.source),
    "csv": lambda data: table.read_csv(data.source),
    "python": lambda data: callable.read_python(data.source),
    "torchvision": lambda data: torchvision_source.read_torchvision(data.source, data),
}
FACTS: dict[str, Callable[[DataConfig], DatasetFacts]] = {
    "folder": lambda data: folder.folder_facts(data.source),
    "npz": lambda data: arrays.npz_facts(data.source),
    "csv": lambda data: table.csv_facts(data.source),
    "python": lambda data: callable.python_facts(data.source),
    "torchvision": torchvision_source.torchvision_facts,
}


def check_fingerprint(source: SourceSection) -> None:
    """Refuse, in one line, data that is not the data the config recorded (a run's config read
    again after its file or folder changed). A python source's code is checked as it is imported."""
    path = getattr(source, "path", None)
    if source.fingerprint is None or path is None:
        return
    now = type(source).model_validate({**source.model_dump(), "fingerprint": None}).fingerprint
    if now != source.fingerprint:
        raise DataError(
            f"data.source.path: {path} changed since the run recorded it (fingerprint {source.fingerprint[:12]}..., "
            f"now {str(now)[:12]}...): restore that version, or train again with this data"
        )


def test_split_seed(split_seed: int) -> int:
    """The held-out test split's seed: a function of data.split_seed alone."""
    return int(np.random.SeedSequence([split_seed, TEST_STREAM]).generate_state(1)[0])


def read_source(data: DataConfig) -> RawData:
    """The source's examples with a test split: its own, or data.source.test_fraction of its
    examples held out by a seeded permutation (the rest is what train/val split)."""
    source = data.source
    check_fingerprint(source)
    raw = READERS[source.kind](data)
    where = raw.where
    if raw.x.shape[0] < 3:
        raise DataError(f"{where}: {raw.x.shape[0]} examples, too few to split into train, val and test")
    if raw.test is not None:
        if raw.test[1].numel() == 0:
            raise DataError(f"{where}: the test split has no examples")
        return raw
    rest, held_out = split_indices(raw.x.shape[0], source.test_fraction, test_split_seed(data.split_seed))
    return RawData(raw.x[rest], raw.y[rest], (raw.x[held_out], raw.y[held_out]), raw.facts, where)
