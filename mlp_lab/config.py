"""Typed run configuration: the schema, ``--set`` overrides, the config hash and schema errors.

This module imports only the facts below it (datasets, errors, yamlfile, shipped) and no torch, so ``mlp-lab --help`` and
``mlp-lab validate`` stay fast. Every problem in a config is collected and reported at once,
each as one line naming the file (or the ``--set`` that caused it) and the dotted key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, model_validator

from mlp_lab.datasets import DATASETS
from mlp_lab.errors import ConfigError, clip, clip_repr, printable
from mlp_lab.shipped import resolve
from mlp_lab.yamlfile import read_yaml_mapping, safe_load_strict


class _Section(BaseModel):
    # Unknown keys are errors: a typo must never silently fall back to a default. Every float is
    # finite: YAML's .inf and .nan parse as floats, and an infinite penalty or NaN rate would train.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AugmentConfig(_Section):
    """Random distortions of each training batch (train split only; see `mlp_lab.augment`).

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


class DataConfig(_Section):
    """Which dataset, where it lives, how the training set is split into train/val, and how
    training batches are augmented."""

    dataset: Literal["fashion_mnist", "mnist", "cifar10"] = "fashion_mnist"
    root: str = "data"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    download: bool = True
    augment: AugmentConfig = AugmentConfig()
    # One fixed shuffle of the pixel positions (the same for every channel and split): an MLP
    # does not care where a pixel is, a CNN does. Its own seed, apart from the run's and the split's.
    permute_pixels: bool = False
    permute_seed: int = 0


class ConvConfig(_Section):
    """The CNN's conv blocks (model.kind: cnn): per block Conv2d -> [BatchNorm2d] -> activation
    -> [pooling] -> [channel dropout]; the head after them is model.hidden_sizes."""

    channels: list[PositiveInt] = Field([32, 64], min_length=1)  # output channels of each block
    kernel_size: PositiveInt = 3
    padding: NonNegativeInt | list[NonNegativeInt] = 1  # one for every block, or one per block
    pool: Literal["max", "avg", "none"] = "max"
    pool_size: PositiveInt = 2
    batch_norm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)  # drops whole feature maps (channels) after each block

    @model_validator(mode="after")
    def _padding_per_block(self) -> ConvConfig:
        if isinstance(self.padding, list) and len(self.padding) != len(self.channels):
            raise ValueError(f"padding lists {len(self.padding)} values for {len(self.channels)} blocks")
        return self

    def paddings(self) -> list[int]:
        """The padding of each block."""
        return list(self.padding) if isinstance(self.padding, list) else [self.padding] * len(self.channels)


class ModelConfig(_Section):
    """The network: an MLP (hidden layer sizes, [] = logistic regression), or a CNN (conv blocks,
    then hidden_sizes as its head); activation, BatchNorm and dropout of the dense layers."""

    kind: Literal["mlp", "cnn"] = "mlp"
    conv: ConvConfig = ConvConfig()  # kind: cnn only
    hidden_sizes: list[PositiveInt] = [256, 128]
    activation: Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu"] = "relu"
    batch_norm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    input_dropout: float = Field(0.0, ge=0, lt=1)  # dropout on the input pixels (Srivastava et al. 2014)


