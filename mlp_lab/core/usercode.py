"""The user's own code: importing a target's callable after checking the content hash recorded for
it, and showing an exception raised inside that code with its frames only.

A target is code, and naming it runs it (as Lightning's `class_path` and Hydra's `_target_` do).
What this adds is the check: a run records its code's content hash, and loading that run again
(resume, evaluate, predict, the app, a registered model) imports the code from where the run
recorded it only if the file is unchanged; where the file is gone (a fresh interpreter loading a
registered model, a cluster's worker), a copy with that hash is looked for in the code
directories (`code_dirs`: MLflow's model code folder, the folder a Ray worker unpacked it to).

No torch and nothing of ours but the errors: the model and data layers call `load_target`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from mlp_lab.core.errors import MLPLabError

# Folders searched for a copy of a target's file (by name and content hash) where the recorded
# file is missing: filled by MLflow's model loader and by Ray workers; MLP_LAB_CODE_DIRS (paths
# joined by os.pathsep) adds more.
CODE_DIRS: list[Path] = []

# The files and package folders of user code imported so far: an exception's frames in them are
# the user's (`user_code_error`).
_USER_PLACES: set[str] = set()
_MODULES: dict[tuple[str, str], ModuleType] = {}
USER_PACKAGE = "mlp_lab_user"  # the package the modules of user files are imported under


class UserCodeError(MLPLabError):
    """An exception raised inside the user's own code (exit 2): the message is one line naming the
    file and line, and `user_traceback` is the traceback of the user's frames only."""

    def __init__(self, message: str, user_traceback: str = ""):
        super().__init__(message)
        self.user_traceback = user_traceback


class CodeChanged(MLPLabError):
    """A run's code is not the code it recorded (an edited or missing file)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_dirs() -> list[Path]:
    """Where copies of user code are looked for, by name and hash, when the recorded file is gone."""
    extra = [Path(p) for p in os.environ.get("MLP_LAB_CODE_DIRS", "").split(os.pathsep) if p]
    return [*CODE_DIRS, *extra]


def add_code_dir(folder: Path) -> None:
    """Search `folder` (and its subfolders, one level down) for copies of user code from now on."""
    folder = Path(folder)
    if folder not in CODE_DIRS:
        CODE_DIRS.append(folder)


def code_bytes(file: Path, sha256: str, key: str) -> bytes:
    """The content of a target's file as the run recorded it (the file, or a copy with its hash
    in `code_dirs`): what travels with a run to a machine that does not have the file."""
    return find_code(Path(file), sha256, key).read_bytes()


def unpack_code(bundle: Mapping[str, tuple[str, bytes]], root: Path) -> Path:
    """Write shipped code (`{sha256: (file name, bytes)}`) as `root/<sha256>/<name>` and search
    `root` from now on, so `load_target` finds each file by its recorded name and hash where the
    original is missing. One folder per hash: two versions of a file never overwrite each other,
    and a file already there is not written again. Returns `root`."""
    root = Path(root)
    for sha256, (name, data) in bundle.items():
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CodeChanged(f"the shipped copy of {name} does not have its recorded sha256 {sha256[:12]}...")
        path = root / sha256 / Path(name).name
        if path.is_file() and sha256_of(path) == sha256:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)  # atomic: two workers of one node may unpack the same file at once
    add_code_dir(root)
    return root


def _is_user_frame(filename: str) -> bool:
    return any(filename == place or filename.startswith(place + os.sep) for place in _USER_PLACES)


def user_code_error(exc: BaseException, what: str = "") -> UserCodeError | None:
    """`exc` as a UserCodeError when it was raised in (or through) the user's code: its frames in
    that code as the traceback, the innermost one naming the line; None when the user's code
    has no frame in it (the error is ours or a library's, shown as such)."""
    if isinstance(exc, UserCodeError):
        return exc
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_frame(f.filename)]
    if not frames:
        return None
    shown = "Traceback (your code's frames only):\n" + "".join(traceback.format_list(frames))
    shown += "".join(traceback.format_exception_only(type(exc), exc))
    last = frames[-1]
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"{last.filename}:{last.lineno}: {type(exc).__name__}{': ' + detail if detail else ''}"
    return UserCodeError(f"{what + ': ' if what else ''}{message}", shown)


