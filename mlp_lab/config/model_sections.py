"""The built-in model families' config sections, `model: {kind: mlp}` and `model: {kind: cnn}`, and
their geometry: parameters, MACs and the CNN's shapes, computed here once without torch (the
builders in `mlp_lab.models` size their layers from it, validation and the summary read it).

Declared torch-free and registered on import (the schema imports this module), so configs naming
these kinds validate without `mlp_lab.models`; their builders register through the same
`models.registry.register_family` call any family uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from mlp_lab.config.section import Geometry, GeometryError, ModelSection, Section, register_model_section
from mlp_lab.config.targets import Target, code_sha256, parse_target

# model.kind picks the section's class, and with it which keys the section has.
KIND = "the model family, which decides the section's other keys: mlp (the default) | cnn | user (implied by target) | a registered one"
Activation = Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu"]


class ConvConfig(Section):
    """The CNN's conv blocks: per block Conv2d -> [BatchNorm2d] -> activation -> [pooling] ->
    [channel dropout]; the head after them is model.hidden_sizes."""

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


def dense_cost(width: int, hidden_sizes: Sequence[int], num_classes: int, batch_norm: bool) -> tuple[int, int]:
    """(parameters, MACs per example) of the dense layers from `width` inputs: per hidden size a
    Linear (no bias before BatchNorm, whose shift replaces it) -> [BatchNorm1d], then the logits."""
    parameters = macs = 0
    for size in hidden_sizes:
        parameters += width * size + (2 * size if batch_norm else size)
        macs += width * size
        width = size
    return parameters + width * num_classes + num_classes, macs + width * num_classes


class MLPConfig(ModelSection):
    """An MLP (model.kind: mlp, the default): hidden layer sizes ([] = logistic regression);
    activation, BatchNorm and dropout of the dense layers."""

    kind: Literal["mlp"] = Field("mlp", description=KIND)
    # Configs list the conv section whatever their kind (configs/baseline.yaml does, and so every
    # copy `mlp-lab init` made), and a study arm or --set may switch a CNN config to an MLP with
    # model.kind alone: an MLP takes a well-formed conv section and ignores it, as it always has.
    # Excluded from the dump, so neither the run's config.yaml nor the config hash carries it.
    conv: ConvConfig | None = Field(
        None, exclude=True, description="ignored (an MLP has no conv blocks); checked, so a config can switch kind"
    )
    hidden_sizes: list[PositiveInt] = [256, 128]
    activation: Activation = "relu"
    batch_norm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    input_dropout: float = Field(0.0, ge=0, lt=1)  # dropout on the input pixels (Srivastava et al. 2014)

    def geometry(self, image_shape: tuple[int, int, int], num_classes: int) -> Geometry:
        c, h, w = image_shape
        parameters, macs = dense_cost(c * h * w, self.hidden_sizes, num_classes, self.batch_norm)
        return Geometry(features=c * h * w, parameters=parameters, macs=macs)


class CNNConfig(ModelSection):
    """A CNN (model.kind: cnn): conv blocks (model.conv), then a dense head (model.hidden_sizes)
    with the activation, BatchNorm and dropout of the MLP's dense layers."""

    kind: Literal["cnn"] = Field("cnn", description=KIND)
    conv: ConvConfig = ConvConfig()
    hidden_sizes: list[PositiveInt] = Field(
        [256, 128], description="the dense head after the conv blocks, one entry per hidden layer; [] = none"
    )
    activation: Activation = Field("relu", description="of the conv blocks and the head")
    batch_norm: bool = Field(False, description="BatchNorm1d after each hidden Linear of the head")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden activation of the head")
    input_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the input pixels, in [0, 1)")

    def conv_blocks(self, image_shape: tuple[int, int, int]) -> Iterator[tuple[tuple[int, int], tuple[int, int, int]]]:
        """Per conv block: the conv's own (height, width) and the block's (channels, height,
        width) after its pooling. A block that leaves no pixels raises GeometryError naming it."""
        conv = self.conv
        c, h, w = image_shape
        for i, (channels, pad) in enumerate(zip(conv.channels, conv.paddings())):
            h, w = h + 2 * pad - conv.kernel_size + 1, w + 2 * pad - conv.kernel_size + 1
            conv_hw = (h, w)
            if conv.pool != "none":
                h, w = h // conv.pool_size, w // conv.pool_size
            if h < 1 or w < 1:
                raise GeometryError(
                    "conv",
                    f"block {i + 1} of {len(conv.channels)} leaves no pixels ({image_shape[1]}x{image_shape[2]} "
                    "input): use fewer blocks, more padding or less pooling",
                )
            c = channels
            yield conv_hw, (c, h, w)

    def geometry(self, image_shape: tuple[int, int, int], num_classes: int) -> Geometry:
        k, c_in = self.conv.kernel_size, image_shape[0]
        parameters = macs = 0
        shape = image_shape
        for (conv_h, conv_w), shape in self.conv_blocks(image_shape):
            # A Conv2d: out x in x k^2 weights (no bias before BatchNorm, whose shift replaces
            # it) and as many MACs per output pixel of the conv (before pooling).
            c = shape[0]
            parameters += c_in * c * k**2 + (2 * c if self.conv.batch_norm else c)
            macs += conv_h * conv_w * c * c_in * k**2
            c_in = c
        features = shape[0] * shape[1] * shape[2]
        head_parameters, head_macs = dense_cost(features, self.hidden_sizes, num_classes, self.batch_norm)
        return Geometry(features=features, parameters=parameters + head_parameters, macs=macs + head_macs)


