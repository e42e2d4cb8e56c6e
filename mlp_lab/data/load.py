"""Datasets as tensors on the run's device.

torchvision does the downloading and parsing; after that each split is one flattened, normalized
float tensor plus a label tensor, so training takes index slices instead of running a per-sample
DataLoader. Where the configured root has no copy, known local locations are searched (Debian's
``dataset-fashion-mnist``, ``--data-dir``, ``$MLP_LAB_DATA``) before any download is tried.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import socket
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.datasets as tvd

from mlp_lab.config import datasets
from mlp_lab.config.schema import DataConfig
from mlp_lab.core.errors import MLPLabError, os_fault

# Environment variable naming extra directories (os.pathsep-separated) that hold dataset files.
DATA_ENV = "MLP_LAB_DATA"


class DataError(MLPLabError):
    """The dataset could not be found, downloaded or parsed."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where one supported dataset's files are found and how torchvision reads them (what the
    dataset is, its shape and classes, is in `mlp_lab.config.datasets`)."""

    key: str
    torchvision_class: str
    files: tuple[str, ...]  # raw file names, as torchvision expects them
    known_dirs: tuple[str, ...] = ()
    # sha256 of the uncompressed official train-labels file: lets us refuse a directory that
    # holds a different dataset under the same IDX file names (MNIST vs FashionMNIST).
    train_labels_sha256: str | None = None

    @property
    def facts(self) -> datasets.DatasetFacts:
        return datasets.DATASETS[self.key]

    @property
    def is_idx(self) -> bool:
        return self.key != "cifar10"


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")

DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        key="fashion_mnist",
        torchvision_class="FashionMNIST",
        files=IDX_FILES,
        known_dirs=("/usr/share/datasets/fashion-mnist",),
        train_labels_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "mnist": DatasetSpec(
        key="mnist",
        torchvision_class="MNIST",
        files=IDX_FILES,
        known_dirs=("/usr/share/datasets/mnist",),
        train_labels_sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "cifar10": DatasetSpec(
        key="cifar10",
        torchvision_class="CIFAR10",
        files=CIFAR_FILES,
    ),
}


@dataclass(frozen=True)
class Split:
    """One split: `x` is (N, features) float32 normalized, `y` is (N,) int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass(frozen=True)
