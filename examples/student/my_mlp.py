"""A student's own MLP, written as the good-practice course asks: one class whose constructor
arguments switch each technique on or off, so a one-factor study can vary them one at a time.

mlp-lab trains it as it is (examples/student/student.yaml names it): the tool passes
`in_features` and `num_classes` because the constructor asks for them; the study's arms set the
rest through `model.args`. Nothing here imports mlp-lab: this is the file the course grades, and
the same class trains in the student's own loop.
"""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class ParameterizedMLP(nn.Module):
    """in_features -> hidden_sizes[0] -> ... -> num_classes, each hidden layer a Linear, an optional
    BatchNorm1d, the activation and an optional dropout."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden_sizes: tuple[int, ...] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]  # images (N, 1, 28, 28) or rows (N, 784) alike
        width = in_features
        for size in hidden_sizes:
            # No bias before BatchNorm: its shift does the bias's job.
            layers.append(nn.Linear(width, size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