register_model_section(MLPConfig)
register_model_section(CNNConfig)


class UserModelConfig(ModelSection):
    """A user's own model (model.target): any callable that returns an `nn.Module` mapping a
    batch to its logits (N, classes), named by file or module, with its keyword arguments.

    The tool passes `num_classes`, `in_features` (the flattened input size), `in_channels` and
    `input_shape` ((C, H, W), or (features,) for a table) where the callable's signature names
    them; `args` gives the rest. Naming a target runs its code (`mlp_lab.models.user`)."""

    kind: Literal["user"] = Field("user", description=KIND)
    checked_by_building: ClassVar[bool] = True
    target: str = Field(
        description="FILE.py:NAME (relative to the config that names it) or package.module:NAME: a class or "
        "function returning an nn.Module"
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the target (a study's factor may be model.args.X)"
    )
    input: Literal["auto", "images", "flat"] = Field(
        "auto",
        description="what forward() gets: images (N, C, H, W), flat rows (N, C*H*W), or auto: flat when the "
        "target asks for in_features and not in_channels or input_shape, or the data is a table",
    )
    code_sha256: str | None = Field(
        None,
        description="the content hash of the target's file, recorded when the config is read; a run whose "
        "file changed since will not load",
    )

    @model_validator(mode="before")
    @classmethod
    def _own_keys(cls, value: Any) -> Any:
        # The commonest slip is a model's own argument written beside target instead of under args.
        if isinstance(value, dict):
            stray = [k for k in value if k not in cls.model_fields]
            if stray:
                keys = ", ".join(k for k in cls.model_fields if k != "kind")
                raise ValueError(
                    f"unknown key {stray[0]!r}: a user's model takes {keys}; its own keyword arguments go "
                    f"under args (model.args.{stray[0]})"
                )
        return value

    @field_validator("target")
    @classmethod
    def _target_found(cls, value: str) -> str:
        # A target that does not parse, or whose file or module is missing, is one line naming
        # model.target; relative files are anchored where the config was read (`targets`).
        target = parse_target(value)
        code_sha256(target)
        return f"{target.file}:{target.name}" if target.file is not None else value

    @model_validator(mode="after")
    def _record_code(self) -> UserModelConfig:
        # The content hash is recorded once, when the config is first read: it enters the config
        # hash (editing the code retrains instead of pooling) and is checked when a run loads.
        if self.code_sha256 is None:
            self.code_sha256 = code_sha256(parse_target(self.target))
        return self

    @property
    def parsed(self) -> Target:
        return parse_target(self.target)

    def geometry(self, image_shape: tuple[int, int, int], num_classes: int) -> Geometry:
        # A user's module is only known by building it (`mlp_lab.models.user` counts its parameters
        # and MACs with torch): torch-free validation knows its input width and nothing else.
        c, h, w = image_shape
        return Geometry(features=c * h * w, parameters=0, macs=0)


register_model_section(UserModelConfig)
