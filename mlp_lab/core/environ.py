"""Process-environment defaults for a block of code (no torch, no extras).

Libraries that read their settings from the environment (MLflow's HTTP retries and progress
bar, Ray's loopback binding and usage statistics) are configured through it; `env_defaults`
sets such values only where the user has not, and removes exactly what it added afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def env_defaults(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment defaults (the user's own settings win) for a block, then restore."""
    added = [k for k in values if k not in os.environ]
    os.environ.update({k: values[k] for k in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextmanager
def preserved(keys: list[str] | tuple[str, ...]) -> Iterator[None]:
    """Put `keys` of the environment back as they were after a block (a library that sets its
    own variables for "this process and its children", as ray.init does, then leaves none)."""
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
