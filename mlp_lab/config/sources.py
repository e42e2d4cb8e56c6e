"""A user's own data: the `data.source` section, one class per kind (folder | npz | csv | python |
torchvision), each recording a fingerprint of the data it names.

Torch-free, like the rest of the config layer: the sections say where the data is and how to
read it; `mlp_lab.data.user` reads it into tensors and registers, per kind, how its facts (classes,
shape) are found (`config.datasets.facts_for`). The fingerprint (a content hash of the file or
folder, or of the python target's code) is recorded when the config is first read and enters
the config hash: change the data and `compare` retrains rather than pooling old and new runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from mlp_lab.config.section import Section
from mlp_lab.config.targets import check_recorded_copy, check_target, code_sha256, content_sha256, parse_target

# The picture files a folder source reads (what PIL opens; anything else in the folder is ignored).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

TEST_FRACTION = "share of the examples held out as the test split, where the source has no test split of its own"


class SourceSection(Section):
    """What every source has: a name for reports (default: from its file or target), the test
    share where it has no test split, and the recorded fingerprint."""

    kind: str
    name: str | None = Field(None, description="the dataset's name in reports (default: its file's or target's name)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description=TEST_FRACTION)
    fingerprint: str | None = Field(
        None, description="content hash of the data, recorded when the config is read; enters the config hash"
    )

    @property
    def dataset_name(self) -> str:
        return self.name or self._default_name()

    def _default_name(self) -> str:
        raise NotImplementedError

    def _fingerprint(self) -> str | None:
        raise NotImplementedError

    @model_validator(mode="after")
    def _record_fingerprint(self) -> SourceSection:
        if self.fingerprint is None:
            self.fingerprint = self._fingerprint()
        return self


class _FileSource(SourceSection):
    path: str = Field(description="the file or folder, relative to the config that names it")

    @field_validator("path")
    @classmethod
    def _exists(cls, value: str, info: ValidationInfo) -> str:
        path = Path(value).expanduser().absolute()
        # A run's recorded config (fingerprint set) is read where its data may not be (a model
        # loaded from the registry elsewhere): reading the data checks it, when it is needed.
        if not path.exists() and info.data.get("fingerprint") is None:
            raise ValueError(f"{path}: no such file or folder (relative paths start at the config that names them)")
        return str(path)

    def _default_name(self) -> str:
        return Path(self.path).stem


class FolderSource(_FileSource):
    """A folder of images with one subfolder per class (``cat/001.png``); or with ``train/`` and
    ``test/`` folders laid out so, whose test split is then used as it is."""

    kind: Literal["folder"] = "folder"
    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = Field(
        28, description="every image is resized to this side (or [height, width])"
    )
    channels: Literal[1, 3] = Field(1, description="1: grey, 3: RGB (images are converted)")

    @field_validator("path")
    @classmethod
    def _is_folder(cls, value: str, info: ValidationInfo) -> str:
        if not Path(value).is_dir() and (Path(value).exists() or info.data.get("fingerprint") is None):
            raise ValueError(f"{value}: not a folder (a folder source holds one subfolder of images per class)")
        return value

    @property
    def size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size) if isinstance(self.image_size, int) else tuple(self.image_size)

    def _fingerprint(self) -> str:
        return content_sha256(Path(self.path), IMAGE_SUFFIXES)


class NpzSource(_FileSource):
    """Arrays in one ``.npz``: features or images under `x`, integer (or string) labels under `y`,
    and a test split under `x_test`/`y_test` where the file has them."""

    kind: Literal["npz"] = "npz"
    x: str = Field("x", description="the key of the inputs: (N, features), (N, H, W) or (N, C, H, W)")
    y: str = Field("y", description="the key of the labels (N,)")
    x_test: str = Field("x_test", description="the key of the test inputs, if the file has a test split")
    y_test: str = Field("y_test", description="the key of the test labels")

    def _fingerprint(self) -> str:
        return content_sha256(Path(self.path))


class CSVSource(_FileSource):
    """A table: one row per example, a label column and numeric feature columns (standardised by
    the training split's mean and std)."""

    kind: Literal["csv"] = "csv"
    label: str = Field("label", description="the column holding the class (numbers or names)")
    features: list[str] | None = Field(None, description="the feature columns (default: every column but the label)")

    def _fingerprint(self) -> str:
        return content_sha256(Path(self.path))


class PythonSource(SourceSection):
    """A callable (FILE.py:NAME or package.module:NAME) returning arrays or tensors: ``(x, y)``,
    ``(x, y, x_test, y_test)``, or a dict with those keys and optionally ``classes``."""

    kind: Literal["python"] = "python"
    target: str = Field(description="FILE.py:NAME (relative to the config) or package.module:NAME")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the target")

    @field_validator("target")
    @classmethod
    def _target_found(cls, value: str) -> str:
        return check_target(value)

    @model_validator(mode="after")
    def _recorded_copy(self) -> PythonSource:
        # The fingerprint is the code's hash: a worker without the file runs its shipped copy.
        check_recorded_copy(self.target, self.fingerprint, "data.source.target")
        return self

    def _default_name(self) -> str:
        return parse_target(self.target).name

    def _fingerprint(self) -> str:
        # The code that makes the data (its arguments are in the config, and so in the hash).
        return code_sha256(parse_target(self.target))


class TorchvisionSource(SourceSection):
    """Any dataset class of ``torchvision.datasets`` with a ``train`` split flag (KMNIST, EMNIST's
    ``split`` as an arg, SVHN's ``split``...), read into memory once; downloaded into data.root
    where the machine has a network and data.download is on."""

    kind: Literal["torchvision"] = "torchvision"
    name: str = Field(description="the class in torchvision.datasets, e.g. KMNIST")  # type: ignore[assignment]
    args: dict[str, Any] = Field(default_factory=dict, description="more keyword arguments of the class")

    def _default_name(self) -> str:
        return self.name

    def _fingerprint(self) -> None:
        return None  # the class's name and arguments are the data's identity (in the config already)


SourceField = Annotated[
    FolderSource | NpzSource | CSVSource | PythonSource | TorchvisionSource, Field(discriminator="kind")
]
SOURCE_KINDS = ("folder", "npz", "csv", "python", "torchvision")
