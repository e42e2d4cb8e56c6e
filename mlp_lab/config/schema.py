"""The run config's schema: one pydantic section per part of a run (the model's: one per model
kind), unknown keys and non-finite floats refused. No torch, so ``mlp-lab --help`` and
``mlp-lab validate`` stay fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, Field, PositiveInt, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from mlp_lab.config import datasets

# Importing the built-in model sections registers them: a config naming mlp or cnn validates.
from mlp_lab.config.model_sections import MLPConfig
from mlp_lab.config.section import ModelSectionField, Section
from mlp_lab.config.sources import SourceField


class AugmentConfig(Section):
    """Random distortions of each training batch (train split only; see `mlp_lab.data.augment`).

    Each range is symmetric and drawn per example; a range of 0 turns that transform off, so the
    default section (all zeros) is no augmentation at all."""

    rotation: float = Field(0.0, ge=0, le=180, description="degrees: uniform in [-rotation, rotation]")
    scale: float = Field(0.0, ge=0, lt=1, description="relative: a zoom factor uniform in [1 - scale, 1 + scale]")
    shear: float = Field(0.0, ge=0, lt=60, description="degrees of horizontal shear: uniform in [-shear, shear]")
    translate: float = Field(0.0, ge=0, lt=1, description="shift per axis, as a share of the image's side")
    elastic: float = Field(0.0, ge=0, le=10, description="pixels: std of a smooth random displacement field")
    elastic_cells: int = Field(4, ge=2, le=28, description="the displacement field's coarse grid (cells per side)")
    stroke: float = Field(
        0.0, ge=0, le=1, description="share of a 3 x 3 dilation (+) or erosion (-): uniform in [-stroke, stroke]"
    )
    blur: float = Field(0.0, ge=0, le=3, description="Gaussian blur, sigma in pixels uniform in [0, blur]")

    @property
    def active(self) -> bool:
        """Whether any transform is on."""
        return any(getattr(self, name) > 0 for name in AUGMENT_RANGES)


# The fields of AugmentConfig that switch a transform on (elastic_cells only shapes elastic's field).
AUGMENT_RANGES = ("rotation", "scale", "shear", "translate", "elastic", "stroke", "blur")


class Choices:
    """Marks a field whose allowed values are a registry's names, read when asked (a dataset
    registered after import is one of them): the app's select boxes and the generated reference
    list them as they list a Literal's."""

    def __init__(self, names: Callable[[], tuple[str, ...]]):
        self.names = names

    def __call__(self) -> tuple[str, ...]:
        return self.names()


def _registered_dataset(value: Any) -> Any:
    # The error a Literal of the registered names would give, so messages stay as they were.
    if isinstance(value, str) and value in datasets.DATASETS:
        return value
    names = [repr(name) for name in datasets.names()]
    expected = " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


class DataConfig(Section):
    """Which dataset, where it lives, how the training set is split into train/val, and how
    training batches are augmented."""

    # A registered dataset's name (`mlp_lab.config.datasets`; the built-ins and any registered since).
    dataset: Annotated[str, BeforeValidator(_registered_dataset), Choices(datasets.names)] = "fashion_mnist"
    root: str = "data"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    download: bool = True
    augment: AugmentConfig = AugmentConfig()
    # One fixed shuffle of the pixel positions (the same for every channel and split): an MLP
    # does not care where a pixel is, a CNN does. Its own seed, apart from the run's and the split's.
    permute_pixels: bool = False
    permute_seed: int = 0
    # A user's own data (`config.sources`): a folder of images, .npz arrays, a CSV table, a python
    # callable or a torchvision class, instead of a registered dataset.
    source: SourceField | None = Field(
        None, description="your own data instead of data.dataset: {kind: folder|npz|csv|python|torchvision, ...}"
    )

    @model_validator(mode="after")
    def _one_dataset(self) -> DataConfig:
        # A copied config lists the default dataset beside a source it adds: only another name clashes.
        if self.source is not None and self.dataset != DataConfig.model_fields["dataset"].default:
            raise ValueError("give data.dataset (a registered dataset) or data.source (your own data), not both")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_dataset(self, handler: Any) -> dict[str, Any]:
        # With a source, data.dataset is not read: a saved config (a run's config.yaml, the data
        # section a study's worker receives) leaves it out, so it validates again as it was given.
        dumped = handler(self)
        if self.source is not None:
            dumped.pop("dataset", None)
        return dumped

    @property
    def name(self) -> str:
        """The dataset's name: the registered one, or the source's (`data.source.name`)."""
        return self.source.dataset_name if self.source is not None else self.dataset


class OptimizerConfig(Section):
    """Optimizer and its settings; momentum and nesterov apply to SGD only."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)


class SchedulerConfig(Section):
    """Learning-rate schedule. Fields apply by name: cosine (warmup_epochs, min_lr),
    step (step_size, gamma), plateau (factor, patience, min_lr); warmup applies to all."""

    name: Literal["constant", "cosine", "step", "plateau"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    step_size: PositiveInt = 10
    gamma: float = Field(0.1, gt=0, le=1)
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(2, ge=0)


class EarlyStoppingConfig(Section):
    """Stop after `patience` epochs without an improvement larger than `min_delta`."""

    patience: PositiveInt | None = None
    min_delta: float = Field(0.0, ge=0)
    monitor: Literal["val/loss", "val/acc"] = "val/loss"


class TrainConfig(Section):
    """Everything about the optimisation loop."""

    epochs: PositiveInt = 20
    batch_size: PositiveInt = 128
    optimizer: OptimizerConfig = OptimizerConfig()
    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # of the training loss only; reported losses stay plain
    scheduler: SchedulerConfig = SchedulerConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    restore_best: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # bf16 autocast for the forward pass, on CUDA only (ignored on the CPU)
    compile: bool = False  # torch.compile the model (pays off on GPUs and long runs)
    engine: Literal["auto", "autograd", "hand"] = Field(
        "auto",
        description="the training step: hand (the plain MLP's hand-written step: Linear, relu/tanh/sigmoid/"
        "leaky_relu, dropout; no BatchNorm, compile, or amp off the CPU), autograd (any model), or auto (hand where it applies)",
    )


class OutputConfig(Section):
    """Where runs go and what they log."""

    dir: str = "runs"
    tensorboard: bool = True
    histograms: bool = False  # per-layer weight and gradient histograms in TensorBoard, every epoch
    mlflow: bool = False  # also log to MLflow (the [track] extra; mlp-lab run --track)
    handwriting: bool = Field(
        False,
        description="MNIST runs: after test, also score real handwriting (scikit-learn's scanned digits) "
        "into summary.json as handwriting/acc",
    )


class Config(Section):
    """A complete, validated run configuration."""

    name: str = Field("baseline", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    # numpy's global generator (runtime.seed_everything) takes 0 .. 2**32 - 1: a larger seed
    # would pass validation and fail when training starts.
    seed: int = Field(0, ge=0, le=2**32 - 1)
    data: DataConfig = DataConfig()
    # One section per model kind, chosen by its `kind` (mlp when absent): `config.section`.
    model: ModelSectionField = MLPConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """Plain (JSON/YAML-safe) dict of a config."""
    return cfg.model_dump(mode="json")


def config_to_yaml(cfg: BaseModel) -> str:
    """The resolved config as YAML, in schema order."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
