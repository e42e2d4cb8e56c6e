"""A user's small CNN for the image-folder example: two 3x3 conv blocks, then a linear layer.

mlp-lab passes `in_channels` and `num_classes` because the constructor asks for them (and
`input_shape` would be (C, H, W) if it did); the pictures arrive as (N, C, H, W) batches.
Average pooling to 2x2 at the end makes it indifferent to the folder's image_size.
"""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """conv(channels[0]) -> ReLU -> maxpool -> conv(channels[1]) -> ReLU -> avgpool to 2x2 -> linear."""

    def __init__(self, in_channels: int, num_classes: int, channels: tuple[int, int] = (16, 32), dropout: float = 0.0):
        super().__init__()
        first, second = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(second * 4, num_classes))

    def forward(self, x):
        return self.head(self.features(x))
