"""A folder of images, one subfolder per class (``cat/001.png``), or ``train/`` and ``test/``
folders laid out so: read with Pillow, converted to grey or RGB (data.source.channels) and
resized to data.source.image_size, into uint8 images like the built-in datasets'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.config.sources import IMAGE_SUFFIXES, FolderSource
from mlp_lab.data.raw import RawData, check_fits, make_facts
from mlp_lab.data.source import DataError


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    # Hidden files (.DS_Store, ._x.png from macOS) and anything that is not a picture are skipped.
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def split_folders(root: Path) -> tuple[Path, Path | None]:
    """The folder holding the training classes and the test split's folder, if the source has one."""
    names = {p.name for p in _visible_dirs(root)}
    if {"train", "test"} <= names:
        return root / "train", root / "test"
    return root, None


def class_names(folder: Path) -> tuple[str, ...]:
    """The class subfolders' names, sorted; a folder with none is a one-line error."""
    classes = tuple(p.name for p in _visible_dirs(folder))
    if not classes:
        raise DataError(
            f"{folder}: no class subfolders; a folder source holds one subfolder of images per class "
            f"({folder}/cat/001.png, {folder}/dog/002.png), or train/ and test/ folders laid out so"
        )
    return classes


def folder_facts(source: FolderSource) -> DatasetFacts:
    """Classes (the training folder's subfolders) and shape (channels, image_size): no image is read."""
    train, _ = split_folders(Path(source.path))
    return make_facts(source, (source.channels, *source.size), class_names(train))


def _listing(folder: Path, classes: tuple[str, ...], check_every_class: bool) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    present = {p.name for p in _visible_dirs(folder)}
    extra = sorted(present - set(classes))
    if extra:
        raise DataError(
            f"{folder / extra[0]}: a class the training folder does not have (its classes: {', '.join(classes)})"
        )
    for k, name in enumerate(classes):
        found = _images(folder / name) if name in present else []
        if not found and check_every_class:
            raise DataError(
                f"{folder / name}: a class folder with no images ({', '.join(IMAGE_SUFFIXES)}); "
                "put its images in it or remove the folder"
            )
        files += found
        labels += [k] * len(found)
    return files, labels


def _read_images(files: list[Path], source: FolderSource) -> torch.Tensor:
    height, width = source.size
    mode = "L" if source.channels == 1 else "RGB"
    out = np.empty((len(files), height, width, source.channels), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                if image.mode != mode:
                    image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                out[i] = np.asarray(image, dtype=np.uint8).reshape(height, width, source.channels)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: not a readable image ({exc}); remove or replace it") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def read_folder(source: FolderSource) -> RawData:
    """Every image of the folder as uint8 (N, C, H, W) with its class index; the test folder's too."""
    root = Path(source.path)
    train_dir, test_dir = split_folders(root)
    classes = class_names(train_dir)
    files, labels = _listing(train_dir, classes, check_every_class=True)
    test_files, test_labels = _listing(test_dir, classes, check_every_class=False) if test_dir else ([], [])
    height, width = source.size
    check_fits(str(root), len(files) + len(test_files), source.channels * height * width, raw_bytes_per_value=1)
    x = _read_images(files, source)
    test = (_read_images(test_files, source), torch.as_tensor(test_labels, dtype=torch.long)) if test_dir else None
    if test is not None and not test_files:
        raise DataError(f"{test_dir}: a test folder with no images; put the test images in it or remove it")
    return RawData(x, torch.as_tensor(labels, dtype=torch.long), test, folder_facts(source), str(root))