class OptimizerConfig(_Section):
    """Optimizer and its settings; momentum and nesterov apply to SGD only."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)


class SchedulerConfig(_Section):
    """Learning-rate schedule. Fields apply by name: cosine (warmup_epochs, min_lr),
    step (step_size, gamma), plateau (factor, patience, min_lr); warmup applies to all."""

    name: Literal["constant", "cosine", "step", "plateau"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    step_size: PositiveInt = 10
    gamma: float = Field(0.1, gt=0, le=1)
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(2, ge=0)


class EarlyStoppingConfig(_Section):
    """Stop after `patience` epochs without an improvement larger than `min_delta`."""

    patience: PositiveInt | None = None
    min_delta: float = Field(0.0, ge=0)
    monitor: Literal["val/loss", "val/acc"] = "val/loss"


class TrainConfig(_Section):
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


class OutputConfig(_Section):
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


class Config(_Section):
    """A complete, validated run configuration."""

    name: str = Field("baseline", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    # numpy's global generator (runtime.seed_everything) takes 0 .. 2**32 - 1: a larger seed
    # would pass validation and fail when training starts.
    seed: int = Field(0, ge=0, le=2**32 - 1)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()


def read_named_base(path: Path, raw: Mapping[str, Any], errors: list[str]) -> dict[str, Any] | None:
    """The base config a study or search file's raw `base` names, or None when it names
    none or it cannot be read (its problems then added to `errors`, beside the file's others)."""
    if not isinstance(raw.get("base"), str):
        return None
    try:
        return read_base_config(path, raw["base"], [])
    except ConfigError as exc:
        errors += exc.errors
        return None


def read_base_config(path: Path, base: str, errors: list[str]) -> dict[str, Any]:
    """The `base` config named by a study or search file at `path` (relative to that file).
    If it cannot be read, that is raised together with the file's `errors` found so far."""
    base_path = Path(base) if Path(base).is_absolute() else (path.parent / base).resolve()
    try:
        return read_yaml_mapping(base_path)
    except ConfigError as exc:
        raise ConfigError([f"{path}: base: {e}" for e in exc.errors] + errors) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=value`` into the dotted key and the value parsed as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not p or not p.replace("_", "").isalnum() for p in parts):
        raise ValueError(f"--set {clip(text)}: expected KEY=VALUE with a dotted key, e.g. train.optimizer.lr=0.01")
    try:
        value = safe_load_strict(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError):
        raise ValueError(f"--set {clip(text)}: value {clip_repr(raw)} is not valid YAML") from None
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for key ``a.b.c``, creating missing mappings on the way."""
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ValueError(f"{prefix}: is a {type(child).__name__}, so it has no key {parts[i + 1]!r}")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], where: str, errors: list[str]) -> None:
    """Set dotted `overrides` in a raw config; a key that cannot be set is an error named
    `where.key` (the one path for study and search files' overrides)."""
    for key, value in overrides.items():
        try:
            set_dotted(raw, key, value)
        except ValueError as exc:
            errors.append(f"{where}.{key}: {exc}")


def _parsed_set_options(overrides: Iterable[str], errors: list[str]) -> Iterator[tuple[str, str, Any]]:
    """(text, dotted key, value) for each well-formed ``--set`` text; malformed ones go to `errors`."""
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        yield text, key, value


def apply_set_options(raw: dict[str, Any], overrides: Iterable[str], errors: list[str]) -> dict[str, str]:
    """Apply ``--set KEY=VALUE`` texts to a raw config; problems go to `errors`, one line each.

    Returns which dotted key each applied --set wrote, described as the user wrote it, for
    `validate_config`'s `override_sources`."""
    sources: dict[str, str] = {}
    for text, key, value in _parsed_set_options(overrides, errors):
        try:
            set_dotted(raw, key, value)
        except ValueError as exc:
            errors.append(f"--set {clip(text)}: {exc}")
            continue
        sources[key] = f"--set {clip(text)}"
    return sources


def parse_set_options(overrides: Iterable[str]) -> dict[str, Any]:
    """``--set`` texts as {dotted key: value}; every malformed one reported at once (ConfigError)."""
    errors: list[str] = []
    parsed = {key: value for _, key, value in _parsed_set_options(overrides, errors)}
    if errors:
        raise ConfigError(errors)
    return parsed


def deep_merge(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``delta`` merged in: nested mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _dotted(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        part = part if isinstance(part, int) else printable(str(part))  # a "\n" in a key must not split the line
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside an annotation (Optional[X] -> X), else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else annotation
    return annotation


def _section_at(loc: tuple[Any, ...], root: type[BaseModel] = Config) -> type[BaseModel] | None:
    """The schema class that holds the last key of `loc`, for did-you-mean suggestions; a
    mapping of models (a search file's params) is stepped through by its key."""
    node: Any = root
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None
        field = node.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        node = _model_in(field.annotation)
        if typing.get_origin(node) is dict and parts:
            parts.pop(0)  # the mapping's own key (a parameter's name)
            node = _model_in(typing.get_args(node)[1])
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _natural_key(section: type[BaseModel], value: Any) -> str | None:
    """The key of `section` a lone `value` most likely meant: its first field that takes the
    value (`5` for early stopping is its patience, `cosine` a scheduler's name), else its first
    required field. Derived from the schema, so a new section needs no entry anywhere."""
    for name in section.model_fields:
        try:
            section.model_validate({name: value}, strict=True)  # a bool is no rotation angle
        except ValidationError:
            continue
        return name
    required = [name for name, f in section.model_fields.items() if f.is_required()]
    return required[0] if required else None


def _scalar_for_section(loc: tuple[Any, ...], section: type[BaseModel], value: Any) -> str:
    """A value given where the schema has a section: name its keys and say what to type."""
    dotted = _dotted(loc)
    keys = ", ".join(section.model_fields)
    key = _natural_key(section, value)
    shown = str(value).lower() if isinstance(value, bool) else value
    shown = shown if isinstance(value, str | int | float) and len(str(value)) <= 40 else "VALUE"
    hint = f"set one of its keys, e.g. {dotted}.{key}={shown}" if key else "set one of its keys"
    return f"is a section ({keys}), not a value (got {clip_repr(value)}); {hint}"


def describe_schema_error(error: Mapping[str, Any], root: type[BaseModel] = Config, echo: bool = True) -> str:
    """One pydantic error as a short phrase: an unknown key gets a did-you-mean (or the known
    keys), a bad value is echoed cut to about 80 characters (unless `echo` is off, for a caller
    that has named the value already)."""
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        section = _section_at(loc, root)
        msg = "unknown key"
        if section is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1)
            if close:
                msg += f", did you mean {_dotted(loc[:-1] + (close[0],))!r}?"
            else:
                msg += f" (known: {', '.join(section.model_fields)})"
        return msg
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        section = _section_at(loc + ("",), root)
        if section is not None:
            return _scalar_for_section(loc, section, error["input"])
    msg = error["msg"]
    if echo and error["type"] not in ("missing",):
        msg += f" (got {clip_repr(error['input'])})"
    return msg


def schema_errors(
    where: str | Path | Callable[[str], str], exc: ValidationError, root: type[BaseModel] = Config
) -> list[str]:
    """Schema errors as `where: dotted.key: what` lines, one per problem: the one formatter for
    configs and for study and search files. `where` names the file, or is a function of the
    dotted key (so a value set by --set names that --set)."""
    source = where if callable(where) else lambda _dotted_key: str(where)
    lines = []
    for err in exc.errors():
        dotted = _dotted(err["loc"]) or "(top level)"
        lines.append(f"{source(dotted)}: {dotted}: {describe_schema_error(err, root)}")
    return lines


# Input features and classes of each dataset: what a model's size depends on, for validation
# (datasets holds no torch, so neither does this).
DATASET_SHAPES = {name: (facts.in_features, facts.num_classes) for name, facts in DATASETS.items()}


def dataset_parameter_count(model: ModelConfig, dataset: str) -> int:
    """`parameter_count` of a model for one of the known datasets."""
    return parameter_count(model, *DATASET_SHAPES[dataset], DATASETS[dataset].image_shape)


def conv_shapes(conv: ConvConfig, image_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The (channels, height, width) after each conv block (after its pooling): the CNN's geometry
    without torch. A block whose output would be empty raises ValueError naming it."""
    c, h, w = image_shape
    shapes = []
    for i, (channels, pad) in enumerate(zip(conv.channels, conv.paddings())):
        h, w = h + 2 * pad - conv.kernel_size + 1, w + 2 * pad - conv.kernel_size + 1
        if conv.pool != "none":
            h, w = h // conv.pool_size, w // conv.pool_size
        if h < 1 or w < 1:
            raise ValueError(
                f"block {i + 1} of {len(conv.channels)} leaves no pixels ({image_shape[1]}x{image_shape[2]} input)"
            )
        c = channels
        shapes.append((c, h, w))
    return shapes


def conv_parameter_count(conv: ConvConfig, in_channels: int) -> int:
    """Parameters of the conv blocks (with BatchNorm the Conv2d has no bias)."""
    count, c = 0, in_channels
    for channels in conv.channels:
        count += c * channels * conv.kernel_size**2 + (2 * channels if conv.batch_norm else channels)
        c = channels
    return count


def parameter_count(
    model: ModelConfig, in_features: int, num_classes: int, image_shape: tuple[int, int, int] | None = None
) -> int:
    """Parameters of the network a ModelConfig describes (weights and biases, BatchNorm's scale
    and shift; with BatchNorm the layer before it has no bias), computed without building it. A
    CNN needs the `image_shape`: its head's input is what the conv blocks leave."""
    count, width = 0, in_features
    if model.kind == "cnn":
        if image_shape is None:
            raise ValueError("a CNN's parameter count needs the image shape")
        c, h, w = conv_shapes(model.conv, image_shape)[-1]
        count, width = conv_parameter_count(model.conv, image_shape[0]), c * h * w
    for size in model.hidden_sizes:
        count += width * size + (2 * size if model.batch_norm else size)
        width = size
    return count + width * num_classes + num_classes


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def training_bytes(cfg: Config) -> int:
    """The least memory training needs for the parameters: float32 weights and gradients plus
    the optimizer's state (Adam: two moments; SGD with momentum: one buffer)."""
    opt = cfg.train.optimizer
    states = 2 if opt.name in ("adam", "adamw") else (1 if opt.momentum > 0 else 0)
    return dataset_parameter_count(cfg.model, cfg.data.dataset) * 4 * (2 + states)


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _cross_field_errors(cfg: Config, machine: bool = True) -> list[tuple[str, str]]:
    errors = []
    if cfg.model.kind == "cnn":
        try:
            conv_shapes(cfg.model.conv, DATASETS[cfg.data.dataset].image_shape)
        except ValueError as exc:
            # Checked before the memory estimate, which needs the geometry.
            return [("model.conv", f"{exc}: use fewer blocks, more padding or less pooling")]
    memory = physical_memory() if machine else None
    if memory is not None and training_bytes(cfg) > memory:
        count = dataset_parameter_count(cfg.model, cfg.data.dataset)
        errors.append(
            (
                "model.hidden_sizes",
                f"{count:,} parameters need at least {_gib(training_bytes(cfg))} "
                f"to train (weights, gradients, optimizer state); this machine has "
                f"{_gib(memory)}",
            )
        )
    if cfg.output.handwriting and cfg.data.dataset != "mnist":
        errors.append(("output.handwriting", f"scores digits: needs data.dataset 'mnist', not {cfg.data.dataset!r}"))
    train = cfg.train
    if train.scheduler.warmup_epochs >= train.epochs:
        errors.append(("train.scheduler.warmup_epochs", f"must be less than train.epochs ({train.epochs})"))
    if train.optimizer.nesterov and (train.optimizer.name != "sgd" or train.optimizer.momentum == 0):
        errors.append(("train.optimizer.nesterov", "needs optimizer 'sgd' with momentum > 0"))
    if train.scheduler.min_lr >= train.optimizer.lr and train.scheduler.name in ("cosine", "plateau"):
        errors.append(("train.scheduler.min_lr", f"must be below train.optimizer.lr ({train.optimizer.lr})"))
    return errors


def validate_config(
    data: Mapping[str, Any], source: str, override_sources: Mapping[str, str] | None = None, machine: bool = True
) -> Config:
    """Validate a raw mapping into a Config, raising one ConfigError listing every problem.

    `source` names where the mapping came from (a file path); `override_sources` maps dotted
    keys that were set by overrides to a description of the override, so each error names
    whatever the user actually wrote. With `machine` (the default), a model too large for this
    machine's memory is refused too; reading back a run made elsewhere turns that off.
    """
    override_sources = dict(override_sources or {})

    def where(dotted: str) -> str:
        for key, desc in override_sources.items():
            if (
                dotted == key
                or dotted.startswith(key + ".")
                or dotted.startswith(key + "[")
                or key.startswith(dotted + ".")
            ):
                return desc
        return source

    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(schema_errors(where, exc)) from None
    cross = _cross_field_errors(cfg, machine)
    if cross:
        raise ConfigError([f"{where(key)}: {key}: {msg}" for key, msg in cross])
    return cfg


def resolve_config(name_or_path: str | Path) -> Path:
    """A config's file: a path as it is, a name (`baseline`) from ./configs, else the shipped copy."""
    return resolve(name_or_path, "config")


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (a path, or a name resolved by `resolve_config`), apply ``KEY=VALUE``
    overrides, validate; report all errors at once."""
    path = resolve_config(path)
    data = read_yaml_mapping(path)
    errors: list[str] = []
    sources = apply_set_options(data, overrides, errors)
    try:
        cfg = validate_config(data, str(path), sources)
    except ConfigError as exc:
        errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """Plain (JSON/YAML-safe) dict of a config."""
    return cfg.model_dump(mode="json")


def config_to_yaml(cfg: BaseModel) -> str:
    """The resolved config as YAML, in schema order."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


# The trainer's numerics: bumped whenever the same config trains to different numbers on purpose
# (1: the original; 2: fused optimizer steps, 16-bit dropout masks; 3: the plain MLP's hand-written
# step, `handstep`; 4: that step's dropout masks drawn by numpy's PCG64 instead of torch's mt19937).
# Part of the config hash, so a finished run made under older numerics is stale rather than mixed
# into a study.
NUMERICS_VERSION = 4


def config_hash(cfg: Config) -> str:
    """A short stable hash of everything that affects training results, the numerics version included.

    The run name and output settings are left out: renaming a run or turning TensorBoard off
    does not change what is trained.
    """
    payload = config_to_dict(cfg)
    payload.pop("name")
    payload.pop("output")
    # Keys added after the first release are left out while they hold their defaults' meaning,
    # so every earlier config keeps its hash (and its finished runs stay finished).
    if cfg.model.kind == "mlp":
        del payload["model"]["kind"], payload["model"]["conv"]
    if not cfg.data.permute_pixels:
        del payload["data"]["permute_pixels"], payload["data"]["permute_seed"]
    if not cfg.data.augment.active:
        # The section came later: without augmentation a config hashes as it did before it
        # existed, so finished runs stay current (and an unused elastic_cells changes nothing).
        payload["data"].pop("augment")
    payload["numerics_version"] = NUMERICS_VERSION
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys: {'train': {'epochs': 3}} -> {'train.epochs': 3}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
