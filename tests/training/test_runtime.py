"""The process's runtime for a run: thread count restored, RNG state round trip, device checks."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from mlp_lab.config.load import validate_config
from mlp_lab.core.errors import ConfigError
from mlp_lab.training.runtime import (
    check_runtime,
    determinism_as_found,
    rng_state,
    seed_everything,
    set_rng_state,
    torch_threads,
)


def _draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), np.random.rand(2).tolist()


def test_rng_state_survives_a_weights_only_checkpoint_and_replays_the_same_numbers():
    with determinism_as_found():
        seed_everything(5)
        _draws()
        buffer = io.BytesIO()
        torch.save(rng_state(), buffer)  # as last.pt holds it
        expected = _draws()
        _draws()
        buffer.seek(0)
        set_rng_state(torch.load(buffer, weights_only=True))
        assert _draws() == expected


def test_torch_threads_restores_the_count_even_when_the_block_fails():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(1) as threads:
            assert threads == torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_a_config_error_naming_the_file():
    config = validate_config({"train": {"device": "cuda"}}, "gpu.yaml")
    with pytest.raises(ConfigError, match=r"^gpu.yaml: train.device: 'cuda' was requested"):
        check_runtime(config, "gpu.yaml")
    check_runtime(validate_config({"train": {"device": "auto"}}, "auto.yaml"), "auto.yaml")


def _determinism_switches() -> tuple[bool, bool, bool]:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )


def test_determinism_as_found_restores_the_switches_seed_everything_sets():
    before = _determinism_switches()
    with pytest.raises(RuntimeError, match="inside"):
        with determinism_as_found():
            torch.use_deterministic_algorithms(not before[0], warn_only=not before[1])
            seed_everything(0)
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.utils.deterministic.fill_uninitialized_memory is False
            raise RuntimeError("inside")
    assert _determinism_switches() == before
