"""Finding a dataset's files: the configured root, then known local copies (``--data-dir``,
``$MLP_LAB_DATA``, system packages such as Debian's ``dataset-fashion-mnist``), then a download.
A copy found elsewhere is verified, decompressed and copied into the root. Generic: what differs
between datasets is in their `DatasetSource`."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from mlp_lab.config.schema import DataConfig
from mlp_lab.core.errors import os_fault
from mlp_lab.data import registry
from mlp_lab.data.source import DataError, DatasetSource

# Environment variable naming extra directories (os.pathsep-separated) that hold dataset files.
DATA_ENV = "MLP_LAB_DATA"
ORIGIN_FILE = ".copied-from"  # in a root's dataset folder: where its files came from


def _has_files(directory: Path, names: Iterable[str]) -> bool:
    return all((directory / n).is_file() for n in names)


def _has_gz_or_raw(directory: Path, names: Iterable[str]) -> bool:
    return all((directory / n).is_file() or (directory / f"{n}.gz").is_file() for n in names)


def _open_maybe_gz(directory: Path, name: str):
    raw = directory / name
    return open(raw, "rb") if raw.is_file() else gzip.open(directory / f"{name}.gz", "rb")


def _corrupt(source: Path, exc: BaseException) -> DataError:
    # gzip raises EOFError for a cut-off file, BadGzipFile (an OSError) or zlib.error for a damaged one.
    detail = str(exc).splitlines()[0] if str(exc) else "it ends early"
    return DataError(
        f"{source}: truncated or corrupt ({type(exc).__name__}: {detail}); replace it with a complete copy"
    )


def _source(directory: Path, name: str) -> Path:
    return directory / name if (directory / name).is_file() else directory / f"{name}.gz"


def _sha256(directory: Path, name: str) -> str:
    digest = hashlib.sha256()
    try:
        with _open_maybe_gz(directory, name) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (EOFError, OSError, zlib.error) as exc:
        raise _corrupt(_source(directory, name), exc) from None
    return digest.hexdigest()


def _candidate_dirs(source: DatasetSource, base: Path) -> list[Path]:
    # A user may point at the files themselves or at a folder holding one folder per dataset.
    names = [source.name, source.name.replace("_", "-"), *source.aliases, source.subdir]
    return list(dict.fromkeys([base] + [base / n for n in names]))


def search_locations(source: DatasetSource, extra_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Directories searched, in order, when the configured root has no copy."""
    env = [p for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
    return [Path(p) for p in [*extra_dirs, *env, *source.known_dirs]]


def _holds_copy(source: DatasetSource, directory: Path) -> bool:
    return (_has_gz_or_raw if source.gzip_ok else _has_files)(directory, source.files)


def _other_dataset_in(source: DatasetSource, directory: Path) -> str | None:
    """The name of another registered dataset whose files `directory` holds, if it holds one."""
    if source.fingerprint is None:
        return None
    name = source.fingerprint[0]
    digest = _sha256(directory, name)
    for other in registry.SOURCES.values():
        if other.name != source.name and other.fingerprint == (name, digest):
            return other.name
    return None


def _install_from(source: DatasetSource, found: Path, root: Path) -> Path:
    """Make a copy found elsewhere loadable from a root; return that root."""
    depth = len(Path(source.subdir).parts)
    if source.load_in_place and found.parts[-depth:] == Path(source.subdir).parts:
        return found.parents[depth - 1]  # already laid out as the reader expects: read it where it is
    target = source.directory(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"data.root {root}: is a file, expected a directory for the dataset files")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_fault(exc, key="data.root") from None
    for name in source.files:
        # Write then rename, so an interrupted copy never looks like a complete dataset. The
        # temporary name is this process's own (host and pid): parallel workers (a process
        # pool, Ray tasks on several nodes) may install the same copy at once, and a shared
        # name would let one rename the other's half-written file into place.
        tmp = target / f".{name}.tmp-{socket.gethostname()}-{os.getpid()}"
        try:
            _copy_file(found, name, tmp)
            os.replace(tmp, target / name)
        except OSError as exc:
            raise os_fault(exc, key="data.root") from None
        finally:
            tmp.unlink(missing_ok=True)
    _record_origin(target, str(found.resolve()))
    return root


def _record_origin(directory: Path, origin: str) -> None:
    """Note where a root's copy came from, so later runs can say the real source rather than the
    root it was copied into; a note that cannot be written only costs that sentence."""
    try:
        (directory / ORIGIN_FILE).write_text(origin + "\n", encoding="utf-8")
    except OSError:
        pass


def describe_source(source: DatasetSource, root: Path) -> str:
    """Where a loaded dataset's files are, and where they were copied or downloaded from."""
    where = str(root.resolve())
    try:
        origin = (source.directory(root) / ORIGIN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return where
    return f"{where} (copied from {origin})" if origin.startswith("/") else f"{where} ({origin})"


def _copy_file(found: Path, name: str, dst_path: Path) -> None:
    """Copy (and decompress) one dataset file; a truncated or corrupt source is a DataError
    naming it, a failed write an OSError (the machine's fault, not the file's)."""
    source = _source(found, name)
    with open(dst_path, "wb") as dst:
        try:
            src = _open_maybe_gz(found, name)
        except OSError as exc:
            raise DataError(f"{source}: cannot read: {exc.strerror or exc}") from None
        with src:
            while True:
                try:
                    block = src.read(1 << 20)
                except (EOFError, OSError, zlib.error) as exc:
                    raise _corrupt(source, exc) from None
                if not block:
                    return
                dst.write(block)


def locate(cfg: DataConfig, extra_dirs: Sequence[str | Path] = ()) -> Path:
    """Return the root under which `cfg.dataset`'s files are (in its source's folder), finding or
    downloading them.

    Order: the configured root; known local copies (`extra_dirs`, $MLP_LAB_DATA, the source's
    system locations), which are decompressed into the root; then a download if allowed.
    Raises DataError saying where it looked and how to fix it.
    """
    source = registry.source_for(cfg.dataset)
    root = Path(cfg.root)
    if _has_files(source.directory(root), source.files):
        return root

    # Only the base directories are named (each is searched with its dataset-named subfolders):
    # the line stays readable however many places are searched.
    looked = [str(root)]
    for base in search_locations(source, extra_dirs):
        looked.append(str(base))
        for candidate in _candidate_dirs(source, base):
            if _holds_copy(source, candidate):
                other = _other_dataset_in(source, candidate)
                if other is not None:
                    looked.append(f"{candidate} (holds {other}, not {source.name}: skipped)")
                    continue
                return _install_from(source, candidate, root)

    download_note = "download is off (data.download: false)"
    if source.download is None:
        download_note = f"{source.name} has no download"
    elif cfg.download:
        try:
            origin = source.download(root)
            _record_origin(source.directory(root), origin)
            return root
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError for network faults
            download_note = f"download failed ({str(exc).splitlines()[0]})"
    raise DataError(
        f"{source.name}: no copy found and {download_note}. Looked in: {', '.join(dict.fromkeys(looked))} "
        f"(and their {source.name}/ and {source.subdir}/ folders). "
        f"Fix: allow download (data.download: true) with internet access, or put the files in a "
        f"directory and pass --data-dir DIR or set {DATA_ENV}=DIR" + source.install_hint
    )
