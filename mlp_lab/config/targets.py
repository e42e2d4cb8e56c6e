"""A user's code and files named in a config: a target (``FILE.py:NAME`` or ``package.module:NAME``),
the files a data source reads, where relative paths are anchored, and the content hashes that
enter the run's record.

A relative path means "relative to the file it was written in" (a config, a study's arms, a
search's overrides), as a user reads it; a ``--set`` is relative to the working directory. Paths
are made absolute when a file is read (`anchor_paths`), so a run's recorded config.yaml names the
file wherever the run is later read from. The config hash holds the file's *content* hash and
its name, not its absolute path: moving a project keeps its runs, editing the code does not.

No torch and nothing of ours but the errors: resolving a target's file and hashing it is plain
file work; importing it (which runs the user's code) is `mlp_lab.models.user`'s job.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable, Mapping, MutableMapping
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The dotted keys that hold a user's file (a target or a path), anchored to the file they are
# written in.
PATH_KEYS = ("model.target", "data.source.path", "data.source.target")


@dataclass(frozen=True)
class Target:
    """A parsed target: `file` (an absolute path to a .py file) or `module` (dotted), and the
    `name` of the callable in it."""

    text: str
    name: str
    file: Path | None = None
    module: str | None = None

    @property
    def where(self) -> str:
        """The file or module, as messages name it."""
        return str(self.file) if self.file is not None else str(self.module)

    @property
    def label(self) -> str:
        """``my_mlp.py:ParameterizedMLP`` or ``mypkg.models:resnet8``: what reports show."""
        return f"{self.file.name}:{self.name}" if self.file is not None else f"{self.module}:{self.name}"


def parse_target(text: str, directory: Path | None = None) -> Target:
    """Split ``FILE.py:NAME`` (relative to `directory`, else the working directory) or
    ``package.module:NAME``; raises ValueError saying what to type instead."""
    where, sep, name = str(text).rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ValueError(
            f"{text!r} is not a target: write FILE.py:NAME (e.g. models/my_mlp.py:ParameterizedMLP) "
            "or package.module:NAME (e.g. torchvision.models:resnet18)"
        )
    if where.endswith(".py") or "/" in where or os.sep in where:
        path = Path(where).expanduser()
        if not path.is_absolute():
            path = (directory or Path.cwd()) / path
        return Target(text, name, file=Path(os.path.normpath(path)))
    if not all(part.isidentifier() for part in where.split(".")):
        raise ValueError(f"{text!r}: {where!r} is neither a .py file nor a dotted module name")
    return Target(text, name, module=where)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def module_file(module: str) -> Path | None:
    """The source file of an importable module, without importing it (its parent packages are
    imported to find it); None where it has none (a namespace, a built-in)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def code_sha256(target: Target) -> str:
    """The content hash of the file a target's code is in; raises ValueError naming what is
    missing (a file that does not exist, a module that cannot be found)."""
    if target.file is not None:
        if not target.file.is_file():
            raise ValueError(f"{target.file}: no such file (the target is relative to the config that names it)")
        return _sha256_file(target.file)
    path = module_file(str(target.module))
    if path is None:
        raise ValueError(f"module {target.module!r} cannot be found: install it, or name its file (FILE.py:NAME)")
    return _sha256_file(path)


# (path, size, mtime) -> sha256: a study validates each arm, and each worker its config again.
_TREE_HASHES: dict[tuple[str, int, int, int], str] = {}


def content_sha256(path: Path, suffixes: Iterable[str] = ()) -> str:
    """The content hash of a file, or of a folder's files (their paths relative to it and their
    bytes, in sorted order; only those ending in `suffixes` when given). Cached per file state,
    so asking again for an unchanged file costs a stat."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, 0)
        if key not in _TREE_HASHES:
            _TREE_HASHES[key] = _sha256_file(path)
        return _TREE_HASHES[key]
    wanted = tuple(s.lower() for s in suffixes)
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted
    )
    stats = [p.stat() for p in files]
    key = (str(path), len(files), max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats))
    if key not in _TREE_HASHES:
        digest = hashlib.sha256()
        for p in files:
            digest.update(p.relative_to(path).as_posix().encode() + b"\0")
            digest.update(_sha256_file(p).encode())
        _TREE_HASHES[key] = digest.hexdigest()
    return _TREE_HASHES[key]


def _anchor_value(key: str, value: Any, directory: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    if key == "data.source.path":
        path = Path(value).expanduser()
        return value if path.is_absolute() else os.path.normpath(directory / path)
    try:
        target = parse_target(value, directory)
    except ValueError:
        return value  # validation says what is wrong with it
    return f"{target.file}:{target.name}" if target.file is not None else value


def anchor_paths(data: MutableMapping[str, Any], directory: Path, prefix: str = "") -> None:
    """Make the relative user paths in a raw config mapping (nested, or flat dotted keys as a
    study's arms and overrides hold them) absolute, relative to `directory`, in place."""
    for key, value in list(data.items()):
        dotted = f"{prefix}{key}"
        if dotted in PATH_KEYS:
            data[key] = _anchor_value(dotted, value, directory)
        elif isinstance(value, MutableMapping) and any(k.startswith(dotted + ".") for k in PATH_KEYS):
            anchor_paths(value, directory, dotted + ".")


def anchored(data: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    """A copy of a flat or nested raw mapping with its user paths anchored to `directory`."""
    copy = deepcopy(dict(data))
    anchor_paths(copy, directory)
    return copy


def recorded_code(raw_config: Mapping[str, Any]) -> list[tuple[str, Target, str]]:
    """The user code a resolved config (as a plain mapping: config.yaml, a checkpoint's "config")
    runs, with the content hashes it recorded: ``(key, target, sha256)`` for a user model
    (model.target) and a python data source (data.source.target). What travels with a run to a
    Ray worker and with a logged MLflow model; a module target (package.module:NAME) is listed
    too, but only a file can travel: a module must be installed where the run loads."""
    found = []
    model = raw_config.get("model") or {}
    if isinstance(model, Mapping) and model.get("kind") == "user" and model.get("code_sha256"):
        found.append(("model.target", parse_target(str(model["target"])), str(model["code_sha256"])))
    source = (raw_config.get("data") or {}).get("source") or {}
    if isinstance(source, Mapping) and source.get("kind") == "python" and source.get("fingerprint"):
        found.append(("data.source.target", parse_target(str(source["target"])), str(source["fingerprint"])))
    return found


def check_target(value: str) -> str:
    """A target's text with its file absolute, after checking that its file or module exists
    (ValueError naming what is missing). Where code directories are set (a registered model
    loading, a Ray worker: `core.usercode.code_dirs`), a missing file is left to
    `check_recorded_copy`, which finds its copy by the hash the run recorded."""
    from mlp_lab.core.usercode import code_dirs

    target = parse_target(value)
    if target.file is None or target.file.is_file() or not code_dirs():
        code_sha256(target)
    return f"{target.file}:{target.name}" if target.file is not None else value


def check_recorded_copy(value: str, sha256: str | None, key: str) -> None:
    """Where a target's file is missing but a hash was recorded, a copy with that hash must be in
    the code directories (else CodeChanged, one line naming `key`); without a recorded hash the
    file itself must exist (ValueError)."""
    from mlp_lab.core.usercode import find_code

    target = parse_target(value)
    if target.file is None or target.file.is_file():
        return
    if sha256 is None:
        code_sha256(target)  # raises: no such file
    find_code(target.file, sha256, key)
