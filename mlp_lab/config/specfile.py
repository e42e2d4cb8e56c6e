"""One loader for study and search files: resolve a name (the user's folder, then the shipped
copy) or path, read the mapping, validate it against the file's schema, and read its base config
with the file's overrides and the command line's ``--set`` applied.

Both kinds of file name a `base` config (relative to the file) and dotted `overrides`; what
each then checks of its own (arms and factors, a search space) stays with its loader. Every
problem found here is collected, not raised one at a time, so a file is reported whole.
No torch: a bad file is refused before torch is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from mlp_lab.config.overrides import apply_overrides, apply_set_options, flatten, read_named_base
from mlp_lab.config.schema_errors import schema_errors
from mlp_lab.config.targets import anchored
from mlp_lab.core.errors import ConfigError
from mlp_lab.core.shipped import resolve
from mlp_lab.core.yamlfile import read_yaml_mapping

Schema = TypeVar("Schema", bound=BaseModel)


def resolve_spec_path(name_or_path: str | Path, directory: str | Path, kind: str) -> Path:
    """`early_stopping` -> <directory>/early_stopping.yaml, else the shipped copy of a study or
    search (see `shipped.resolve`); a path is taken as it is. An unknown name is an MLPLabError
    with a did-you-mean and the known names (`kind` names what is looked for)."""
    return resolve(name_or_path, kind, directory)


@dataclass
class SpecFile(Generic[Schema]):
    """A read study or search file: the validated `spec`, the `raw` mapping, the `base` config
    (a raw mapping) with the file's overrides and the --set texts applied, which key each --set
    wrote (`sources`, for `validate_config`), and the problems found so far (`errors`: the
    loader adds its own and raises them all together)."""

    path: Path
    raw: dict[str, Any]
    spec: Schema
    base: dict[str, Any]
    sources: dict[str, str]
    errors: list[str]


def read_spec_file(
    name_or_path: str | Path,
    directory: str | Path,
    kind: str,
    schema: type[Schema],
    set_options: Sequence[str] = (),
    raw_checks: Callable[[Path, dict[str, Any]], list[str]] | None = None,
) -> SpecFile[Schema]:
    """Resolve, read and validate a `kind` file against `schema` (which has `base` and `overrides`
    fields), then read its base config and apply the file's overrides and `set_options`.

    `raw_checks` are the loader's checks of single fields; they run on the raw mapping, so a
    schema error elsewhere does not hide them. Raises ConfigError with every problem when the
    file or its base cannot be used at all; otherwise the problems so far are in `errors`.
    """
    path = resolve_spec_path(name_or_path, directory, kind)
    raw = read_yaml_mapping(path)
    errors: list[str] = []
    try:
        spec: Schema | None = schema.model_validate(raw)
    except ValidationError as exc:
        errors += schema_errors(path, exc, schema)
        spec = None
    if raw_checks is not None:
        errors += raw_checks(path, raw)
    base = read_named_base(path, raw, errors)
    if spec is None or base is None:
        raise ConfigError(errors)
    apply_overrides(base, anchored(flatten(spec.overrides), path.parent), f"{path}: overrides", errors)
    sources = apply_set_options(base, set_options, errors)
    return SpecFile(path, raw, spec, base, sources, errors)
