"""Graceful stop on SIGINT/SIGTERM: the trainer polls a flag at batch boundaries."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopFlag:
    """Set by the first SIGINT/SIGTERM; a second SIGINT restores the default and interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)


@contextmanager
def graceful_stop() -> Iterator[StopFlag]:
    """Within the block, SIGINT and SIGTERM set the returned flag instead of killing the process."""
    flag = StopFlag()

    def handler(signum, frame):  # noqa: ARG001
        if flag.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # impatient second Ctrl-C
        flag.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def signal_handlers_kept() -> Iterator[None]:
    """Put the SIGINT and SIGTERM handlers back as they were after a block that runs a library
    which installs its own and leaves them (ray.init: a SIGTERM handler that calls sys.exit). Only
    the main thread may set handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