def call_user_code(fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, an exception inside the user's code turned into a UserCodeError."""
    try:
        return fn(*args, **kwargs)
    except MLPLabError:
        raise
    except Exception as exc:
        error = user_code_error(exc, what)
        if error is None:
            raise
        raise error from None


def _copy_with_hash(name: str, sha256: str) -> Path | None:
    for folder in code_dirs():
        for candidate in (folder / name, *folder.glob(f"*/{name}")):
            if candidate.is_file() and sha256_of(candidate) == sha256:
                return candidate
    return None


def find_code(file: Path, sha256: str | None, key: str) -> Path:
    """The file to import for a target recorded as `file` with content hash `sha256`: the file
    itself if unchanged, else a copy with that hash in `code_dirs`; a changed or missing file
    with no such copy is a one-line CodeChanged naming `key`."""
    if file.is_file() and (sha256 is None or sha256_of(file) == sha256):
        return file
    copy = _copy_with_hash(file.name, sha256) if sha256 else None
    if copy is not None:
        return copy
    if file.is_file():
        raise CodeChanged(
            f"{key}: {file} changed since the run recorded it (sha256 {sha256[:12]}..., now "
            f"{sha256_of(file)[:12]}...): restore that version, or train again with this one"
        )
    raise CodeChanged(f"{key}: {file} is gone (the run recorded sha256 {str(sha256)[:12]}...): restore the file")


def _import_file(path: Path, sha256: str, key: str) -> ModuleType:
    cached = _MODULES.get((str(path), sha256))
    if cached is not None:
        return cached
    # One module per file version, under a name no import statement uses, so two versions of a
    # file (a study's old and new code) never share a module; registered in sys.modules so that
    # pickle, dataclasses and typing find the module of the classes it defines.
    name = f"{USER_PACKAGE}.{path.stem}_{sha256[:12]}"
    if USER_PACKAGE not in sys.modules:
        # The parent of those names, as a package: pickle imports a class's module by its dotted
        # name, which needs the parent, so objects of the user's classes pickle (a process that
        # loaded the same target, such as a pool's or a Ray worker, unpickles them).
        package = ModuleType(USER_PACKAGE, "the user's code that mlp-lab imported, one module per file version")
        package.__path__ = []
        sys.modules[USER_PACKAGE] = package
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MLPLabError(f"{key}: {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    _USER_PLACES.add(str(path))
    sys.modules[name] = module
    try:
        call_user_code(spec.loader.exec_module, module, what=f"{key}: importing {path.name}")
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _MODULES[(str(path), sha256)] = module
    return module


def _import_module(module: str, key: str) -> ModuleType:
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin:
        # The package's folder is the user's: frames in any of its modules are shown.
        origin = Path(spec.origin)
        top = importlib.util.find_spec(module.split(".")[0])
        place = Path(top.origin).parent if top is not None and top.origin and top.submodule_search_locations else origin
        if "site-packages" not in str(place) and "dist-packages" not in str(place):
            _USER_PLACES.add(str(place))
    return call_user_code(importlib.import_module, module, what=f"{key}: importing {module}")


def load_target(
    name: str, file: Path | None = None, module: str | None = None, sha256: str | None = None, key: str = ""
) -> Callable[..., Any]:
    """The callable `name` of a target's file (checked against `sha256`, see `find_code`) or
    module; a missing name or a non-callable is a one-line MLPLabError naming `key`."""
    if file is not None:
        path = find_code(Path(file), sha256, key)
        loaded = _import_file(path, sha256 or sha256_of(path), key)
        where = str(file)
    else:
        loaded = _import_module(str(module), key)
        where = str(module)
    if not hasattr(loaded, name):
        public = sorted(n for n, v in vars(loaded).items() if callable(v) and not n.startswith("_"))
        known = f"; it has: {', '.join(public[:12])}" if public else ""
        raise MLPLabError(f"{key}: {where} has no {name!r}{known}")
    target = getattr(loaded, name)
    if not callable(target):
        raise MLPLabError(f"{key}: {where}:{name} is a {type(target).__name__}, not a class or function")
    return target
