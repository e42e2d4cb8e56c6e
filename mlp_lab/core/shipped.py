"""The configs, studies and searches that ship with mlp-lab, and the names that find them.

A name (``baseline``, ``early_stopping``, ``fashion_search``) is looked up in the user's folder
first (./configs, ./experiments, ./searches), then in the package's copy, so that the commands
work after ``pip install`` in an empty directory and a user's edited copy always wins. Using
the package's copy is said once, as an INFO record of this module's logger: the CLI shows it on
stderr, a library caller sees nothing unless it turns logging on. `write_copy` is `mlp-lab init`.

In a wheel the copy is ``mlp_lab/files/<folder>/`` (pyproject.toml maps the repository's
top-level folders there); run from a source checkout (an editable install, PYTHONPATH) the
repository's own top-level folders are the copy. No torch, nothing of ours but the errors.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from pathlib import Path

from mlp_lab.core.errors import MLPLabError

logger = logging.getLogger(__name__)

# Each kind of file and its folder, in the user's directory and in the package alike.
FOLDERS = {"config": "configs", "study": "experiments", "search": "searches"}

PACKAGE = Path(__file__).resolve().parents[1]  # mlp_lab/, this file being mlp_lab/core/shipped.py


def did_you_mean(word: str, known: Iterable[str]) -> str | None:
    """The known word closest to a misspelt `word`, or None when none is close."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return close[0] if close else None


def shipped_dir(folder: str) -> Path:
    """The package's copy of `folder` (configs, experiments or searches)."""
    installed = PACKAGE / "files" / folder
    # Not installed from a wheel: the checkout's top-level folder is what the wheel would hold.
    return installed if installed.is_dir() else PACKAGE.parent / folder


def shipped_files(folder: str) -> list[Path]:
    """The YAML files of the package's copy of `folder`, by name."""
    return sorted(shipped_dir(folder).glob("*.yaml"))


def resolve(name_or_path: str | Path, kind: str, directory: str | Path | None = None) -> Path:
    """`baseline` -> ./configs/baseline.yaml if it is there, else the package's copy (logged);
    a path (a .yaml suffix, or anything that exists) is taken as it is.

    `kind` is config, study or search (its folder is FOLDERS[kind]); `directory` replaces the
    user's folder (e.g. --studies-dir). Another `kind` has no package copy: only `directory`.
    An unknown name is an MLPLabError with a did-you-mean, the user's names and the shipped ones.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    folder = FOLDERS.get(kind)
    user_dir = Path(directory if directory is not None else folder or ".")
    candidate = user_dir / f"{name_or_path}.yaml"
    if candidate.exists() or candidate.is_symlink():  # a dangling link: its reader says so
        return candidate
    known = sorted(p.stem for p in user_dir.glob("*.yaml"))
    shipped = [p for p in shipped_files(folder) if p.stem not in known] if folder else []
    for file in shipped:
        if file.stem == str(name_or_path):
            logger.info(
                "using the shipped %s %s (no %s here; mlp-lab init DIR writes an editable copy)", kind, file, candidate
            )
            return file
    close = did_you_mean(str(name_or_path), known + [p.stem for p in shipped])
    hint = f" (did you mean {close!r}?)" if close else ""
    hint += f"; known: {', '.join(known)}" if known else f"; no {kind} files in {user_dir}/"
    hint += f"; shipped: {', '.join(p.stem for p in shipped)}" if shipped else ""
    raise MLPLabError(f"{candidate}: no {kind} named {str(name_or_path)!r}{hint}")


def write_copy(destination: str | Path, force: bool = False) -> list[tuple[Path, int]]:
    """Copy the shipped configs/, experiments/ and searches/ into `destination` (made if needed),
    as files to edit: a study's `base: ../configs/...` then finds the copied config.

    Refuses, before writing anything, when a file it would write exists, unless `force` (files
    of other names are left alone). Returns each folder written and how many files it got.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise MLPLabError(f"{destination}: is a file, expected a directory")
    plan = [(destination / folder, shipped_files(folder)) for folder in FOLDERS.values()]
    for target, _ in plan:
        if target.exists() and not target.is_dir():
            raise MLPLabError(f"{target}: is a file, expected a directory")
    existing = [target / f.name for target, files in plan for f in files if (target / f.name).exists()]
    if existing and not force:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise MLPLabError(
            f"{destination}: would overwrite {', '.join(map(str, existing[:3]))}{more}; "
            f"give --force to replace them with the shipped copies"
        )
    made: list[Path] = []  # what this call created, removed again if it cannot finish
    try:
        for target, files in plan:
            for folder in reversed([target, *target.parents]):
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
            for file in files:
                if not (target / file.name).exists():
                    made.append(target / file.name)
                (target / file.name).write_bytes(file.read_bytes())
    except BaseException:
        # A full disk or a signal mid-copy: no half copy left behind (overwritten files stay replaced).
        for created in reversed(made):
            try:
                if created.is_dir():
                    created.rmdir()
                else:
                    created.unlink(missing_ok=True)
            except OSError:
                pass
        raise
    return [(target, len(files)) for target, files in plan]
