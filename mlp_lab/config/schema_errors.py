"""The one schema-error formatter: each pydantic error as one line naming the file (or the ``--set``)
and the dotted key, with a did-you-mean for an unknown key; for configs, study and search files."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mlp_lab.config.schema import Config
from mlp_lab.config.section import USER_KIND, ModelSection, model_kinds, model_section
from mlp_lab.config.sources import SOURCE_KINDS
from mlp_lab.core.errors import clip_repr, printable


def _dotted(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        part = part if isinstance(part, int) else printable(str(part))  # a "\n" in a key must not split the line
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _untagged(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """`loc` without the tag pydantic inserts after a tagged union's key (data.source.csv.label
    is written data.source.label)."""
    for i in range(len(loc) - 1):
        if loc[i] == "source" and loc[i + 1] in SOURCE_KINDS:
            return loc[: i + 1] + loc[i + 2 :]
    return loc


def _source_section(kind: str) -> type[BaseModel]:
    from mlp_lab.config import sources

    return next(
        c for c in typing.get_args(typing.get_args(sources.SourceField)[0]) if c.model_fields["kind"].default == kind
    )


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside an annotation (Optional[X] -> X), else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else annotation
    return annotation


def _fields_of(section: type[BaseModel]) -> dict[str, Any]:
    """A section's fields; the model section's (`model:`, one class per kind) are those of every
    registered kind, the default kind's first: the error names a key whatever kind it was under."""
    if section is not ModelSection:
        return dict(section.model_fields)
    fields: dict[str, Any] = {}
    # A user's section (chosen by its target) shares no key with the others: listing its keys
    # beside an MLP's would only confuse; `_kinds_with` still finds them.
    for kind in (k for k in model_kinds() if k != USER_KIND):
        fields = {**model_section(kind).model_fields, **fields}
    return fields


def _kinds_with(key: Any) -> list[str]:
    """The model kinds whose section has `key`."""
    return [kind for kind in model_kinds() if key in model_section(kind).model_fields]


def _section_at(loc: tuple[Any, ...], root: type[BaseModel] = Config) -> type[BaseModel] | None:
    """The schema class that holds the last key of `loc`, for did-you-mean suggestions; a
    mapping of models (a search file's params) is stepped through by its key."""
    node: Any = root
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None
        field = _fields_of(node).get(part) if isinstance(part, str) else None
        if field is None:
            return None
        node = _model_in(field.annotation)
        if parts and parts[0] in SOURCE_KINDS and part == "source":
            node = _source_section(parts.pop(0))  # the tag of data.source's union
        if typing.get_origin(node) is dict and parts:
            parts.pop(0)  # the mapping's own key (a parameter's name)
            node = _model_in(typing.get_args(node)[1])
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _natural_key(section: type[BaseModel], value: Any) -> str | None:
    """The key of `section` a lone `value` most likely meant: its first field that takes the
    value (`5` for early stopping is its patience, `cosine` a scheduler's name), else its first
    required field. Derived from the schema, so a new section needs no entry anywhere."""
    section = model_section() if section is ModelSection else section
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
    keys = ", ".join(_fields_of(section))
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
        if section is ModelSection and _kinds_with(loc[-1]):
            # A key of another model kind's section (a CNN's under an MLP's kind, say).
            kinds = _kinds_with(loc[-1])
            have = "has" if len(kinds) == 1 else "have"
            return f"not a key of this model.kind; {' and '.join(kinds)} {have} it (model.kind: {kinds[0]})"
        if section is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(_fields_of(section)), n=1)
            if close:
                msg += f", did you mean {_dotted(_untagged(loc[:-1] + (close[0],)))!r}?"
            else:
                msg += f" (known: {', '.join(_fields_of(section))})"
        return msg
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        section = _section_at(loc + ("",), root)
        if section is not None:
            return _scalar_for_section(loc, section, error["input"])
    if error["type"] == "union_tag_invalid":
        ctx = error["ctx"]
        return f"kind {clip_repr(ctx['tag'])} is not one of {ctx['expected_tags']}"
    if error["type"] == "value_error":
        # Our own validators' messages name the value and say what to type instead.
        return str(error["ctx"]["error"])
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
        dotted = _dotted(_untagged(tuple(err["loc"]))) or "(top level)"
        lines.append(f"{source(dotted)}: {dotted}: {describe_schema_error(err, root)}")
    return lines
