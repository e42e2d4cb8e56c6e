"""Augmentation: off changes nothing (hashes, numbers), on is seeded, on the batch's device,
keeps the background black, and a run resumed mid-epoch equals an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from conftest import SHIPPED_HASHES_NUMERICS_2, assert_resumes_identically, metrics_without_timing

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import load_config
from mlp_lab.config.schema import AugmentConfig
from mlp_lab.core.errors import ConfigError
from mlp_lab.data.augment import Augmenter, augment_batch, augment_pixels, batch_generator
from mlp_lab.training.trainer import Trainer, train

FULL = {
    "rotation": 12,
    "scale": 0.15,
    "shear": 15,
    "translate": 0.08,
    "elastic": 1.0,
    "stroke": 0.7,
    "blur": 0.6,
}


@pytest.mark.parametrize("name", sorted(SHIPPED_HASHES_NUMERICS_2))
def test_shipped_configs_hash_as_before_the_augment_section(name, monkeypatch):
    # Pinned under numerics version 2 (main before the section existed); the numerics version
    # is part of the hash, so the comparison is made under that version.
    monkeypatch.setattr("mlp_lab.config.hashing.NUMERICS_VERSIONS", {"autograd": 2, "hand": 2})
    assert config_hash(load_config(f"configs/{name}.yaml")) == SHIPPED_HASHES_NUMERICS_2[name]


def test_augmentation_enters_the_hash_only_when_on(tiny_config):
    plain = tiny_config()
    assert config_hash(tiny_config(data={"augment": {"elastic_cells": 8}})) == config_hash(plain)
    assert config_hash(tiny_config(data={"augment": {"rotation": 10}})) != config_hash(plain)
    assert not AugmentConfig().active and AugmentConfig(blur=0.5).active


def test_an_out_of_range_augmentation_is_one_error_per_key(tiny_config):
    with pytest.raises(ConfigError) as exc:
        tiny_config(data={"augment": {"rotation": -1, "scale": 1.5, "rotaton": 3}})
    text = "\n".join(exc.value.errors)
    assert "data.augment.rotation" in text and "data.augment.scale" in text
    assert "did you mean 'data.augment.rotation'" in text


def _digits(n: int = 16) -> torch.Tensor:
    """Stroke-like images on [0, 1]: a bar of ink on black, per image at another column."""
    images = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        images[i, 0, 6:22, 8 + i % 10 : 11 + i % 10] = 1.0
    return images


def test_the_same_seed_epoch_and_step_give_the_same_batch_and_others_do_not():
    cfg = AugmentConfig(**FULL)
    images = _digits()
    first = augment_pixels(images, cfg, batch_generator(3, 1, 7, images.device))
    again = augment_pixels(images, cfg, batch_generator(3, 1, 7, images.device))
    assert torch.equal(first, again)
    for other in ((4, 1, 7), (3, 2, 7), (3, 1, 8)):
        assert not torch.equal(first, augment_pixels(images, cfg, batch_generator(*other, images.device)))
    # each image gets its own draw: two copies of one image come out different
    pair = augment_pixels(images[:1].repeat(2, 1, 1, 1), cfg, batch_generator(0, 0, 0, images.device))
    assert not torch.equal(pair[0], pair[1])


def test_an_empty_image_stays_the_normalized_background():
    mean, std = (0.1307,), (0.3081,)
    background = -mean[0] / std[0]  # black, normalized: not 0
    x = torch.full((8, 784), background)
    out = augment_batch(x, AugmentConfig(**FULL), (1, 28, 28), mean, std, batch_generator(0, 0, 0, x.device))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.allclose(out, x, atol=1e-5)


def test_a_shift_uncovers_background_and_keeps_the_ink_inside_the_image():
    images = _digits()
    cfg = AugmentConfig(rotation=20, translate=0.1)
    out = augment_pixels(images, cfg, batch_generator(0, 0, 0, images.device))
    assert out.min() >= 0 and out.max() <= 1
    # a warp moves the ink and keeps about as much of it (bilinear resampling blurs the edges only)
    assert not torch.allclose(out, images)
    assert out.sum((1, 2, 3)) == pytest.approx(images.sum((1, 2, 3)), rel=0.25)


def test_stroke_width_thickens_and_thins_the_ink():
    images = _digits(64)
    out = augment_pixels(images, AugmentConfig(stroke=1.0), batch_generator(0, 0, 0, images.device))
    ink, new_ink = images.sum((1, 2, 3)), out.sum((1, 2, 3))
    assert (new_ink > ink * 1.2).any() and (new_ink < ink * 0.8).any()


def test_blur_spreads_ink_but_keeps_its_amount():
    images = _digits()
    out = augment_pixels(images, AugmentConfig(blur=1.0), batch_generator(0, 0, 0, images.device))
    assert (out > 0).sum() > (images > 0).sum()
    assert out.sum().item() == pytest.approx(images.sum().item(), rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_augmentation_runs_on_the_batch_device():
    x = torch.randn(32, 784, device="cuda")
    out = Augmenter(AugmentConfig(**FULL), (1, 28, 28), (0.13,), (0.31,), 0)(x, 0, 0)
    assert out.device == x.device and out.shape == x.shape


def test_only_the_training_batches_are_augmented(tiny_config, tmp_path):
    plain = Trainer(tiny_config(), tmp_path / "a")
    augmented = Trainer(tiny_config(data={"augment": FULL}), tmp_path / "b")
    assert plain.augment is None and augmented.augment is not None
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(plain.data, split).x, getattr(augmented.data, split).x)


def test_augmented_training_differs_from_plain_and_reruns_bit_identically(tiny_config, tmp_path):
    cfg = tiny_config(data={"augment": FULL}, train={"epochs": 2, "batch_size": 32, "device": "cpu"})
    first, again = train(cfg, tmp_path / "one"), train(cfg, tmp_path / "two")
    plain = train(tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}), tmp_path / "plain")
    assert metrics_without_timing(tmp_path / "one") == metrics_without_timing(tmp_path / "two")
    assert (first["test/loss"], first["test/acc"]) == (again["test/loss"], again["test/acc"])
    assert metrics_without_timing(tmp_path / "one") != metrics_without_timing(tmp_path / "plain")
    assert first["config_hash"] != plain["config_hash"]


def test_a_run_resumed_mid_epoch_with_augmentation_equals_an_uninterrupted_one(tiny_config, tmp_path):
    cfg = tiny_config(
        data={"augment": FULL}, train={"epochs": 3, "batch_size": 32, "device": "cpu", "scheduler": {"name": "cosine"}}
    )
    assert_resumes_identically(cfg, tmp_path)


@pytest.mark.slow
def test_mlp_lab_data_shows_an_augmented_grid_only_when_augmentation_is_on(tiny_config, tmp_path):
    from mlp_lab.inspect.analysis import inspect_data

    info, _ = inspect_data(tiny_config().data, tmp_path / "plain")
    assert "augmented_grid" not in info and not (tmp_path / "plain" / "mnist_augmented.png").exists()
    info, _ = inspect_data(tiny_config(data={"augment": FULL}).data, tmp_path / "aug")
    assert info["augmented_grid"] == str(tmp_path / "aug" / "mnist_augmented.png")
    assert (tmp_path / "aug" / "mnist_augmented.png").stat().st_size > 0
