"""The state of the process around a library call: what a run changes process-wide, put back."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def as_found() -> Iterator[None]:
    """Put the process-wide state a run touches back as it was after the block: the signal
    handlers, torch's thread count and deterministic-algorithms switch, the python/numpy/torch
    RNG streams and ``os.environ`` (the trainer seeds the global RNGs and sets
    CUBLAS_WORKSPACE_CONFIG; Ray and MLflow set variables for "this process and its children")."""
    import torch

    from mlp_lab.training.runtime import determinism_as_found, rng_state, set_rng_state

    environ = dict(os.environ)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    rng = rng_state()
    try:
        with determinism_as_found():
            yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        set_rng_state(rng)
        for key in [k for k in os.environ if k not in environ]:
            del os.environ[key]
        for key, value in environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            for sig, handler in handlers.items():
                if handler is not None and signal.getsignal(sig) is not handler:
                    signal.signal(sig, handler)
