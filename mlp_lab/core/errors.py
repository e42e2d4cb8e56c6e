"""The error types every layer raises, and the pieces of a one-line message.

An MLPLabError is the user's to fix (exit 2); a MachineFault is the machine's (exit 3). Each
message is one line naming the file and key, with the values it echoes clipped. No torch and
nothing of ours: every module may raise these.
"""

from __future__ import annotations

from typing import Any


class MLPLabError(Exception):
    """An error in the user's input or environment: the CLI prints it and exits 2, no traceback."""

    exit_code = 2


class MachineFault(MLPLabError):
    """The machine refused (disk full, read-only or vanished directory, out of memory): exit 3,
    distinct from bad input, with what to do next in the message."""

    exit_code = 3


def os_fault(exc: OSError, then: str = "", key: str = "") -> MachineFault:
    """A MachineFault for a file-system error, in one line: the setting (`key`, e.g. output.dir)
    and file, what happened in plain words, and what to do (`then`, e.g. "then: mlp-lab run
    --resume DIR")."""
    import errno

    where = " ".join(filter(None, [key, str(exc.filename) if exc.filename else ""]))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device (the disk is full); free space"
    elif exc.errno == errno.EROFS:
        what = "read-only file system; make it writable or choose another directory"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        what = "permission denied; make it writable or choose another directory"
    elif exc.errno == errno.ENOENT:
        what = "no such file or directory (moved or deleted?); restore it or choose another directory"
    else:
        what = f"{exc.strerror or type(exc).__name__}"
    return MachineFault(f"{where + ': ' if where else ''}{what}{', ' + then if then else ''}")


def memory_fault(exc: BaseException, then: str = "") -> MachineFault | None:
    """A MachineFault for running out of memory (MemoryError, torch's CPU allocator refusing, a
    CUDA OutOfMemoryError), or None for any other error."""
    text = str(exc)
    if not (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or (isinstance(exc, RuntimeError) and "can't allocate memory" in text)
    ):
        return None
    asked = ""
    if "tried to allocate" in text:
        asked = " (" + text.split("tried to allocate", 1)[1].split(".")[0].strip() + " asked for)"
    return MachineFault(
        f"out of memory{asked}; use a smaller model or train.batch_size, or free memory" + (f", {then}" if then else "")
    )


# A value echoed in a message is cut to about this many characters: a 100 KB --set value must
# not become a 200 KB error.
ECHO_LIMIT = 80


def install_extra(extra: str) -> str:
    """How to install an optional extra: from the package index, and in a checkout of the code."""
    return f"pip install 'mlp-lab[{extra}]' (in a checkout: pip install -e '.[{extra}]')"


def clip(value: Any, limit: int = ECHO_LIMIT) -> str:
    """`value` as text (a string as it is, anything else as repr), cut to about `limit` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def printable(line: str) -> str:
    """`line` with every character a terminal would act on (a carriage return or a bidi mark in
    a YAML key) written as its escape: an error line stays one line, shown as it reads."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


def clip_repr(value: Any, limit: int = ECHO_LIMIT) -> str:
    """repr(value), cut like `clip`."""
    return clip(repr(value), limit)


class ConfigError(MLPLabError):
    """One or more problems in a config, each a one-line message naming the file and key."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))