class DatasetInfo:
    """Describes the tensors: enough to turn a row back into an image or preprocess a new one."""

    name: str
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]  # per channel, on the [0, 1] pixel scale, from the train split
    std: tuple[float, ...]
    source: str  # the directory the files were read from, and where they were copied from
    pixel_permutation: tuple[int, ...] | None = None  # data.permute_pixels: features[..., i] = pixel perm[i]

    @property
    def in_features(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Data:
    """Train, validation and test splits, all on one device, plus what describes them."""

    train: Split
    val: Split
    test: Split
    info: DatasetInfo


def _has_files(directory: Path, names: Iterable[str]) -> bool:
    return all((directory / n).is_file() for n in names)


def _has_gz_or_raw(directory: Path, names: Iterable[str]) -> bool:
    return all((directory / n).is_file() or (directory / f"{n}.gz").is_file() for n in names)


def _open_maybe_gz(directory: Path, name: str):
    raw = directory / name
    return open(raw, "rb") if raw.is_file() else gzip.open(directory / f"{name}.gz", "rb")


def _corrupt(source: Path, exc: BaseException) -> DataError:
    # gzip raises EOFError for a cut-off file, BadGzipFile (an OSError) or zlib.error for a damaged one.
    detail = str(exc).splitlines()[0] if str(exc) else "it ends early"
    return DataError(
        f"{source}: truncated or corrupt ({type(exc).__name__}: {detail}); replace it with a complete copy"
    )


def _source(directory: Path, name: str) -> Path:
    return directory / name if (directory / name).is_file() else directory / f"{name}.gz"


def _sha256(directory: Path, name: str) -> str:
    digest = hashlib.sha256()
    try:
        with _open_maybe_gz(directory, name) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (EOFError, OSError, zlib.error) as exc:
        raise _corrupt(_source(directory, name), exc) from None
    return digest.hexdigest()


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


def _candidate_dirs(spec: DatasetSpec, base: Path) -> list[Path]:
    # A user may point at the files themselves or at a folder holding one folder per dataset.
    names = [spec.key, spec.key.replace("_", "-"), spec.torchvision_class]
    return [base] + [base / n for n in names] + [base / spec.torchvision_class / "raw", base / "cifar-10-batches-py"]


def search_locations(spec: DatasetSpec, extra_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Directories searched, in order, when the configured root has no copy."""
    env = [p for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
    return [Path(p) for p in [*extra_dirs, *env, *spec.known_dirs]]


def _torchvision_root(spec: DatasetSpec, root: Path) -> Path | None:
    """The root under which torchvision finds a ready copy, or None."""
    if spec.is_idx:
        return root if _has_files(root / spec.torchvision_class / "raw", spec.files) else None
    return root if _has_files(root / "cifar-10-batches-py", spec.files) else None


def _other_dataset_in(spec: DatasetSpec, directory: Path) -> str | None:
    """The key of another known dataset whose files `directory` holds, if it holds one."""
    if not spec.is_idx:
        return None
    digest = _sha256(directory, "train-labels-idx1-ubyte")
    for other in DATASETS.values():
        if other.key != spec.key and other.train_labels_sha256 == digest:
            return other.key
    return None


def _install_from(spec: DatasetSpec, found: Path, root: Path) -> Path:
    """Make a copy found elsewhere loadable by torchvision; return the root to load it from."""
    if not spec.is_idx and found.name == "cifar-10-batches-py":
        return found.parent  # already in torchvision's layout: load it where it is
    target = _dataset_dir(spec, root)
    if root.exists() and not root.is_dir():
        raise DataError(f"data.root {root}: is a file, expected a directory for the dataset files")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_fault(exc, key="data.root") from None
    for name in spec.files:
        # Write then rename, so an interrupted copy never looks like a complete dataset. The
        # temporary name is this process's own (host and pid): parallel workers (a process
        # pool, Ray tasks on several nodes) may install the same copy at once, and a shared
        # name would let one rename the other's half-written file into place.
        tmp = target / f".{name}.tmp-{socket.gethostname()}-{os.getpid()}"
        try:
            _copy_file(found, name, tmp)
            os.replace(tmp, target / name)
        except OSError as exc:
            raise os_fault(exc, key="data.root") from None
        finally:
            tmp.unlink(missing_ok=True)
    _record_origin(target, str(found.resolve()))
    return root


ORIGIN_FILE = ".copied-from"  # in a root's dataset folder: where its files came from


def _dataset_dir(spec: DatasetSpec, root: Path) -> Path:
    return root / (spec.torchvision_class + "/raw" if spec.is_idx else "cifar-10-batches-py")


def _record_origin(directory: Path, origin: str) -> None:
    """Note where a root's copy came from, so later runs can say the real source rather than the
    root it was copied into; a note that cannot be written only costs that sentence."""
    try:
        (directory / ORIGIN_FILE).write_text(origin + "\n", encoding="utf-8")
    except OSError:
        pass


def describe_source(spec: DatasetSpec, root: Path) -> str:
    """Where a loaded dataset's files are, and where they were copied or downloaded from."""
    where = str(root.resolve())
    try:
        origin = (_dataset_dir(spec, root) / ORIGIN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return where
    return f"{where} (copied from {origin})" if origin.startswith("/") else f"{where} ({origin})"


def _copy_file(found: Path, name: str, dst_path: Path) -> None:
    """Copy (and decompress) one dataset file; a truncated or corrupt source is a DataError
    naming it, a failed write an OSError (the machine's fault, not the file's)."""
    source = _source(found, name)
    with open(dst_path, "wb") as dst:
        try:
            src = _open_maybe_gz(found, name)
        except OSError as exc:
            raise DataError(f"{source}: cannot read: {exc.strerror or exc}") from None
        with src:
            while True:
                try:
                    block = src.read(1 << 20)
                except (EOFError, OSError, zlib.error) as exc:
                    raise _corrupt(source, exc) from None
                if not block:
                    return
                dst.write(block)


def locate(cfg: DataConfig, extra_dirs: Sequence[str | Path] = ()) -> Path:
    """Return a root from which torchvision loads `cfg.dataset`, finding or downloading it.

    Order: the configured root; known local copies (`extra_dirs`, $MLP_LAB_DATA, Debian's
    package directory), which are decompressed into the root; then a download if allowed.
    Raises DataError saying where it looked and how to fix it.
    """
    spec = DATASETS[cfg.dataset]
    root = Path(cfg.root)
    ready = _torchvision_root(spec, root)
    if ready is not None:
        return ready

    # Only the base directories are named (each is searched with its dataset-named subfolders):
    # the line stays readable however many places are searched.
    looked = [str(root)]
    for base in search_locations(spec, extra_dirs):
        looked.append(str(base))
        for candidate in _candidate_dirs(spec, base):
            has = _has_gz_or_raw(candidate, spec.files) if spec.is_idx else _has_files(candidate, spec.files)
            if has:
                other = _other_dataset_in(spec, candidate)
                if other is not None:
                    looked.append(f"{candidate} (holds {other}, not {spec.key}: skipped)")
                    continue
                return _install_from(spec, candidate, root)

    download_note = "download is off (data.download: false)"
    if cfg.download:
        try:
            for train in (True, False):
                getattr(tvd, spec.torchvision_class)(str(root), train=train, download=True)
            _record_origin(_dataset_dir(spec, root), "downloaded by torchvision")
            return root
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError for network faults
            download_note = f"download failed ({str(exc).splitlines()[0]})"
    raise DataError(
        f"{spec.key}: no copy found and {download_note}. Looked in: {', '.join(dict.fromkeys(looked))} "
        f"(and their {spec.key}/ and {spec.torchvision_class}/raw/ folders). "
        f"Fix: allow download (data.download: true) with internet access, or put the files in a "
        f"directory and pass --data-dir DIR or set {DATA_ENV}=DIR"
        + (" (Debian/Ubuntu: apt-get install dataset-fashion-mnist)" if spec.key == "fashion_mnist" else "")
    )


def _read_raw(spec: DatasetSpec, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels, parsed by torchvision."""
    if spec.is_idx:
        raw = root / spec.torchvision_class / "raw"
        prefix = "train" if train else "t10k"
        for kind in ("images-idx3", "labels-idx1"):
            check_idx_file(raw / f"{prefix}-{kind}-ubyte")
        ds = getattr(tvd, spec.torchvision_class)(str(root), train=train, download=False)
        images = ds.data.unsqueeze(1)
        labels = ds.targets.long()
    else:
        try:
            ds = LocalCIFAR10(str(root), train=train, download=False)
        except Exception as exc:  # a corrupt pickle raises whatever pickle or numpy raises
            raise DataError(f"{root / 'cifar-10-batches-py'}: cannot parse the CIFAR-10 batches: {exc}") from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(ds.targets, dtype=torch.long)
    if images.shape[1:] != spec.facts.image_shape or images.shape[0] != labels.shape[0]:
        raise DataError(f"{root}: {spec.key} images have shape {tuple(images.shape)} and {labels.shape[0]} labels")
    if labels.numel() and (labels.min() < 0 or labels.max() >= spec.facts.num_classes):
        raise DataError(f"{root}: {spec.key} labels outside 0..{spec.facts.num_classes - 1}")
    return images, labels


class LocalCIFAR10(tvd.CIFAR10):
    """torchvision's CIFAR10, checking that the batch files exist rather than their md5, so a
    copy prepared elsewhere (or a test fixture in the real pickled format) loads. Downloads
    still go through torchvision's own checked archive."""

    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


def split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val indices: a permutation seeded by `split_seed` alone, so every run of a
    dataset gets the same split whatever its training seed."""
    generator = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * val_fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), on the [0, 1] scale."""
    x = images.to(torch.float64).div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-8)
    return tuple(mean.tolist()), tuple(std.tolist())


def pixel_permutation(num_pixels: int, seed: int) -> tuple[int, ...]:
    """One fixed order of `num_pixels` pixel positions, a function of `seed` alone."""
    return tuple(torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed)).tolist())


def to_features(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    permutation: Sequence[int] | None = None,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalized float32 (N, C*H*W); with a `permutation` of the H*W pixel
    positions, every channel's pixels are put in that order (data.permute_pixels)."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (images.to(torch.float32) / 255.0 - m) / s
    if permutation is not None:
        x = x.flatten(2)[:, :, torch.as_tensor(permutation, dtype=torch.long)]
    return x.flatten(1)


def load_data(cfg: DataConfig, device: torch.device | str = "cpu", extra_dirs: Sequence[str | Path] = ()) -> Data:
    """Find the dataset, parse it with torchvision, split, normalize, and put it on `device`."""
    spec = DATASETS[cfg.dataset]
    root = locate(cfg, extra_dirs)
    try:
        train_images, train_labels = _read_raw(spec, root, train=True)
        test_images, test_labels = _read_raw(spec, root, train=False)
    except DataError:
        raise
    except Exception as exc:  # torchvision's parser asserts on malformed files
        raise DataError(f"{root}: cannot parse {spec.key}: {type(exc).__name__}: {exc}") from None
    if train_labels.numel() < 2:
        raise DataError(f"{root}: {spec.key} has {train_labels.numel()} training examples, too few to split")
    train_idx, val_idx = split_indices(train_labels.shape[0], cfg.val_fraction, cfg.split_seed)
    mean, std = channel_stats(train_images[train_idx])
    c, h, w = spec.facts.image_shape
    permutation = pixel_permutation(h * w, cfg.permute_seed) if cfg.permute_pixels else None
    info = DatasetInfo(
        spec.key, spec.facts.classes, spec.facts.image_shape, mean, std, describe_source(spec, root), permutation
    )

    def make(images: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(to_features(images, mean, std, permutation).to(device), labels.to(device))

    return Data(
        train=make(train_images[train_idx], train_labels[train_idx]),
        val=make(train_images[val_idx], train_labels[val_idx]),
        test=make(test_images, test_labels),
        info=info,
    )
