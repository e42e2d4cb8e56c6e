"""mlp-lab: a fast, reproducible PyTorch experiment runner for MLP ablation studies."""

__version__ = "0.1.0"
