"""A toy model family, written as a user would write one: its config section (torch-free keys and
their geometry), its network (an nn.Module that is a `Network`), and one `register_family` call.
Nothing else in mlp_lab changes; tests/models/test_toy_model_family.py runs it through every verb.

    model:
      kind: toy
      width: 8        # the one hidden layer's width, softplus between the two Linear layers
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from mlp_lab.config.section import Geometry, ModelSection
from mlp_lab.models.registry import ModelFamily, register_family


class ToyConfig(ModelSection):
    """A toy: Linear -> Softplus -> Linear."""

    kind: Literal["toy"] = "toy"
    width: PositiveInt = Field(8, description="the hidden layer's width")

    def geometry(self, image_shape: tuple[int, int, int], num_classes: int) -> Geometry:
        c, h, w = image_shape
        pixels = c * h * w
        macs = pixels * self.width + self.width * num_classes
        return Geometry(features=pixels, parameters=macs + self.width + num_classes, macs=macs)


class ToyNet(nn.Module):
    def __init__(self, section: ToyConfig, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        features = section.geometry(image_shape, num_classes).features
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(features, section.width), nn.Softplus(), nn.Linear(section.width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def penalized_weights(self) -> list[torch.Tensor]:
        return [m.weight for m in self.layers if isinstance(m, nn.Linear)]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


TOY = register_family(ModelFamily(ToyConfig, ToyNet))
