"""This process's runtime for a run: the device, torch's thread count, seeding and RNG state.

A run's numbers depend on these as much as on its config (CPU results are bit-identical only at
the same thread count; a resume is exact only with the RNG state restored), so each is set here
in one way for the trainer, the executors, the CLI and the benchmark.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mlp_lab.config.schema import Config
from mlp_lab.core.errors import ConfigError, MLPLabError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise MLPLabError("train.device: 'cuda' was requested but no CUDA GPU is available (use 'auto' or 'cpu')")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def check_runtime(config: Config, source: str) -> None:
    """Config checks that depend on this machine (a GPU asked for but absent), as a ConfigError."""
    try:
        resolve_device(config.train.device)
    except MLPLabError as exc:
        raise ConfigError([f"{source}: {exc}"]) from None


def machine() -> str:
    """What a run was computed on: the CPU's model name (where Linux says it; else the
    architecture) and the cores this process may use, e.g. `AMD EPYC 7B13, 2 cores`."""
    import platform

    name = platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), name)
    except OSError:
        pass  # not Linux: the architecture says enough
    return f"{name}, {available_cores()} cores"


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask where the OS has one (a
    container's CPU set, taskset), which os.cpu_count() ignores."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: `threads`, else every core this process may run on.

    Set explicitly because CPU results are bit-identical only for the same thread count, and
    parallel workers must split the cores rather than oversubscribe them.
    """
    torch.set_num_threads(max(1, threads or available_cores()))
    return torch.get_num_threads()


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[int]:
    """`configure_threads` for the duration of a block, then the previous count again: a library
    call (from the app, a notebook, a Ray worker) leaves the process as it found it."""
    previous = torch.get_num_threads()
    try:
        yield configure_threads(threads)
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and make torch pick deterministic kernels."""
    # cuBLAS needs this set before its first use to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # With deterministic algorithms on, torch by default also fills every new uninitialised
    # tensor (each torch.empty, each op's output) with NaN, a debugging aid that catches reads
    # of memory never written. Nothing here reads such memory, and the fill was a full extra
    # pass over every output: 4 % of a baseline CPU step (the batch gather's 128 x 784 alone).
    # The results are the same without it; the kernels stay the deterministic ones.
    torch.utils.deterministic.fill_uninitialized_memory = False


@contextmanager
def determinism_as_found() -> Iterator[None]:
    """Put torch's deterministic-algorithms switches (on, warn-only, the fill of uninitialised
    memory) back as they were after the block: `seed_everything` sets them for a run."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def rng_state() -> dict[str, Any]:
    """The state of every RNG a run draws from (torch, python, numpy, CUDA), for last.pt."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # numpy's state holds an ndarray; as plain ints it loads with weights_only=True.
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured, so a resumed run draws the numbers it would have."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
