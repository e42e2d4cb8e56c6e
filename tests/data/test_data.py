"""Data layer on synthetic files in the real formats: discovery, split, normalization, errors."""

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_cifar_dataset, write_idx_dataset

from mlp_lab.config.schema import DataConfig
from mlp_lab.data import registry
from mlp_lab.data.load import load_data
from mlp_lab.data.source import DataError
from mlp_lab.data.split import split_indices


def cfg(tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(**{"dataset": "mnist", "root": str(tmp_path / "root"), "download": False, **kw})


def test_loads_from_extra_dir_and_decompresses_into_root(tmp_path, idx_dir):
    data = load_data(cfg(tmp_path), extra_dirs=[idx_dir])
    assert (len(data.train), len(data.val), len(data.test)) == (540, 60, 200)
    assert data.train.x.shape == (540, 784) and data.train.x.dtype == torch.float32
    assert data.train.y.dtype == torch.long
    assert (tmp_path / "root" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    # Second load needs no extra dir: the root now holds a copy.
    again = load_data(cfg(tmp_path))
    assert torch.equal(again.train.x, data.train.x)


def test_environment_variable_is_searched(tmp_path, idx_dir, monkeypatch):
    monkeypatch.setenv("MLP_LAB_DATA", f"{tmp_path / 'missing'}:{idx_dir}")
    assert len(load_data(cfg(tmp_path)).test) == 200


def test_debian_location_is_known_for_fashion_mnist(tmp_path, monkeypatch):
    debian = write_idx_dataset(tmp_path / "usr-share-datasets-fashion-mnist")
    spec = dataclasses.replace(registry.SOURCES["fashion_mnist"], known_dirs=(str(debian),))
    monkeypatch.setitem(registry.SOURCES, "fashion_mnist", spec)
    monkeypatch.delenv("MLP_LAB_DATA", raising=False)
    data = load_data(cfg(tmp_path, dataset="fashion_mnist"))
    assert data.info.classes[0] == "T-shirt/top" and len(data.test) == 200


def test_split_is_fixed_by_split_seed_and_disjoint():
    train_a, val_a = split_indices(1000, 0.1, split_seed=3)
    train_b, val_b = split_indices(1000, 0.1, split_seed=3)
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert len(val_a) == 100 and len(set(train_a.tolist()) | set(val_a.tolist())) == 1000
    _, val_c = split_indices(1000, 0.1, split_seed=4)
    assert not torch.equal(val_a, val_c)


def test_normalization_uses_train_split_statistics(tmp_path, idx_dir):
    data = load_data(cfg(tmp_path), extra_dirs=[idx_dir])
    assert abs(data.train.x.mean().item()) < 1e-4
    assert abs(data.train.x.std().item() - 1) < 1e-3
    # The val split is normalized with the train statistics, so it is close but not exact.
    assert abs(data.val.x.mean().item()) > 1e-6
    raw = torch.tensor(np.frombuffer(gzip.open(idx_dir / "t10k-images-idx3-ubyte.gz").read()[16:], dtype=np.uint8))
    mean, std = data.info.mean[0], data.info.std[0]
    expected = (raw[:784].float() / 255 - mean) / std
    assert torch.allclose(data.test.x[0], expected, atol=1e-5)


def test_missing_data_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("MLP_LAB_DATA", raising=False)
    with pytest.raises(DataError) as info:
        load_data(cfg(tmp_path), extra_dirs=[tmp_path / "empty"])
    message = str(info.value)
    assert "download is off" in message and str(tmp_path / "empty") in message and "--data-dir" in message


def test_skips_a_directory_holding_the_other_dataset(tmp_path, idx_dir, monkeypatch):
    import hashlib

    digest = hashlib.sha256(gzip.open(idx_dir / "train-labels-idx1-ubyte.gz").read()).hexdigest()
    spec = dataclasses.replace(registry.SOURCES["mnist"], fingerprint=("train-labels-idx1-ubyte", digest))
    monkeypatch.setitem(registry.SOURCES, "mnist", spec)
    no_debian = dataclasses.replace(registry.SOURCES["fashion_mnist"], known_dirs=())
    monkeypatch.setitem(registry.SOURCES, "fashion_mnist", no_debian)
    monkeypatch.delenv("MLP_LAB_DATA", raising=False)
    with pytest.raises(DataError, match="holds mnist, not fashion_mnist: skipped"):
        load_data(cfg(tmp_path, dataset="fashion_mnist"), extra_dirs=[idx_dir])
    # A later directory with the right dataset is still found.
    other = write_idx_dataset(tmp_path / "fashion", seed=1)
    assert len(load_data(cfg(tmp_path, dataset="fashion_mnist"), extra_dirs=[idx_dir, other]).test) == 200


def test_corrupt_idx_file_is_named(tmp_path, idx_dir):
    load_data(cfg(tmp_path), extra_dirs=[idx_dir])
    bad = tmp_path / "root" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match=str(bad)):
        load_data(cfg(tmp_path))
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="bad magic"):
        load_data(cfg(tmp_path))


def test_cifar10_batches_in_the_real_pickled_format(tmp_path):
    root = write_cifar_dataset(tmp_path / "cifar")
    data = load_data(DataConfig(dataset="cifar10", root=str(root), download=False, val_fraction=0.1))
    assert data.train.x.shape == (270, 3072) and len(data.val) == 30 and len(data.test) == 100
    assert data.info.image_shape == (3, 32, 32) and len(data.info.mean) == 3
    assert data.info.classes[9] == "truck"
    # Rows are channel-first: the first 1024 features are the red plane of the image.
    batch = __import__("pickle").load(open(root / "cifar-10-batches-py" / "test_batch", "rb"))
    first = torch.tensor(batch["data"][0][:1024], dtype=torch.float32) / 255
    assert torch.allclose(data.test.x[0, :1024], (first - data.info.mean[0]) / data.info.std[0], atol=1e-5)


def test_cifar10_found_through_data_dir(tmp_path):
    found = write_cifar_dataset(tmp_path / "elsewhere")
    data = load_data(DataConfig(dataset="cifar10", root=str(tmp_path / "root"), download=False), extra_dirs=[found])
    assert len(data.test) == 100
