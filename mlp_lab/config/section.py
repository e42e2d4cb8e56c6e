"""What every config section is (strict: unknown keys and non-finite floats refused), and what a
model family's section is: a section with a `kind`, its cost for a dataset's shape (`Geometry`),
and the registry of the kinds a config's `model:` may name.

The registry lives here, in the torch-free config layer, and not beside the families' builders
in `mlp_lab.models`: validating a config (`mlp-lab validate`, `--help`, the app's form, a study's
arms) must know every section's keys without importing torch, and config may not import models
(the layer rule). A family registers its section here through `models.registry.register_family`;
the built-in sections (`config.model_sections`) are declared torch-free and registered when the
schema is imported, so a config that names mlp or cnn validates without the models package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PlainValidator, SerializeAsAny, ValidationError
from pydantic_core import PydanticCustomError

# The kind of a `model:` section that names none: every config written before model.kind existed
# is an MLP's.
DEFAULT_KIND = "mlp"
USER_KIND = "user"


class Section(BaseModel):
    # Unknown keys are errors: a typo must never silently fall back to a default. Every float is
    # finite: YAML's .inf and .nan parse as floats, and an infinite penalty or NaN rate would train.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class Geometry:
    """What a model costs for one dataset shape, from its section alone (no torch): the one place
    its sizes are computed, for validation (does it fit the image, the machine's memory), the
    builder (the width its dense layers start from) and the summary (MACs)."""

    features: int  # the width the dense layers start from: an MLP's pixels, what a CNN's conv blocks leave
    parameters: int  # weights and biases, BatchNorm's scale and shift
    macs: int  # multiply-accumulates of one example's forward pass (element-wise layers not counted)


class GeometryError(ValueError):
    """A section that cannot fit the data's shape; `key` is the section's key to blame (``conv``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class ModelSection(Section):
    """The `model:` section of one model family. A family's section subclasses this with `kind`
    as a one-value Literal (its tag, e.g. ``kind: Literal["toy"] = "toy"``) and implements
    `geometry`; it holds no torch, so validation stays fast."""

    kind: str
    # A section whose network is known only by building it (a user's target): `mlp-lab validate`
    # builds it once (imports torch and the user's code) to check its signature and output.
    checked_by_building: ClassVar[bool] = False

    def geometry(self, image_shape: tuple[int, int, int], num_classes: int) -> Geometry:
        """The model's sizes for images of `image_shape` (C, H, W) and `num_classes` classes;
        raises GeometryError where the section cannot fit that shape."""
        raise NotImplementedError(f"model kind {self.kind!r} does not say its geometry")


_SECTIONS: dict[str, type[ModelSection]] = {}


def section_kind(section: type[ModelSection]) -> str:
    """The tag a section class declares: its `kind` field's default."""
    kind = section.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{section.__name__}.kind needs a default: the kind's name, e.g. Literal['toy'] = 'toy'")
    return kind


def register_model_section(section: type[ModelSection]) -> str:
    """Make `section` the schema of ``model: {kind: <its kind>}``; returns the kind. Registering
    the same class again is a no-op (a module imported twice); another class under a taken kind
    is refused, so a family cannot silently replace a built-in one."""
    if not (isinstance(section, type) and issubclass(section, ModelSection)):
        raise TypeError(f"a model section must subclass ModelSection, not {section!r}")
    kind = section_kind(section)
    if section.geometry is ModelSection.geometry:
        # Validation sizes every model before training (does it fit the image, the memory).
        raise TypeError(f"{section.__name__} must implement geometry(image_shape, num_classes)")
    known = _SECTIONS.get(kind)
    if known is not None and known is not section:
        raise ValueError(f"model kind {kind!r} is already registered ({known.__module__}.{known.__qualname__})")
    _SECTIONS[kind] = section
    return kind


def unregister_model_section(kind: str) -> None:
    """Forget a kind (for tests and notebooks that register a family for a while)."""
    _SECTIONS.pop(kind, None)


def model_kinds() -> tuple[str, ...]:
    """The kinds a config may name, in registration order (the built-in ones first)."""
    return tuple(_SECTIONS)


def model_section(kind: str = DEFAULT_KIND) -> type[ModelSection]:
    """The section class of a registered kind (KeyError for an unknown one)."""
    return _SECTIONS[kind]


def _validate_model(value: Any) -> ModelSection:
    """The `model:` section: a tagged union on `kind` over the registered sections. pydantic's own
    discriminated union (`Field(discriminator=...)`) fixes its members when the class is defined;
    a family registered later (a user's, a test's) must validate too, so the tag is looked up
    here. Errors keep the section's locations under `model` (``model.conv.channels``)."""
    if isinstance(value, ModelSection):
        return value
    if not isinstance(value, Mapping):
        raise PydanticCustomError("model_attributes_type", "Input should be a valid dictionary or object")
    # A section naming a target is a user's model (`config.model_sections.UserModelConfig`).
    kind = value.get("kind", USER_KIND if "target" in value else DEFAULT_KIND)
    section = _SECTIONS.get(kind) if isinstance(kind, str) else None
    if section is None:
        expected = " or ".join(repr(k) for k in _SECTIONS)
        raise ValidationError.from_exception_data(
            "model",
            [{"type": "literal_error", "loc": ("kind",), "input": kind, "ctx": {"expected": expected}}],
        )
    return section.model_validate({**value, "kind": kind})


# The annotation of Config.model: validated by kind, dumped with every field of its own section
# (SerializeAsAny: not only ModelSection's `kind`).
ModelSectionField = Annotated[SerializeAsAny[ModelSection], PlainValidator(_validate_model)]
