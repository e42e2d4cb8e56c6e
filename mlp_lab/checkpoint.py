"""The checkpoint readers at the path models logged to MLflow before the packages import them from.

A logged model carries a copy of ``mlflow_model.py`` as it was when it was logged (MLflow's
models-from-code), and that copy ran ``from mlp_lab.checkpoint import load_checkpoint,
model_from_checkpoint``; this module keeps those models loading. New code imports
``mlp_lab.training.checkpoint``.
"""

from mlp_lab.training.checkpoint import load_checkpoint, model_from_checkpoint

__all__ = ["load_checkpoint", "model_from_checkpoint"]
