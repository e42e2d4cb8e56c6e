"""Step engines: the code that trains one batch, behind one interface (`base.StepEngine`).

`autograd` trains any model; `hand` is the plain MLP's hand-written step. Which one a config
trains with is `mlp_lab.config.engines.resolve_engine` (`train.engine`, `auto` resolved), and each
has its own numerics version there, part of the config hash.
"""

from __future__ import annotations

import torch

from mlp_lab.config.engines import resolve_engine
from mlp_lab.config.schema import Config
from mlp_lab.training.engines.autograd import AutogradEngine
from mlp_lab.training.engines.base import StepEngine
from mlp_lab.training.engines.hand import HandEngine

ENGINES: dict[str, type[StepEngine]] = {engine.name: engine for engine in (AutogradEngine, HandEngine)}


def build_engine(model: torch.nn.Module, config: Config, device: torch.device) -> StepEngine:
    """The engine `config` trains `model` with, its optimizer built over the model's parameters."""
    return ENGINES[resolve_engine(config)](model, config, device)
